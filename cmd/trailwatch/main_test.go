package main

import (
	"bufio"
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestHugeheapInitialisesBeforeTheHeapGrows checks that internal/hugeheap
// initialises before the packages that fill the heap at start-up (the AWS
// SDK's schemas, protobuf, expr): its advice covers only the heap mapped
// up to then and what is carved from it afterwards, so memory taken
// before it faults in 4 KiB pages. Go initialises, among the packages
// whose imports are ready, the first by import path; hugeheap imports
// little so that it is ready early. A new import there can move it last.
func TestHugeheapInitialisesBeforeTheHeapGrows(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, stderr.Bytes())
	}
	// init PKG @T ms, C ms clock, B bytes, A allocs
	before, found := 0, false
	sc := bufio.NewScanner(&stderr)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 9 || f[0] != "init" || f[8] != "bytes," {
			continue
		}
		if f[1] == "github.com/trailwatch/trailwatch/internal/hugeheap" {
			found = true
			break
		}
		n, err := strconv.Atoi(f[7])
		if err != nil {
			t.Fatalf("cannot read %q", sc.Text())
		}
		before += n
	}
	if !found {
		t.Fatalf("no init of internal/hugeheap in GODEBUG=inittrace=1 output:\n%s", stderr.Bytes())
	}
	if before > 512<<10 {
		t.Errorf("packages initialised before internal/hugeheap allocated %d bytes (want under 512 KiB): its advice comes too late", before)
	}
	t.Logf("%d bytes allocated by package initialisation before internal/hugeheap's", before)
}

// TestNoRegexpCompiledAtInit checks that no package of this module linked
// into trailwatch compiles a regular expression in a package-level
// variable's initialiser: every command, `version` included, would pay
// for it at start-up (~20 µs each hot, more on a cold start), most for
// expressions only an error path or another command uses. Compile on
// first use instead: var re = sync.OnceValue(func() *regexp.Regexp {
// return regexp.MustCompile(...) }).
func TestNoRegexpCompiledAtInit(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}} {{.Dir}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	const module = "github.com/trailwatch/trailwatch"
	fset := token.NewFileSet()
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, dir, _ := strings.Cut(line, " ")
		if path != module && !strings.HasPrefix(path, module+"/") {
			continue
		}
		pkgs, err := parser.ParseDir(fset, dir, func(fi fs.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, pkg := range pkgs {
			for _, f := range pkg.Files {
				for _, decl := range f.Decls {
					gen, ok := decl.(*ast.GenDecl)
					if !ok || gen.Tok != token.VAR {
						continue
					}
					ast.Inspect(gen, func(n ast.Node) bool {
						if _, ok := n.(*ast.FuncLit); ok {
							return false // runs when called, not at init
						}
						call, ok := n.(*ast.CallExpr)
						if !ok {
							return true
						}
						if sel, ok := call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "MustCompile" {
							if id, ok := sel.X.(*ast.Ident); ok && id.Name == "regexp" {
								t.Errorf("%s: a package-level variable compiles a regular expression at init", fset.Position(call.Pos()))
							}
						}
						return true
					})
				}
			}
		}
	}
}
