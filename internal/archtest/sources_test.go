package archtest

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/trailwatch/trailwatch/engine/source"
	_ "github.com/trailwatch/trailwatch/internal/config" // registers the source types
)

// TestSourcesAreOneLineEachAndDocumented checks what docs/sources.md
// promises: each source type is registered by one line of
// internal/config/sources.go, and the doc's table of registered sources
// lists exactly the registered types.
func TestSourcesAreOneLineEachAndDocumented(t *testing.T) {
	types := source.Types()
	if len(types) == 0 {
		t.Fatal("no source type is registered")
	}
	code, err := os.ReadFile(filepath.Join("..", "config", "sources.go"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, m := range regexp.MustCompile(`(?m)^\s*source\.Register\("([^"]+)"`).FindAllSubmatch(code, -1) {
		lines = append(lines, string(m[1]))
	}
	slices.Sort(lines)
	if !slices.Equal(lines, types) {
		t.Errorf("internal/config/sources.go registers %v in source.Register lines; the registry holds %v", lines, types)
	}

	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "sources.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(doc), "## Registered sources")
	if !ok {
		t.Fatal(`docs/sources.md has no "## Registered sources" section`)
	}
	var documented []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9-]+)` \\|").FindAllStringSubmatch(table, -1) {
		documented = append(documented, m[1])
	}
	slices.Sort(documented)
	if !slices.Equal(documented, types) {
		t.Errorf("docs/sources.md's table lists %v; the registered source types are %v", documented, types)
	}
}
