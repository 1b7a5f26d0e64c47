package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/internal/corpus"
	"github.com/trailwatch/trailwatch/internal/s3test"
)

// benchTree writes the corpus twice over as CloudTrail would deliver it to
// S3 (gzipped {"Records":[...]} files of perFile records, in the
// AWSLogs/ layout) and returns the bytes written.
func benchTree(b *testing.B, dir string, perFile int) int64 {
	b.Helper()
	recs := corpus.Records(b)
	var all [][]byte
	for pass := range 2 {
		for _, r := range recs {
			// A distinct eventID per pass: CloudTrail's duplicates are
			// dropped, and the second pass must be evaluated too.
			all = append(all, []byte(strings.Replace(string(r), `"eventID":"`, fmt.Sprintf(`"eventID":"p%d-`, pass), 1)))
		}
	}
	var total int64
	at := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < len(all); i += perFile {
		var doc strings.Builder
		doc.WriteString(`{"Records":[`)
		for j, r := range all[i:min(i+perFile, len(all))] {
			if j > 0 {
				doc.WriteByte(',')
			}
			doc.Write(r)
		}
		doc.WriteString(`]}`)
		gz := s3test.Gzip([]byte(doc.String()))
		p := filepath.Join(dir, "AWSLogs", "111122223333", "CloudTrail", "us-east-1", at.Format("2006/01/02"),
			fmt.Sprintf("111122223333_CloudTrail_us-east-1_%s_%06d.json.gz", at.Format("20060102T1504Z"), i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, gz, 0o644); err != nil {
			b.Fatal(err)
		}
		total += int64(len(gz))
		at = at.Add(5 * time.Minute)
	}
	return total
}

// BenchmarkReplayS3 replays the same tree of gzipped log files (the corpus
// twice) from a local directory and from S3 (moto, reached directly, so
// that objects are fetched in parallel as from S3): `trailwatch replay`
// with every built-in rule, as a user runs it. The files hold 100 or 250
// records each: the corpus's busiest account logs about 250 records in
// the five minutes a log file covers.
//
//	go test -run '^$' -bench ReplayS3 -benchtime 20x ./internal/cli/
//
// MB/s is of the gzipped files. The target: s3 within 2× of local. moto
// spends a few milliseconds of Python per GET on the benchmark's own
// cores, which S3 does not: the smaller the files, the more that weighs.
func BenchmarkReplayS3(b *testing.B) {
	rig := s3test.Start(b)
	b.Setenv("AWS_ENDPOINT_URL", rig.Moto.Direct)
	for _, perFile := range []int{100, 250} {
		dir := b.TempDir()
		size := benchTree(b, dir, perFile)
		bucket := fmt.Sprintf("bench-%d", perFile)
		rig.Bucket(bucket)
		rig.UploadTree(bucket, "", dir)
		for _, in := range []struct{ name, path string }{{"local", dir}, {"s3", "s3://" + bucket + "/"}} {
			b.Run(fmt.Sprintf("%d-records-a-file/%s", perFile, in.name), func(b *testing.B) {
				b.SetBytes(size)
				for b.Loop() {
					code := Main(context.Background(), []string{"replay", "--quiet", "--output", "json", in.path},
						Stdio{In: strings.NewReader(""), Out: io.Discard, Err: io.Discard})
					if code != 0 {
						b.Fatalf("replay %s: exit %d", in.path, code)
					}
				}
			})
		}
	}
}
