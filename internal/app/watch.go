package app

import (
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/trailwatch/trailwatch/internal/config"
)

// defaultWatchDebounce is reload.debounce when the configuration leaves
// it out (config.DefaultReloadDebounce, where the documentation reads it).
const defaultWatchDebounce = config.DefaultReloadDebounce

// fileWatch watches what a reload reads, with fsnotify (inotify, kqueue,
// ReadDirectoryChangesW): a change is seen at once and costs nothing
// while nothing changes, and the kernel names the path that changed.
// Polling modification times instead would stat every rule file on every
// tick, add the tick to every reload's delay, and miss a same-size
// rewrite within the file system's timestamp granularity (a second or
// two on some).
//
// It watches directories, not files: the directory that holds each path
// (so that a file replaced by rename, or deleted and created again, is
// still seen), and every directory under a rule directory, skipping
// hidden ones as the rule loader does. Only reloadLoop's goroutine uses
// it.
type fileWatch struct {
	w        *fsnotify.Watcher
	log      *slog.Logger
	debounce time.Duration
	maxWait  time.Duration

	files    map[string]string // file paths (absolute) -> the file they resolve to
	dirRoots []string          // rule directories (absolute)
	watched  map[string]bool   // directories being watched
}

func newFileWatch(log *slog.Logger, debounce time.Duration) (*fileWatch, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch the configuration and rules: %w", err)
	}
	return &fileWatch{w: w, log: log, debounce: debounce, maxWait: 10 * debounce, watched: map[string]bool{}}, nil
}

func (fw *fileWatch) close() {
	if err := fw.w.Close(); err != nil {
		fw.log.Warn("stop watching the configuration and rules", "err", err)
	}
}

// sync points the watches at roots, the paths a reload reads. It is
// called after every reload, so that the watches follow a configuration
// that names other rule paths, and directories that appeared or were
// replaced.
func (fw *fileWatch) sync(roots []string) {
	want := map[string]bool{}
	fw.files = map[string]string{}
	fw.dirRoots = fw.dirRoots[:0]
	for _, p := range roots {
		abs := absPath(p)
		want[filepath.Dir(abs)] = true
		st, err := os.Stat(p)
		if err != nil || !st.IsDir() {
			// A missing path is watched for as a file until it appears.
			real := resolvePath(abs)
			fw.files[abs] = real
			want[filepath.Dir(real)] = true
			continue
		}
		fw.dirRoots = append(fw.dirRoots, abs)
		for _, d := range ruleDirs(p) {
			want[d] = true
		}
	}
	for d := range want {
		// Added again each time: a directory deleted and created again
		// is a new directory to the kernel, and adding is idempotent.
		if err := fw.w.Add(d); err != nil {
			fw.log.Warn("cannot watch a directory; its changes need SIGHUP", "dir", d, "err", err)
			delete(want, d)
		}
	}
	for d := range fw.watched {
		if !want[d] {
			_ = fw.w.Remove(d) // may be gone already, with its watch
		}
	}
	fw.watched = want
}

// ruleDirs returns p and the directories under it that the rule loader
// walks, as absolute paths.
func ruleDirs(p string) []string {
	var dirs []string
	_ = filepath.WalkDir(p, func(name string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil // gone meanwhile: the next sync sees
		}
		if name != p && isHidden(d.Name()) {
			return filepath.SkipDir
		}
		dirs = append(dirs, absPath(name))
		return nil
	})
	return dirs
}

// relevant reports whether ev may change what a reload reads. A new
// directory under a rule directory is watched at once, so that files
// written into it next are seen too.
func (fw *fileWatch) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false // indexers, backups and deletes send these; the content is the same
	}
	name := ev.Name
	for f, real := range fw.files {
		if name == f || name == real {
			return true
		}
		// A symbolic link swapped in the file's directory (a Kubernetes
		// ConfigMap updates ..data so): the file now reads elsewhere.
		if real != f && filepath.Dir(name) == filepath.Dir(f) {
			if now := resolvePath(f); now != real {
				fw.files[f] = now
				return true
			}
		}
	}
	for _, d := range fw.dirRoots {
		rel, under := strings.CutPrefix(name, d+string(filepath.Separator))
		if name != d && !under {
			continue
		}
		if under {
			parts := strings.Split(filepath.ToSlash(rel), "/")
			for _, dir := range parts[:len(parts)-1] {
				if isHidden(dir) {
					return false // the loader skips hidden directories
				}
			}
			if isRuleFile(name) {
				return true
			}
		}
		st, err := os.Lstat(name)
		switch {
		case err != nil:
			// Gone: it mattered if it was the rule directory or one
			// under it.
			return name == d || fw.watched[name]
		case st.IsDir():
			if under && isHidden(st.Name()) {
				return false
			}
			// New, or created again: watch it and what it holds now, so
			// that files written into it next are seen too.
			for _, sub := range ruleDirs(name) {
				if err := fw.w.Add(sub); err == nil {
					fw.watched[sub] = true
				}
			}
			return true
		default:
			// A symbolic link swapped in (a Kubernetes ConfigMap's ..data)
			// changes what the links beside it read.
			return name == d || st.Mode()&fs.ModeSymlink != 0
		}
	}
	return false
}

// isRuleFile is the rule loader's test for the files it reads in a
// directory.
func isRuleFile(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	return ext == ".yaml" || ext == ".yml"
}

func isHidden(base string) bool { return strings.HasPrefix(base, ".") }

func absPath(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return filepath.Clean(p)
}

// resolvePath returns the file that p names after symbolic links, or p
// when it does not resolve (missing, or a dangling link).
func resolvePath(p string) string {
	if real, err := filepath.EvalSymlinks(p); err == nil {
		return real
	}
	return p
}
