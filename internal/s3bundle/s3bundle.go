// Package s3bundle copies a trailwatch configuration and everything beside
// it in S3 (rule files, lists, a silences file, ...) into a local
// directory, so that it loads exactly as a configuration shipped in a
// deployment package does: relative paths in it resolve against the
// configuration file's directory.
//
// A configuration at s3://bucket/prefix/config.yaml brings every object
// under s3://bucket/prefix/, recursively, with its path relative to the
// prefix kept. The download is guarded: an object key that would land
// outside the directory is refused, and so is a prefix holding more
// objects or bytes than the limits.
package s3bundle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/trailwatch/trailwatch/internal/awsconf"
)

// Default limits on what Fetch copies. Fifty MiB is far more than any set
// of rule files, yet small next to Lambda's /tmp (512 MiB by default).
const (
	DefaultMaxBytes   int64 = 50 << 20
	DefaultMaxObjects       = 1000
)

// Scheme is how a location in S3 starts.
const Scheme = "s3://"

// IsURI reports whether s names an object in S3 (starts with s3://)
// rather than a local file.
func IsURI(s string) bool { return strings.HasPrefix(s, Scheme) }

// Location is an object in S3.
type Location struct {
	Bucket string
	Key    string
}

// String returns the location as s3://bucket/key.
func (l Location) String() string { return Scheme + l.Bucket + "/" + l.Key }

// Prefix returns the key prefix of the object's "folder": everything up
// to and including the key's last slash, or "" for an object at the top
// of the bucket.
func (l Location) Prefix() string {
	if i := strings.LastIndexByte(l.Key, '/'); i >= 0 {
		return l.Key[:i+1]
	}
	return ""
}

// ParseURI parses s3://bucket/key. The key is taken literally (no
// percent-decoding, as the AWS CLI does) and must name an object, not a
// folder: it may not be empty or end with a slash, and its last segment
// may not be "." or "..".
func ParseURI(s string) (Location, error) {
	bad := func(why string) (Location, error) {
		return Location{}, fmt.Errorf("%q is not an s3://bucket/key URI: %s", s, why)
	}
	rest, ok := strings.CutPrefix(s, Scheme)
	if !ok {
		return bad("it does not start with " + Scheme)
	}
	bucket, key, _ := strings.Cut(rest, "/")
	if bucket == "" {
		return bad("no bucket")
	}
	if err := checkBucket(bucket); err != nil {
		return bad(err.Error())
	}
	if key == "" {
		return bad("no key: name the configuration file, e.g. s3://" + bucket + "/trailwatch/config.yaml")
	}
	if strings.HasSuffix(key, "/") {
		return bad("the key ends with a slash (a folder): name the configuration file in it")
	}
	if base := path.Base(key); base == "." || base == ".." {
		return bad("the key's last segment is " + base + ", not a file name")
	}
	return Location{Bucket: bucket, Key: key}, nil
}

// ParseFolderURI parses s3://bucket or s3://bucket/prefix, a place that
// holds objects rather than one object: the prefix (Location.Key) may be
// empty, end with a slash or not. The bucket name is checked as ParseURI
// checks it.
func ParseFolderURI(s string) (Location, error) {
	rest, ok := strings.CutPrefix(s, Scheme)
	if !ok {
		return Location{}, fmt.Errorf("%q is not an s3://bucket/prefix URI: it does not start with %s", s, Scheme)
	}
	bucket, key, _ := strings.Cut(rest, "/")
	if bucket == "" {
		return Location{}, fmt.Errorf("%q is not an s3://bucket/prefix URI: no bucket", s)
	}
	if err := checkBucket(bucket); err != nil {
		return Location{}, fmt.Errorf("%q is not an s3://bucket/prefix URI: %s", s, err)
	}
	return Location{Bucket: bucket, Key: key}, nil
}

// checkBucket applies S3's rules for bucket names loosely (legacy buckets
// may hold capitals and underscores): enough to catch a typo or a pasted
// ARN, not to second-guess S3.
func checkBucket(b string) error {
	if len(b) < 3 || len(b) > 255 {
		return fmt.Errorf("bucket name %q must be 3 to 63 characters long", b)
	}
	for _, c := range b {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '.' && c != '-' && c != '_' {
			return fmt.Errorf("bucket name %q may hold only lowercase letters, digits, dots and hyphens", b)
		}
	}
	return nil
}

// Client is the part of the S3 API that Fetch calls; *s3.Client has it.
type Client interface {
	s3.ListObjectsV2APIClient
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

var _ Client = (*s3.Client)(nil)

// ClientOptions adjusts NewClient.
type ClientOptions struct {
	// PathStyle, when set, forces path-style requests
	// (https://endpoint/bucket/key) if true, or virtual-hosted ones
	// (https://bucket.endpoint/key) if false. When nil, requests are
	// path-style exactly when an endpoint override is configured
	// (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3 or endpoint_url in the shared
	// config): emulators such as moto and MinIO need it, and real S3 keeps
	// the virtual-hosted style it prefers.
	PathStyle *bool
	// Logger receives the SDK's log lines (nil: slog.Default(); see
	// internal/awsconf).
	Logger *slog.Logger
}

// NewClient returns an S3 client from the SDK's default configuration
// chain (environment, shared config, web identity, the Lambda's role);
// AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_S3 are honoured.
func NewClient(ctx context.Context, opts ClientOptions) (*s3.Client, error) {
	cfg, err := awsconf.Load(ctx, "", opts.Logger)
	if err != nil {
		return nil, fmt.Errorf("s3 client: %w", err)
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		// NewFromConfig has resolved the endpoint override (global or
		// S3's own) into BaseEndpoint before it runs this.
		if opts.PathStyle != nil {
			o.UsePathStyle = *opts.PathStyle
		} else {
			o.UsePathStyle = aws.ToString(o.BaseEndpoint) != ""
		}
		// Objects uploaded without a checksum would each print a plain-text
		// line to stderr, amid the function's JSON logs.
		o.DisableLogOutputChecksumValidationSkipped = true
	}), nil
}

// Options adjusts Fetch. The zero value takes the defaults.
type Options struct {
	// MaxBytes caps the total size of the objects copied (default
	// DefaultMaxBytes).
	MaxBytes int64
	// MaxObjects caps how many objects are copied, the configuration
	// included (default DefaultMaxObjects).
	MaxObjects int
	// PageSize is how many keys one ListObjectsV2 call asks for (default
	// S3's own, 1000).
	PageSize int32
	// Logger receives one info line per object copied (key, size, ETag,
	// version id; never contents) and a summary. Nil discards them.
	Logger *slog.Logger
}

// Fetch copies the configuration object at uri (s3://bucket/prefix/file)
// and every other object under s3://bucket/prefix/, recursively, into dir,
// keeping each object's path relative to the prefix, and returns the local
// path of the configuration file. dir must exist and should be a fresh,
// private directory: Fetch never overwrites a file.
//
// Keys ending with a slash (folder markers that the S3 console creates)
// are skipped. A key whose relative path is not a plain relative path
// (absolute, with "..", ".", or empty segments) is refused, as is a prefix
// over the limits in opts; every error names the S3 location concerned.
// On error dir may hold part of the objects: the caller removes it.
func Fetch(ctx context.Context, client Client, uri, dir string, opts Options) (string, error) {
	loc, err := ParseURI(uri)
	if err != nil {
		return "", err
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.MaxObjects <= 0 {
		opts.MaxObjects = DefaultMaxObjects
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return "", fmt.Errorf("%s: open download directory: %w", loc, err)
	}
	defer root.Close()

	f := &fetcher{client: client, root: root, loc: loc, prefix: loc.Prefix(), opts: opts, logger: logger}
	f.budget = opts.MaxBytes

	// The configuration first: if it is missing, that is the error to
	// report, whatever else lies under the prefix.
	cfgRel, err := f.relative(loc.Key)
	if err != nil {
		return "", err
	}
	if err := f.copy(ctx, loc.Key, cfgRel); err != nil {
		return "", err
	}
	keys, err := f.list(ctx)
	if err != nil {
		return "", err
	}
	for _, k := range keys {
		if err := f.copy(ctx, k.key, k.rel); err != nil {
			return "", err
		}
	}
	logger.Info("configuration copied from s3", "bucket", loc.Bucket, "prefix", f.prefix,
		"config", loc.Key, "objects", len(keys)+1, "bytes", opts.MaxBytes-f.budget, "dir", dir)
	return filepath.Join(dir, filepath.FromSlash(cfgRel)), nil
}

// fetcher is one Fetch.
type fetcher struct {
	client Client
	root   *os.Root
	loc    Location
	prefix string
	opts   Options
	logger *slog.Logger
	budget int64 // bytes still allowed
}

// object is a key to copy and where it goes, relative to the directory.
type object struct{ key, rel string }

// where names the prefix in errors.
func (f *fetcher) where() string { return Scheme + f.loc.Bucket + "/" + f.prefix }

// relative returns key's path relative to the prefix, refusing one that
// could land outside the directory or alias another key's file.
func (f *fetcher) relative(key string) (string, error) {
	rel := strings.TrimPrefix(key, f.prefix)
	if !filepath.IsLocal(rel) || path.Clean(rel) != rel || strings.ContainsRune(rel, '\\') {
		return "", fmt.Errorf("%s: refusing object key: %q is not a plain relative path under %s (no absolute paths, \"..\", \".\", empty segments or backslashes)",
			Location{Bucket: f.loc.Bucket, Key: key}, rel, f.where())
	}
	return rel, nil
}

// list returns every object under the prefix except the configuration,
// checking the limits on the sizes S3 reports before anything else is
// downloaded.
func (f *fetcher) list(ctx context.Context) ([]object, error) {
	var out []object
	total := f.opts.MaxBytes - f.budget // the configuration, already copied
	p := s3.NewListObjectsV2Paginator(f.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(f.loc.Bucket),
		Prefix: aws.String(f.prefix),
	}, func(o *s3.ListObjectsV2PaginatorOptions) {
		o.Limit = f.opts.PageSize
		o.StopOnDuplicateToken = true
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: list objects: %w", f.where(), explain(err))
		}
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			if key == f.loc.Key || strings.HasSuffix(key, "/") {
				continue
			}
			rel, err := f.relative(key)
			if err != nil {
				return nil, err
			}
			out = append(out, object{key: key, rel: rel})
			if len(out)+1 > f.opts.MaxObjects {
				return nil, fmt.Errorf("%s: more than %d objects under the prefix (the limit): keep only trailwatch's configuration, rules and lists there",
					f.where(), f.opts.MaxObjects)
			}
			total += aws.ToInt64(o.Size)
			if total > f.opts.MaxBytes {
				return nil, f.tooBig()
			}
		}
	}
	return out, nil
}

func (f *fetcher) tooBig() error {
	return fmt.Errorf("%s: the objects under the prefix total more than %s (the limit): keep only trailwatch's configuration, rules and lists there",
		f.where(), size(f.opts.MaxBytes))
}

// copy downloads key to rel under the directory, within the byte budget.
func (f *fetcher) copy(ctx context.Context, key, rel string) error {
	obj := Location{Bucket: f.loc.Bucket, Key: key}
	out, err := f.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(f.loc.Bucket), Key: aws.String(key)})
	if err != nil {
		// GetObject's model has no NoSuchBucket type: go by the code.
		var ae smithy.APIError
		if errors.As(err, &ae) {
			switch ae.ErrorCode() {
			case "NoSuchKey":
				return fmt.Errorf("%s: no such object", obj)
			case "NoSuchBucket":
				return fmt.Errorf("%s: no such bucket", obj)
			}
		}
		return fmt.Errorf("%s: get object: %w", obj, explain(err))
	}
	defer out.Body.Close()
	if dir := path.Dir(rel); dir != "." {
		if err := f.root.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("%s: create %s: %w", obj, dir, err)
		}
	}
	// O_EXCL: two keys never share a file, and nothing already in the
	// directory is overwritten.
	w, err := f.root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("%s: create %s: %w", obj, rel, err)
	}
	// One byte past the budget tells an object over it (whatever size S3
	// listed) from one that fills it exactly.
	n, err := io.Copy(w, io.LimitReader(out.Body, f.budget+1))
	if cerr := w.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: download: %w", obj, err)
	}
	if n > f.budget {
		return f.tooBig()
	}
	f.budget -= n
	f.logger.Info("configuration object copied from s3", "bucket", f.loc.Bucket, "key", key, "bytes", n,
		"etag", strings.Trim(aws.ToString(out.ETag), `"`), "version_id", aws.ToString(out.VersionId))
	return nil
}

// explain adds what usually causes an access denial to S3's error.
func explain(err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "AccessDenied" {
		return fmt.Errorf("%w (the function's role needs s3:GetObject on the prefix's objects and s3:ListBucket on the bucket for the prefix; without s3:ListBucket a missing object also reads as access denied)", err)
	}
	return err
}

// size formats a byte count for an error message.
func size(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}
