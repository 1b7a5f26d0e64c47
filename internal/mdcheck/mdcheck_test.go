package mdcheck

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

const doc = "# Deploying it\n\nSee [the guide](guide.md#the-first-step), [gone](gone.md), [nowhere](guide.md#nope)," +
	" [site](https://example.com/x) and `template.yaml`.\n\n```yaml\nsource: {}\n```\n\n```sh\nls\n```\n\n```yaml\nb: 1\n```\n"

func TestChecks(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for name, body := range map[string]string{"README.md": doc, "guide.md": "## The first step\n", "template.yaml": "x", "extra.txt": "y"} {
		if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := CodeBlocks(doc, "yaml"); !slices.Equal(got, []string{"source: {}\n", "b: 1\n"}) {
		t.Errorf("CodeBlocks = %q", got)
	}
	if got := HeadingAnchors("# Deploying it\n```sh\n# not a heading\n```\n## S3 → SQS, and back_up\n"); !slices.Equal(got, []string{"deploying-it", "s3--sqs-and-back_up"}) {
		t.Errorf("HeadingAnchors = %q", got)
	}
	r := &recorder{TB: t}
	CheckLinks(r, doc)
	CheckNamesEveryFile(r, "README.md", doc)
	got := strings.Join(r.errs, "\n")
	for _, want := range []string{"link to gone.md", "link to guide.md#nope: no such heading", "README.md does not mention `extra.txt`"} {
		if !strings.Contains(got, want) {
			t.Errorf("reported:\n%s\nwant a line with %q", got, want)
		}
	}
	if len(r.errs) != 4 { // gone.md, #nope, extra.txt, guide.md
		t.Errorf("%d problems reported, want 4:\n%s", len(r.errs), got)
	}
}
