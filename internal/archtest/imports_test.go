package archtest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/trailwatch/trailwatch"

// parentMayBeImported lists the packages whose sub-packages import them by
// design: notifiers holds the Alert and Notifier types every integration
// (notifiers/slack, ...) implements (ARCHITECTURE.md: each notifiers/x
// imports only notifiers).
var parentMayBeImported = map[string]bool{
	module + "/notifiers": true,
}

// TestNoPackageImportsItsParent checks every Go file of the module, tests
// included: a sub-package (a source, the decision function) must not
// import the package above it (the pipeline that uses it), or the two
// could never be told apart and a test of one drags in the other. Commands
// (package main) are the exception: they wire.
func TestNoPackageImportsItsParent(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", root, err)
	}
	files := 0
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") {
			return nil
		}
		rel, err := filepath.Rel(root, filepath.Dir(p))
		if err != nil || rel == "." {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.ImportsOnly)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			return nil
		}
		files++
		if f.Name.Name == "main" {
			return nil
		}
		pkg := module + "/" + filepath.ToSlash(rel)
		parent := path.Dir(pkg)
		if parent == module || parentMayBeImported[parent] {
			return nil
		}
		for _, imp := range f.Imports {
			if got, _ := strconv.Unquote(imp.Path.Value); got == parent {
				t.Errorf("%s imports its parent %s: move what it needs below the parent, or the code (or test) to where both are used", filepath.Join(rel, name), parent)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 {
		t.Fatalf("read only %d Go files under %s: the walk is broken", files, root)
	}
}
