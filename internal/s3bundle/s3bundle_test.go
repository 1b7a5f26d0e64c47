package s3bundle_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/trailwatch/trailwatch/internal/s3bundle"
	"github.com/trailwatch/trailwatch/internal/s3test"
	"github.com/trailwatch/trailwatch/internal/testservers"
)

func TestParseFolderURI(t *testing.T) {
	tests := []struct {
		in      string
		want    s3bundle.Location
		wantErr string
	}{
		{in: "s3://trail", want: s3bundle.Location{Bucket: "trail"}},
		{in: "s3://trail/", want: s3bundle.Location{Bucket: "trail"}},
		{in: "s3://trail/AWSLogs/", want: s3bundle.Location{Bucket: "trail", Key: "AWSLogs/"}},
		{in: "s3://trail/AWSLogs", want: s3bundle.Location{Bucket: "trail", Key: "AWSLogs"}},
		{in: "s3://trail/AWSLogs/1/x.json.gz", want: s3bundle.Location{Bucket: "trail", Key: "AWSLogs/1/x.json.gz"}},
		{in: "/data/AWSLogs", wantErr: "does not start with s3://"},
		{in: "s3://", wantErr: "no bucket"},
		{in: "s3:///AWSLogs/", wantErr: "no bucket"},
		{in: "s3://arn:aws:s3:::trail/AWSLogs/", wantErr: "lowercase letters"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := s3bundle.ParseFolderURI(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseFolderURI(%q) = %v, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseFolderURI(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseURI(t *testing.T) {
	tests := []struct {
		in         string
		want       s3bundle.Location
		wantPrefix string
		wantErr    string
	}{
		{in: "s3://config-bucket/trailwatch/config.yaml", want: s3bundle.Location{Bucket: "config-bucket", Key: "trailwatch/config.yaml"}, wantPrefix: "trailwatch/"},
		{in: "s3://config-bucket/a/b/c.yaml", want: s3bundle.Location{Bucket: "config-bucket", Key: "a/b/c.yaml"}, wantPrefix: "a/b/"},
		{in: "s3://config-bucket/config.yaml", want: s3bundle.Location{Bucket: "config-bucket", Key: "config.yaml"}, wantPrefix: ""},
		{in: "s3://my.bucket-1/k%20x?v=1", want: s3bundle.Location{Bucket: "my.bucket-1", Key: "k%20x?v=1"}, wantPrefix: ""},
		{in: "/var/task/bundle/config.yaml", wantErr: "does not start with s3://"},
		{in: "S3://config-bucket/config.yaml", wantErr: "does not start with s3://"},
		{in: "s3://", wantErr: "no bucket"},
		{in: "s3:///config.yaml", wantErr: "no bucket"},
		{in: "s3://config-bucket", wantErr: "no key"},
		{in: "s3://config-bucket/", wantErr: "no key"},
		{in: "s3://config-bucket/trailwatch/", wantErr: "ends with a slash"},
		{in: "s3://config-bucket/trailwatch/..", wantErr: "last segment is .."},
		{in: "s3://config-bucket/.", wantErr: "last segment is ."},
		{in: "s3://Legacy_Bucket/config.yaml", want: s3bundle.Location{Bucket: "Legacy_Bucket", Key: "config.yaml"}, wantPrefix: ""},
		{in: "s3://config bucket/config.yaml", wantErr: "lowercase letters"},
		{in: "s3://ab/config.yaml", wantErr: "3 to 63 characters"},
		{in: "s3://arn:aws:s3:::config-bucket/config.yaml", wantErr: "lowercase letters"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := s3bundle.ParseURI(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseURI(%q) = %v, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("ParseURI(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if got.Prefix() != tt.wantPrefix {
				t.Errorf("Prefix() = %q, want %q", got.Prefix(), tt.wantPrefix)
			}
			if got.String() != tt.in {
				t.Errorf("String() = %q, want %q", got.String(), tt.in)
			}
			if !s3bundle.IsURI(tt.in) {
				t.Errorf("IsURI(%q) = false", tt.in)
			}
		})
	}
}

func TestNewClientPathStyle(t *testing.T) {
	yes, no := true, false
	tests := []struct {
		name      string
		global    string // AWS_ENDPOINT_URL
		s3        string // AWS_ENDPOINT_URL_S3; "-" leaves it unset
		pathStyle *bool
		want      bool
	}{
		{name: "real S3", s3: "-", want: false},
		{name: "global endpoint override", global: "http://127.0.0.1:5000", s3: "-", want: true},
		{name: "S3's own endpoint override", s3: "http://127.0.0.1:5000", want: true},
		{name: "forced off with an override", global: "http://127.0.0.1:5000", s3: "-", pathStyle: &no, want: false},
		{name: "forced on without an override", s3: "-", pathStyle: &yes, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testservers.SetFakeAWSEnv(t)
			t.Setenv("AWS_ENDPOINT_URL", tt.global)
			if tt.s3 != "-" {
				t.Setenv("AWS_ENDPOINT_URL_S3", tt.s3)
			} else {
				t.Setenv("AWS_ENDPOINT_URL_S3", "")
				os.Unsetenv("AWS_ENDPOINT_URL_S3") // t.Setenv restores it afterwards
			}
			c, err := s3bundle.NewClient(context.Background(), s3bundle.ClientOptions{PathStyle: tt.pathStyle})
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Options().UsePathStyle; got != tt.want {
				t.Errorf("UsePathStyle = %v, want %v", got, tt.want)
			}
		})
	}
}

// motoS3 starts moto and returns an S3 client for it, built as the Lambda
// builds its own: from the environment, with AWS_ENDPOINT_URL.
func motoS3(t *testing.T) *s3.Client {
	t.Helper()
	m := testservers.StartMoto(t)
	t.Setenv("AWS_ENDPOINT_URL", m.Endpoint)
	c, err := s3bundle.NewClient(context.Background(), s3bundle.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fill creates bucket and puts objects (key to content) in it.
func fill(t *testing.T, c *s3.Client, bucket string, objects map[string]string) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("create bucket %s: %v", bucket, err)
	}
	for _, k := range slices.Sorted(maps.Keys(objects)) {
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(bucket), Key: aws.String(k), Body: strings.NewReader(objects[k]),
		}); err != nil {
			t.Fatalf("put s3://%s/%s: %v", bucket, k, err)
		}
	}
}

// tree returns every file under dir (slash-separated relative path to
// content), and fails on a file or folder in it that is not private.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if perm := info.Mode().Perm(); p != dir && perm&0o077 != 0 {
			t.Errorf("%s has mode %v: others may read it", p, perm)
		}
		if d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		out[filepath.ToSlash(rel)] = string(data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// logLines decodes JSON log lines.
func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	dec := json.NewDecoder(buf)
	for {
		var m map[string]any
		if err := dec.Decode(&m); err == io.EOF {
			return out
		} else if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
}

func TestFetch(t *testing.T) {
	c := motoS3(t)
	const secret = "CONTENT-NEVER-LOGGED"
	bundle := map[string]string{
		"config.yaml":          "rules: [builtin, rules/]\n# " + secret + "\n",
		"rules/team.yaml":      "rules: []\n",
		"rules/deep/more.yaml": "rules: []\n",
		"lists/accounts.txt":   "111122223333\n",
		"state/silences.json":  "{}\n",
		"empty.yaml":           "",
	}
	objects := map[string]string{
		// Around the prefix: none of these may be copied.
		"top.yaml":                "not under the prefix",
		"team/trailwatch-old/x":   "a sibling whose name shares the prefix's start",
		"team/trailwatchx/y.yaml": "likewise",
		"other/config.yaml":       "another prefix",
		"team/trailwatch/rules/":  "", // a folder marker, as the console makes
		"team/trailwatch/nested/": "",
	}
	for k, v := range bundle {
		objects["team/trailwatch/"+k] = v
	}
	fill(t, c, "config-bucket", objects)
	fill(t, c, "flat-bucket", map[string]string{"config.yaml": "rules: [builtin]\n", "rules/a.yaml": "rules: []\n"})

	tests := []struct {
		name      string
		uri       string
		pageSize  int32
		want      map[string]string
		wantPath  string
		wantLists int64 // at least this many ListObjectsV2 calls
	}{
		{name: "one page", uri: "s3://config-bucket/team/trailwatch/config.yaml", want: bundle, wantPath: "config.yaml", wantLists: 1},
		{name: "many pages", uri: "s3://config-bucket/team/trailwatch/config.yaml", pageSize: 2, want: bundle, wantPath: "config.yaml", wantLists: 4},
		{name: "the configuration is not named config.yaml", uri: "s3://config-bucket/team/trailwatch/rules/team.yaml", want: map[string]string{
			"team.yaml": "rules: []\n", "deep/more.yaml": "rules: []\n",
		}, wantPath: "team.yaml", wantLists: 1},
		{name: "top of the bucket", uri: "s3://flat-bucket/config.yaml", want: map[string]string{
			"config.yaml": "rules: [builtin]\n", "rules/a.yaml": "rules: []\n",
		}, wantPath: "config.yaml", wantLists: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var logs bytes.Buffer
			cc := &s3test.CountingClient{Client: c}
			got, err := s3bundle.Fetch(context.Background(), cc, tt.uri, dir, s3bundle.Options{
				PageSize: tt.pageSize,
				Logger:   slog.New(slog.NewJSONHandler(&logs, nil)),
			})
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(dir, tt.wantPath); got != want {
				t.Errorf("config path = %q, want %q", got, want)
			}
			if files := tree(t, dir); !maps.Equal(files, tt.want) {
				t.Errorf("copied tree = %q\nwant %q", files, tt.want)
			}
			if n := cc.Lists.Load(); n < tt.wantLists {
				t.Errorf("%d ListObjectsV2 calls, want at least %d", n, tt.wantLists)
			}
			if strings.Contains(logs.String(), secret) {
				t.Errorf("the logs hold an object's contents:\n%s", logs.String())
			}
			logged := map[string]bool{}
			for _, l := range logLines(t, &logs) {
				if k, ok := l["key"].(string); ok {
					if etag, _ := l["etag"].(string); etag == "" || strings.Contains(etag, `"`) {
						t.Errorf("object %s logged with etag %q, want S3's ETag without quotes", k, etag)
					}
					if l["level"] != "INFO" {
						t.Errorf("object %s logged at %v, want INFO", k, l["level"])
					}
					logged[k] = true
				}
			}
			if len(logged) != len(tt.want) {
				t.Errorf("logged %d objects (%v), want one line for each of the %d copied", len(logged), slices.Sorted(maps.Keys(logged)), len(tt.want))
			}
		})
	}
}

func TestFetchRefuses(t *testing.T) {
	c := motoS3(t)
	fill(t, c, "config-bucket", map[string]string{
		"ok/config.yaml":  "rules: [builtin]\n",
		"ok/rules/a.yaml": "rules: []\n",
	})
	fill(t, c, "escape-bucket", map[string]string{
		"cfg/config.yaml":        "rules: [builtin]\n",
		"cfg/../../escaped.yaml": "outside",
	})
	fill(t, c, "absolute-bucket", map[string]string{
		"cfg/config.yaml":   "rules: [builtin]\n",
		"cfg//etc/cron.d/x": "outside",
	})
	fill(t, c, "dot-bucket", map[string]string{
		"cfg/config.yaml":         "rules: [builtin]\n",
		"cfg/rules/./config.yaml": "an alias",
	})
	big := strings.Repeat("x", 600)
	fill(t, c, "big-bucket", map[string]string{
		"cfg/config.yaml":  "rules: [builtin]\n",
		"cfg/rules/a.yaml": big,
		"cfg/rules/b.yaml": big,
	})
	many := map[string]string{"cfg/config.yaml": "rules: [builtin]\n"}
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		many["cfg/rules/"+k+".yaml"] = "rules: []\n"
	}
	fill(t, c, "many-bucket", many)

	tests := []struct {
		name    string
		uri     string
		opts    s3bundle.Options
		wantErr string
	}{
		{name: "missing configuration", uri: "s3://config-bucket/ok/nope.yaml", wantErr: "s3://config-bucket/ok/nope.yaml: no such object"},
		{name: "missing bucket", uri: "s3://no-such-bucket/ok/config.yaml", wantErr: "s3://no-such-bucket/ok/config.yaml: no such bucket"},
		{name: "bad uri", uri: "s3://config-bucket/ok/", wantErr: "is not an s3://bucket/key URI"},
		{name: "a key climbing out", uri: "s3://escape-bucket/cfg/config.yaml",
			wantErr: `s3://escape-bucket/cfg/../../escaped.yaml: refusing object key: "../../escaped.yaml" is not a plain relative path under s3://escape-bucket/cfg/`},
		{name: "an absolute key", uri: "s3://absolute-bucket/cfg/config.yaml",
			wantErr: `s3://absolute-bucket/cfg//etc/cron.d/x: refusing object key: "/etc/cron.d/x" is not a plain relative path`},
		{name: "a key with a dot segment", uri: "s3://dot-bucket/cfg/config.yaml",
			wantErr: `refusing object key: "rules/./config.yaml" is not a plain relative path`},
		{name: "over the size limit", uri: "s3://big-bucket/cfg/config.yaml", opts: s3bundle.Options{MaxBytes: 1000},
			wantErr: "s3://big-bucket/cfg/: the objects under the prefix total more than 1000 bytes (the limit)"},
		{name: "the configuration alone over the size limit", uri: "s3://big-bucket/cfg/rules/a.yaml", opts: s3bundle.Options{MaxBytes: 500},
			wantErr: "s3://big-bucket/cfg/rules/: the objects under the prefix total more than 500 bytes (the limit)"},
		{name: "over the object limit", uri: "s3://many-bucket/cfg/config.yaml", opts: s3bundle.Options{MaxObjects: 4, PageSize: 2},
			wantErr: "s3://many-bucket/cfg/: more than 4 objects under the prefix (the limit)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// dir sits inside parent, so a file escaping dir would show.
			parent := t.TempDir()
			dir := filepath.Join(parent, "bundle")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			_, err := s3bundle.Fetch(context.Background(), c, tt.uri, dir, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Fetch error = %v, want one containing %q", err, tt.wantErr)
			}
			for _, secret := range []string{"testing", "AWS_SECRET"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error holds %q: %v", secret, err)
				}
			}
			entries, err := os.ReadDir(parent)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 {
				t.Errorf("the download directory's parent holds %d entries, want only the directory", len(entries))
			}
			if _, err := os.Stat(filepath.Join(parent, "..", "escaped.yaml")); err == nil {
				t.Error("an object was written outside the download directory")
			}
		})
	}
}

// lyingClient serves one configuration whose listing understates the size
// of another object, as a prefix written to between the listing and the
// download would.
type lyingClient struct{ body string }

func (l lyingClient) ListObjectsV2(context.Context, *s3.ListObjectsV2Input, ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	return &s3.ListObjectsV2Output{Contents: []types.Object{
		{Key: aws.String("cfg/config.yaml"), Size: aws.Int64(5)},
		{Key: aws.String("cfg/grown.yaml"), Size: aws.Int64(5)},
	}}, nil
}

func (l lyingClient) GetObject(_ context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	body := "rules"
	if aws.ToString(in.Key) == "cfg/grown.yaml" {
		body = l.body
	}
	return &s3.GetObjectOutput{Body: io.NopCloser(strings.NewReader(body)), ETag: aws.String(`"e"`)}, nil
}

func TestFetchCapsWhatIsDownloaded(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		wantErr bool
	}{
		{name: "fills the budget exactly", body: strings.Repeat("x", 95)},
		{name: "one byte over", body: strings.Repeat("x", 96), wantErr: true},
		{name: "far over", body: strings.Repeat("x", 1<<20), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := s3bundle.Fetch(context.Background(), lyingClient{body: tt.body}, "s3://cfg-bucket/cfg/config.yaml", dir, s3bundle.Options{MaxBytes: 100})
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "total more than 100 bytes") {
					t.Fatalf("Fetch error = %v, want the size limit", err)
				}
				if st, err := os.Stat(filepath.Join(dir, "grown.yaml")); err == nil && st.Size() > 101 {
					t.Errorf("wrote %d bytes of an object over the limit", st.Size())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
