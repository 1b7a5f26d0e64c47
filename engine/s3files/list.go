package s3files

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/trailwatch/trailwatch/engine/awslogs"
	"github.com/trailwatch/trailwatch/engine/files"
	"github.com/trailwatch/trailwatch/internal/s3bundle"
)

// Client is the part of the S3 API this package calls; *s3.Client has it.
type Client = s3bundle.Client

// Object is an object to read.
type Object struct {
	Bucket, Key  string
	Size         int64
	LastModified time.Time
	ETag         string
}

// URI returns the object's location, s3://bucket/key: the File of its
// records and the place of its problems.
func (o Object) URI() string { return s3bundle.Scheme + o.Bucket + "/" + o.Key }

// MaxDirectDays is the longest window whose day folders are listed one by
// one, without listing the year and month folders first. Each day of a
// region costs one List call, whether or not the day holds files; past a
// month, listing the years and months (pruned by the window) costs less.
const MaxDirectDays = 31

// ListOptions adjusts List.
type ListOptions struct {
	// Window, when not open, selects the day folders to list: under a
	// CloudTrail/<region>/ folder only the days that can hold the window's
	// events are listed (for windows of at most MaxDirectDays days), and
	// elsewhere each folder is listed on its own, so that SkipDir can
	// prune it. An open window lists the whole prefix page by page.
	Window awslogs.Window
	// SkipDir, if set, is asked about every folder (s3://bucket/prefix,
	// without the trailing slash); returning true skips it unlisted.
	SkipDir func(uri string) bool
	// SkipFile is the same for objects, before they are read.
	SkipFile func(uri string) bool
	// PageSize is how many keys one ListObjectsV2 call asks for (0: S3's
	// own, 1000).
	PageSize int32
	// ListCalls, if set, counts the ListObjectsV2 calls made.
	ListCalls *atomic.Int64
}

// List calls fn for every event file under loc (s3://bucket/prefix) in
// lexical order of key, which is the order engine/files reads a local copy
// of the same tree in: the same names (*.json, *.jsonl, *.ndjson, with or
// without .gz), hidden names (a segment starting with ".") and folder
// markers skipped, and what opts' SkipDir and SkipFile reject. A prefix
// that names an event file itself (not ending with a slash) lists that
// object alone.
func List(ctx context.Context, client Client, loc s3bundle.Location, opts ListOptions, fn func(Object) error) error {
	l := &lister{client: client, bucket: loc.Bucket, opts: opts, fn: fn}
	prefix := loc.Key
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		if files.IsEventFile(path.Base(prefix)) {
			return l.single(ctx, prefix)
		}
		prefix += "/"
	}
	l.root = prefix
	if opts.Window.Open() {
		return l.flat(ctx, prefix)
	}
	return l.folder(ctx, prefix)
}

// lister is one List.
type lister struct {
	client Client
	bucket string
	root   string // the prefix listed, "" or ending with a slash
	opts   ListOptions
	fn     func(Object) error
	// chain holds SkipDir's answers for the folders of the last key of a
	// flat listing, outermost first.
	chain []answer
}

// answer is SkipDir's answer for a folder.
type answer struct {
	dir  string
	skip bool
}

func (l *lister) uri(key string) string { return s3bundle.Scheme + l.bucket + "/" + key }

// page lists one page.
func (l *lister) page(ctx context.Context, in *s3.ListObjectsV2Input) (*s3.ListObjectsV2Output, error) {
	if l.opts.ListCalls != nil {
		l.opts.ListCalls.Add(1)
	}
	out, err := l.client.ListObjectsV2(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("%s: list objects: %w", l.uri(aws.ToString(in.Prefix)), explain(err))
	}
	return out, nil
}

// pages lists prefix page by page (by folder when delimit is set), calling
// fn with each page in turn.
func (l *lister) pages(ctx context.Context, prefix string, delimit bool, fn func(*s3.ListObjectsV2Output) error) error {
	in := &s3.ListObjectsV2Input{Bucket: aws.String(l.bucket), Prefix: aws.String(prefix)}
	if delimit {
		in.Delimiter = aws.String("/")
	}
	if l.opts.PageSize > 0 {
		in.MaxKeys = aws.Int32(l.opts.PageSize)
	}
	for {
		out, err := l.page(ctx, in)
		if err != nil {
			return err
		}
		if err := fn(out); err != nil {
			return err
		}
		if !aws.ToBool(out.IsTruncated) || aws.ToString(out.NextContinuationToken) == "" {
			return nil
		}
		in.ContinuationToken = out.NextContinuationToken
	}
}

// explain adds what usually causes an access denial to S3's error.
func explain(err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "AccessDenied":
			return fmt.Errorf("%w (reading needs s3:ListBucket on the bucket and s3:GetObject on its objects, and kms:Decrypt when the trail encrypts with KMS)", err)
		case "NoSuchBucket":
			return errors.New("no such bucket")
		}
	}
	return err
}

// single lists the one object key names.
func (l *lister) single(ctx context.Context, key string) error {
	out, err := l.page(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(l.bucket), Prefix: aws.String(key), MaxKeys: aws.Int32(1)})
	if err != nil {
		return err
	}
	if len(out.Contents) == 0 || aws.ToString(out.Contents[0].Key) != key {
		return fmt.Errorf("read events: %s: no such object", l.uri(key))
	}
	return l.fn(l.object(out.Contents[0]))
}

func (l *lister) object(o s3types.Object) Object {
	return Object{
		Bucket: l.bucket, Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size),
		LastModified: aws.ToTime(o.LastModified), ETag: aws.ToString(o.ETag),
	}
}

// wanted reports whether key, under the listed prefix, is an event file
// that is neither hidden nor rejected by SkipFile.
func (l *lister) wanted(key string) bool {
	name := path.Base(key)
	if strings.HasSuffix(key, "/") || strings.HasPrefix(name, ".") || !files.IsEventFile(name) {
		return false
	}
	return l.opts.SkipFile == nil || !l.opts.SkipFile(l.uri(key))
}

// flat lists everything under prefix, page by page: the fewest calls when
// nothing is pruned by time.
func (l *lister) flat(ctx context.Context, prefix string) error {
	return l.pages(ctx, prefix, false, func(out *s3.ListObjectsV2Output) error {
		for _, o := range out.Contents {
			key := aws.ToString(o.Key)
			if l.skippedDir(key) || !l.wanted(key) {
				continue
			}
			if err := l.fn(l.object(o)); err != nil {
				return err
			}
		}
		return nil
	})
}

// skippedDir reports whether a folder of key below the listed prefix is
// hidden or rejected by SkipDir, asking SkipDir once per folder: keys come
// in order, so the answers for the last key's folders are all it keeps.
func (l *lister) skippedDir(key string) bool {
	segs := strings.Split(strings.TrimPrefix(key, l.root), "/")
	dir := l.root
	for i, s := range segs[:len(segs)-1] {
		dir += s
		if strings.HasPrefix(s, ".") {
			return true
		}
		if l.opts.SkipDir != nil {
			if i >= len(l.chain) || l.chain[i].dir != dir {
				l.chain = append(l.chain[:i], answer{dir, l.opts.SkipDir(l.uri(dir))})
			}
			if l.chain[i].skip {
				return true
			}
		}
		dir += "/"
	}
	return false
}

// folder lists one folder (prefix ends with a slash, or is the bucket's
// top), its files and then, in key order, its subfolders, pruned by
// SkipDir; under a region folder it lists the window's days directly.
func (l *lister) folder(ctx context.Context, prefix string) error {
	if days, ok := l.directDays(prefix); ok {
		for _, d := range days {
			if l.opts.SkipDir != nil && l.opts.SkipDir(l.uri(strings.TrimSuffix(d, "/"))) {
				continue
			}
			if err := l.folder(ctx, d); err != nil {
				return err
			}
		}
		return nil
	}
	return l.pages(ctx, prefix, true, func(out *s3.ListObjectsV2Output) error {
		// A page's objects and folders together are in key order, and
		// every page follows the one before.
		objs, dirs := out.Contents, out.CommonPrefixes
		for len(objs) > 0 || len(dirs) > 0 {
			if len(dirs) == 0 || (len(objs) > 0 && aws.ToString(objs[0].Key) < aws.ToString(dirs[0].Prefix)) {
				o := objs[0]
				objs = objs[1:]
				if l.wanted(aws.ToString(o.Key)) {
					if err := l.fn(l.object(o)); err != nil {
						return err
					}
				}
				continue
			}
			sub := aws.ToString(dirs[0].Prefix)
			dirs = dirs[1:]
			name := path.Base(sub)
			if strings.HasPrefix(name, ".") || (l.opts.SkipDir != nil && l.opts.SkipDir(l.uri(strings.TrimSuffix(sub, "/")))) {
				continue
			}
			if err := l.folder(ctx, sub); err != nil {
				return err
			}
		}
		return nil
	})
}

// directDays returns the day folders under prefix that can hold the
// window's events, when prefix is a region, year or month folder of the
// layout and the window spans at most MaxDirectDays days.
func (l *lister) directDays(prefix string) ([]string, bool) {
	place := awslogs.Locate(prefix)
	if place.Depth < 1 || place.Depth > 3 {
		return nil, false
	}
	days, ok := l.opts.Window.Days(MaxDirectDays)
	if !ok {
		return nil, false
	}
	var out []string
	for _, d := range days {
		if place.Depth > 1 && (d.Before(place.From) || !d.Before(place.To)) {
			continue
		}
		// The parts of YYYY/MM/DD that prefix does not already name.
		parts := strings.Split(awslogs.DayFolder(d), "/")
		out = append(out, prefix+strings.Join(parts[place.Depth-1:], "/")+"/")
	}
	return out, true
}
