// Package mdcheck checks the Markdown files that document trailwatch's
// deployment examples: the fenced blocks they show, that they name every
// file beside them, and that their links lead somewhere.
package mdcheck

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// CodeBlocks returns the fenced blocks of one language (```lang) of a
// Markdown text, without their fences.
func CodeBlocks(text, lang string) []string {
	re := regexp.MustCompile("(?ms)^```" + regexp.QuoteMeta(lang) + "\n(.*?)^```")
	var out []string
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		out = append(out, m[1])
	}
	return out
}

// HeadingAnchors returns the anchors GitHub gives a Markdown file's
// headings: lower case, punctuation dropped, spaces as hyphens.
func HeadingAnchors(md string) []string {
	var out []string
	inCode := false
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if inCode || !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || ('a' <= r && r <= 'z') || ('0' <= r && r <= '9'):
				b.WriteRune(r)
			}
		}
		out = append(out, b.String())
	}
	return out
}

// CheckLinks fails t for every relative link of text (a Markdown file in
// the working directory) to a file that does not exist or a heading that
// file does not have.
func CheckLinks(t testing.TB, text string) {
	t.Helper()
	link := regexp.MustCompile(`\]\(([^)\s#]+)(#[^)\s]*)?\)`)
	for _, m := range link.FindAllStringSubmatch(text, -1) {
		target, anchor := m[1], strings.TrimPrefix(m[2], "#")
		if strings.Contains(target, "://") {
			continue
		}
		data, err := os.ReadFile(target)
		if err != nil {
			t.Errorf("link to %s: %v", target, err)
			continue
		}
		if anchor != "" && !slices.Contains(HeadingAnchors(string(data)), anchor) {
			t.Errorf("link to %s#%s: no such heading", target, anchor)
		}
	}
}

// CheckNamesEveryFile fails t for every file under the working directory,
// but the Markdown file itself (name), that text does not name as `path`.
func CheckNamesEveryFile(t testing.TB, name, text string) {
	t.Helper()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path == name {
			return err
		}
		if !strings.Contains(text, "`"+filepath.ToSlash(path)+"`") {
			t.Errorf("%s does not mention `%s`", name, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
