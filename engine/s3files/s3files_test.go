package s3files_test

import (
	"context"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/engine/awslogs"
	"github.com/trailwatch/trailwatch/engine/files"
	"github.com/trailwatch/trailwatch/engine/s3files"
	"github.com/trailwatch/trailwatch/internal/faultproxy"
	"github.com/trailwatch/trailwatch/internal/s3bundle"
	"github.com/trailwatch/trailwatch/internal/s3test"
)

// read is what a walk gave: each record as "file\trecord" with the file
// relative to its root, and each problem.
type read struct {
	records []string
	bad     []string
}

func walk(t *testing.T, root string, paths []string, opts s3files.Options) read {
	t.Helper()
	var got read
	err := s3files.Walk(context.Background(), paths, opts, func(r files.Record) error {
		got.records = append(got.records, strings.TrimPrefix(r.File, root)+"\t"+string(r.Data))
		return nil
	}, func(b *files.BadInput) {
		got.bad = append(got.bad, strings.TrimPrefix(b.Error(), root))
	})
	if err != nil {
		t.Fatalf("Walk %v: %v", paths, err)
	}
	return got
}

// fixture is a trail's tree on disk and the same tree in a bucket.
type fixture struct {
	rig   *s3test.Rig
	dir   string
	files []string
}

func newFixture(t *testing.T, opts s3test.TrailOptions) *fixture {
	t.Helper()
	rig := s3test.Start(t)
	dir := t.TempDir()
	f := &fixture{rig: rig, dir: dir, files: s3test.WriteTrail(t, dir, opts)}
	rig.Bucket("trail")
	rig.UploadTree("trail", "", dir)
	return f
}

func TestWalkReadsAsLocal(t *testing.T) {
	f := newFixture(t, s3test.TrailOptions{})
	local := walk(t, f.dir+"/", []string{f.dir}, s3files.Options{})
	if len(local.records) == 0 {
		t.Fatal("the local tree gave no records")
	}
	for _, tt := range []struct {
		name string
		opts s3files.Options
	}{
		{"defaults", s3files.Options{}},
		{"one object at a time, small pages, tiny buffers", s3files.Options{Parallel: 1, PageSize: 3, BufferSize: 64}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var st s3files.Stats
			tt.opts.Stats = &st
			got := walk(t, "s3://trail/", []string{"s3://trail"}, tt.opts)
			if !slices.Equal(got.records, local.records) {
				t.Errorf("S3 gave %d records, the local copy %d; first S3 %.200q, first local %.200q", len(got.records), len(local.records), first(got.records), first(local.records))
			}
			if !slices.Equal(got.bad, local.bad) {
				t.Errorf("S3 problems %q, local %q", got.bad, local.bad)
			}
			if st.Objects.Load() == 0 || st.Bytes.Load() == 0 {
				t.Errorf("stats: %d objects, %d bytes", st.Objects.Load(), st.Bytes.Load())
			}
		})
	}

	t.Run("a prefix without its slash and one object", func(t *testing.T) {
		sub := "AWSLogs/111122223333/CloudTrail/us-east-1"
		got := walk(t, "s3://trail/", []string{"s3://trail/" + sub}, s3files.Options{})
		want := walk(t, f.dir+"/", []string{filepath.Join(f.dir, sub)}, s3files.Options{})
		if len(want.records) == 0 || !slices.Equal(got.records, want.records) {
			t.Errorf("prefix: %d records, want %d", len(got.records), len(want.records))
		}
		rel, _ := filepath.Rel(f.dir, f.files[3])
		got = walk(t, "s3://trail/", []string{"s3://trail/" + filepath.ToSlash(rel)}, s3files.Options{})
		want = walk(t, f.dir+"/", []string{f.files[3]}, s3files.Options{})
		if len(want.records) == 0 || !slices.Equal(got.records, want.records) {
			t.Errorf("object: %q, want %q", got.records, want.records)
		}
	})

	t.Run("local paths and s3 mixed, in order", func(t *testing.T) {
		got := walk(t, "", []string{f.files[0], "s3://trail/" + rel(t, f.dir, f.files[1])}, s3files.Options{})
		if len(got.records) != 8 || !strings.HasPrefix(got.records[0], f.files[0]) || !strings.HasPrefix(got.records[7], "s3://trail/") {
			t.Errorf("records = %q", got.records)
		}
	})
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func rel(t *testing.T, dir, p string) string {
	t.Helper()
	r, err := filepath.Rel(dir, p)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.ToSlash(r)
}

// TestListPrunesByTime lists with a time range: only the day folders the
// range needs are listed, and what is read is what a local walk pruned
// the same way reads.
func TestListPrunesByTime(t *testing.T) {
	// Two accounts, two regions, 2024-05-01 to 2024-05-08 every 6 hours.
	f := newFixture(t, s3test.TrailOptions{End: time.Date(2024, 5, 8, 0, 0, 0, 0, time.UTC)})
	w := awslogs.ForRange(time.Date(2024, 5, 3, 12, 0, 0, 0, time.UTC), time.Date(2024, 5, 3, 13, 0, 0, 0, time.UTC), time.Hour)
	local := walk(t, f.dir+"/", []string{f.dir}, s3files.Options{Options: files.Options{SkipDir: w.SkipDir, SkipFile: w.SkipFile}})
	if len(local.records) == 0 {
		t.Fatal("nothing in range locally")
	}
	c := &s3test.CountingClient{Client: f.rig.S3}
	got := walk(t, "s3://trail/", []string{"s3://trail/AWSLogs/"}, s3files.Options{
		Options: files.Options{SkipDir: w.SkipDir, SkipFile: w.SkipFile}, Window: w, Client: c,
	})
	if !slices.Equal(got.records, local.records) {
		t.Errorf("S3 gave %q, the local copy %q", got.records, local.records)
	}
	// AWSLogs/ (1), each account's folder (2), each account's CloudTrail/
	// (2) and the one day, 2024/05/03, of each of the four regions (4);
	// each account's CloudTrail-Insight/ (2) and its region's day (2).
	// CloudTrail-Digest/ and elasticloadbalancing/ are never listed.
	const want = 1 + 2 + 2 + 4 + 2 + 2
	if n := c.Lists.Load(); n != want {
		t.Errorf("%d List calls, want %d", n, want)
	}

	t.Run("an open window lists page by page", func(t *testing.T) {
		c := &s3test.CountingClient{Client: f.rig.S3}
		walk(t, "s3://trail/", []string{"s3://trail/"}, s3files.Options{Client: c, PageSize: 1000})
		if n := c.Lists.Load(); n != 1 {
			t.Errorf("%d List calls for %d objects, want 1", n, len(f.files))
		}
	})
	t.Run("a window longer than a month lists years and months", func(t *testing.T) {
		long := awslogs.ForRange(time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC), time.Date(2024, 5, 2, 0, 0, 0, 0, time.UTC), time.Hour)
		c := &s3test.CountingClient{Client: f.rig.S3}
		got := walk(t, "s3://trail/", []string{"s3://trail/AWSLogs/111122223333/CloudTrail/us-east-1/"}, s3files.Options{
			Options: files.Options{SkipDir: long.SkipDir, SkipFile: long.SkipFile}, Window: long, Client: c,
		})
		// The region (1), 2024 (1), 05 (1), and the days 01 and 02 (2).
		if n := c.Lists.Load(); n != 5 {
			t.Errorf("%d List calls, want 5", n)
		}
		if len(got.records) != 4*4+4 { // four files on 05-01, one at 00:05 on 05-02
			t.Errorf("%d records", len(got.records))
		}
	})
}

func TestWalkProblems(t *testing.T) {
	rig := s3test.Start(t)
	rig.Bucket("trail")
	good := s3test.Gzip([]byte(`{"Records":[` + s3test.TrailRecord("a", "111122223333", "us-east-1", true, time.Now()) + `]}`))
	rig.Put("trail", "x/1-good.json.gz", good)
	rig.Put("trail", "x/2-corrupt.json.gz", []byte{0x1f, 0x8b, 0, 1, 2, 3})
	rig.Put("trail", "x/3-good.json.gz", good)

	got := walk(t, "s3://trail/", []string{"s3://trail/x/"}, s3files.Options{})
	if len(got.records) != 2 || len(got.bad) != 1 || !strings.Contains(got.bad[0], "x/2-corrupt.json.gz") {
		t.Errorf("records %q, problems %q: want both good files read and the corrupt one reported", got.records, got.bad)
	}

	for _, tt := range []struct{ uri, want string }{
		{"s3://no-such-bucket/x/", "no such bucket"},
		{"s3://trail/x/4-missing.json.gz", "s3://trail/x/4-missing.json.gz: no such object"},
		{"s3://", "no bucket"},
	} {
		err := s3files.Walk(context.Background(), []string{tt.uri}, s3files.Options{}, func(files.Record) error { return nil }, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Walk %s: %v, want an error saying %q", tt.uri, err, tt.want)
		}
	}
}

// TestWalkResumesACutConnection cuts every object's first transfer
// halfway: each is asked for again from where it stopped, and every
// record arrives once.
func TestWalkResumesACutConnection(t *testing.T) {
	f := newFixture(t, s3test.TrailOptions{Records: 200, End: time.Date(2024, 5, 2, 0, 0, 0, 0, time.UTC)})
	cut := map[string]bool{}
	proxy := faultproxy.Start(t, f.rig.Moto.Endpoint, func(r *http.Request, _ []byte, _ int) faultproxy.Fault {
		// The first whole-object GET of each object: not the listings,
		// not the resumed (ranged) transfers.
		if r.Method != http.MethodGet || r.URL.Query().Has("list-type") || r.Header.Get("Range") != "" || cut[r.URL.Path] {
			return faultproxy.Forward
		}
		cut[r.URL.Path] = true
		return faultproxy.CutAfter(100)
	})
	t.Setenv("AWS_ENDPOINT_URL", proxy.URL)
	client, err := s3bundle.NewClient(context.Background(), s3bundle.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	local := walk(t, f.dir+"/", []string{f.dir}, s3files.Options{})
	got := walk(t, "s3://trail/", []string{"s3://trail/"}, s3files.Options{Client: client, BufferSize: 256})
	if n := proxy.Count(faultproxy.CutResponse); n != len(f.files)+6 {
		t.Errorf("%d transfers cut, want one per object (%d)", n, len(f.files)+6)
	}
	if !slices.Equal(got.records, local.records) || len(got.bad) != len(local.bad) {
		t.Errorf("after cut transfers: %d records and problems %q, want %d and %q", len(got.records), got.bad, len(local.records), local.bad)
	}
}
