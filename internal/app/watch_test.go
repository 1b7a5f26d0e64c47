package app

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFileWatchEvents checks which file system events fileWatch takes for
// a change a reload would see, with a real watcher. After each action the
// test writes a new sentinel rule file: the first relevant event must be
// the action's or, for an action that must be ignored, the sentinel's
// (inotify keeps one watcher's events in order), so nothing waits for an
// event that should not come.
func TestFileWatchEvents(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	rulesDir := filepath.Join(dir, "rules")
	mustWrite := func(path, data string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(cfg, "rules: [rules/]\n")
	mustWrite(filepath.Join(rulesDir, "r.yaml"), "rules: []\n")

	fw, err := newFileWatch(slog.New(slog.DiscardHandler), 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer fw.close()
	fw.sync([]string{cfg, rulesDir})

	var sentinel string
	sentinels := 0
	// next returns the path of the next relevant event, skipping those
	// of earlier sentinels (a write may send more than one event).
	next := func() string {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case ev := <-fw.w.Events:
				if fw.relevant(ev) && (ev.Name == sentinel || !strings.HasPrefix(filepath.Base(ev.Name), "sentinel-")) {
					return ev.Name
				}
			case err := <-fw.w.Errors:
				t.Fatalf("watcher: %v", err)
			case <-deadline:
				t.Fatal("no relevant event within 10s")
			}
		}
	}
	// check writes a new sentinel after the action, checks the first
	// relevant event with ok, and takes every event up to the sentinel's.
	check := func(t *testing.T, action func(), ok func(first string) bool) {
		t.Helper()
		action()
		sentinels++
		sentinel = filepath.Join(rulesDir, fmt.Sprintf("sentinel-%d.yaml", sentinels))
		mustWrite(sentinel, "rules: []\n")
		first := next()
		if !ok(first) {
			t.Errorf("first relevant event: %s", first)
		}
		for got := first; got != sentinel; got = next() {
		}
	}
	is := func(want string) func(string) bool {
		return func(got string) bool {
			if want == "" {
				want = sentinel // ignored: the sentinel comes first
			}
			if got != want {
				t.Logf("want %s", want)
			}
			return got == want
		}
	}

	tests := []struct {
		name   string
		action func()
		want   string // the first relevant path; "" when the action must be ignored
	}{
		{"the configuration written in place", func() { mustWrite(cfg, "rules: [rules/]\n# edited\n") }, cfg},
		{"files beside the configuration are not", func() {
			mustWrite(filepath.Join(dir, "alerts.jsonl"), "{}\n")
			mustWrite(filepath.Join(dir, "other.yaml"), "x: 1\n")
		}, ""},
		{"editor swap, backup and probe files are not", func() {
			mustWrite(filepath.Join(rulesDir, ".r.yaml.swp"), "x")
			mustWrite(filepath.Join(rulesDir, "r.yaml~"), "x")
			mustWrite(filepath.Join(rulesDir, "4913"), "")
		}, ""},
		{"a hidden directory is not", func() {
			mustWrite(filepath.Join(rulesDir, ".git", "objects", "x.yaml"), "x")
		}, ""},
		{"chmod alone is not", func() {
			if err := os.Chmod(cfg, 0o640); err != nil {
				t.Fatal(err)
			}
		}, ""},
		{"a rule file replaced by rename", func() {
			mustWrite(filepath.Join(rulesDir, "r.yaml.tmp"), "rules: []\n# new\n")
			if err := os.Rename(filepath.Join(rulesDir, "r.yaml.tmp"), filepath.Join(rulesDir, "r.yaml")); err != nil {
				t.Fatal(err)
			}
		}, filepath.Join(rulesDir, "r.yaml")},
		{"a rule file in new subdirectories", func() {
			mustWrite(filepath.Join(rulesDir, "a", "b", "r.yml"), "rules: []\n")
		}, filepath.Join(rulesDir, "a")},
		{"a file in the new subdirectory, written again", func() {
			mustWrite(filepath.Join(rulesDir, "a", "b", "r.yml"), "rules: []\n# edited\n")
		}, filepath.Join(rulesDir, "a", "b", "r.yml")},
		{"subdirectories removed", func() {
			if err := os.RemoveAll(filepath.Join(rulesDir, "a")); err != nil {
				t.Fatal(err)
			}
		}, filepath.Join(rulesDir, "a", "b", "r.yml")},
		{"a subdirectory created again", func() {
			if err := os.Mkdir(filepath.Join(rulesDir, "a"), 0o700); err != nil {
				t.Fatal(err)
			}
		}, filepath.Join(rulesDir, "a")},
		{"and its new files are seen", func() {
			mustWrite(filepath.Join(rulesDir, "a", "again.yaml"), "rules: []\n")
		}, filepath.Join(rulesDir, "a", "again.yaml")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { check(t, tt.action, is(tt.want)) })
	}

	t.Run("a Kubernetes ConfigMap update swaps a symbolic link", func(t *testing.T) {
		cm := filepath.Join(dir, "cm")
		mustWrite(filepath.Join(cm, "..v1", "config.yaml"), "rules: []\n")
		for _, l := range [][2]string{{"..v1", "..data"}, {"..data/config.yaml", "config.yaml"}} {
			if err := os.Symlink(l[0], filepath.Join(cm, l[1])); err != nil {
				t.Fatal(err)
			}
		}
		linked := filepath.Join(cm, "config.yaml")
		fw.sync([]string{linked, rulesDir})
		// Which of the swap's events is seen first depends on when it is
		// read: any in the ConfigMap's directory will do.
		check(t, func() {
			mustWrite(filepath.Join(cm, "..v2", "config.yaml"), "rules: []\n# v2\n")
			if err := os.Symlink("..v2", filepath.Join(cm, "..data_tmp")); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(filepath.Join(cm, "..data_tmp"), filepath.Join(cm, "..data")); err != nil {
				t.Fatal(err)
			}
		}, func(first string) bool { return filepath.Dir(first) == cm })

		fw.sync([]string{linked, rulesDir})
		t.Run("and the new target is watched", func(t *testing.T) {
			check(t, func() { mustWrite(filepath.Join(cm, "..v2", "config.yaml"), "rules: []\n# v2, edited\n") },
				is(filepath.Join(resolvePath(cm), "..v2", "config.yaml")))
		})
	})
}
