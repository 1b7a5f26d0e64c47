package rules

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// builtinFS holds the rule packs compiled into the binary: one directory
// per pack under builtin/.
//
//go:embed builtin
var builtinFS embed.FS

// builtinPacks returns the names of the built-in packs.
func builtinPacks() []string {
	entries, _ := fs.ReadDir(builtinFS, "builtin")
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names
}

// builtinFiles returns the rule files of one pack, or of all packs when
// name is empty. Files are named builtin:PACK/FILE in errors.
func builtinFiles(name string) ([]File, error) {
	packs := builtinPacks()
	if name != "" {
		found := false
		for _, p := range packs {
			found = found || p == name
		}
		if !found {
			return nil, fmt.Errorf("load rules: no built-in pack %q (have %s)", name, strings.Join(packs, ", "))
		}
		packs = []string{name}
	}
	var files []File
	for _, p := range packs {
		root := path.Join("builtin", p)
		err := fs.WalkDir(builtinFS, root, func(name string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !isRuleFileName(name) {
				return err
			}
			display := "builtin:" + strings.TrimPrefix(name, "builtin/")
			f, err := fsFile(builtinFS, name, display, builtinText(display))
			if err != nil {
				return err
			}
			f.builtin = true
			files = append(files, f)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("load built-in pack %s: %w", p, err)
		}
	}
	return files, nil
}
