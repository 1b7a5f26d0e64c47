package search

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func results(t *testing.T, recs ...string) []Result {
	t.Helper()
	s := New(Query{}, Options{OnBadInput: func(p string, err error) { t.Fatalf("%s: %v", p, err) }})
	for i, r := range recs {
		s.Offer([]byte(r), fmt.Sprint(i), time.Time{})
	}
	return s.Results()
}

func TestRenderTable(t *testing.T) {
	evil := strings.Replace(recUser, `"eventName":"AuthorizeSecurityGroupIngress"`, `"eventName":"Evil\u001b[31mName"`, 1)
	rs := results(t, evil, recRole, recRoot)
	tests := []struct {
		name     string
		width    int
		contains []string
	}{
		{"plain keeps everything", 0, []string{"arn:aws:sts::111122223333:assumed-role/Deploy/deploy-42", "i-0123, i-0456", `Evil\x1b[31mName`, "Failure"}},
		{"narrow terminal truncates", 100, []string{"…", "2024-05-01T10:00:00Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := Render(&b, rs, RenderOptions{Format: FormatTable, Width: tt.width}); err != nil {
				t.Fatal(err)
			}
			out := b.String()
			if strings.ContainsRune(out, '\x1b') {
				t.Errorf("a control character reached the output:\n%s", out)
			}
			for _, s := range tt.contains {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(lines) != 4 || !strings.HasPrefix(lines[0], "TIME") {
				t.Fatalf("want a header and 3 rows:\n%s", out)
			}
			if !strings.HasPrefix(lines[1], "2024-05-01T10:00:00Z") {
				t.Errorf("not newest first:\n%s", out)
			}
			for _, l := range lines {
				if tt.width > 0 && utf8.RuneCountInString(l) > tt.width {
					t.Errorf("line of %d characters is wider than %d: %q", utf8.RuneCountInString(l), tt.width, l)
				}
			}
		})
	}
}

func TestRenderShow(t *testing.T) {
	rs := results(t, recRole)
	var b bytes.Buffer
	if err := Render(&b, rs, RenderOptions{Show: true}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, s := range []string{"event id:           e-2", "access key:         ASIADEPLOY", "request parameters:\n    {\n      \"instancesSet\"", "response elements:", "AWS::EC2::Instance i-0123"} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
}

// TestRenderJSONReadBack checks that json and jsonl output are read back
// by the file reader as the same records.
func TestRenderJSONReadBack(t *testing.T) {
	rs := results(t, recUser, recRole, recRoot, recKMS)
	for _, format := range []string{FormatJSON, FormatJSONL} {
		t.Run(format, func(t *testing.T) {
			var b bytes.Buffer
			if err := Render(&b, rs, RenderOptions{Format: format}); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(t.TempDir(), "out."+format)
			if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			s := New(Query{}, Options{OnBadInput: func(p string, err error) { t.Errorf("%s: %v", p, err) }})
			if err := s.Files(context.Background(), []string{p}, nil); err != nil {
				t.Fatal(err)
			}
			if got, want := ids(s.Results()), ids(rs); got != want {
				t.Errorf("read back %s, want %s", got, want)
			}
		})
	}
	if err := Render(&bytes.Buffer{}, rs, RenderOptions{Format: "yaml"}); err == nil {
		t.Error("an unknown format was accepted")
	}
}
