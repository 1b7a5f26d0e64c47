package cloudwatch

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"time"
)

// stateVersion is the version of the state file format.
const stateVersion = 1

// seenEntry is one record in the dedup window: its CloudWatch timestamp
// (ms), which decides when it leaves the window, and a hash of its
// CloudWatch event id, which tells a re-read of the same log event (expected)
// from a second delivery of the same CloudTrail record (a duplicate).
type seenEntry struct {
	TS   int64
	CWID uint64
}

// groupState is everything that survives a restart for one log group.
type groupState struct {
	// Position (ms): every record whose timestamp is at least
	// Position-lookback and that was visible at Position has been handled.
	Position int64
	// Floor (ms): on a first run started at "now" or a time, records both
	// stamped and ingested before Floor are skipped. Zero means none.
	Floor int64
	// Seen is the dedup window, keyed by dedup key.
	Seen map[string]seenEntry
	// Dups holds the hashed CloudWatch event ids of second deliveries
	// already counted, with their timestamps, so that re-reads of a
	// duplicate are not counted again. Not saved: after a restart a
	// duplicate may be counted once more.
	Dups map[uint64]int64
}

// stateFile is groupState on disk.
type stateFile struct {
	Version    int        `json:"version"`
	LogGroup   string     `json:"log_group"`
	PositionMS int64      `json:"position_ms"`
	FloorMS    int64      `json:"floor_ms,omitempty"`
	Seen       []seenJSON `json:"seen"`
}

type seenJSON struct {
	Key  string `json:"k"`
	TS   int64  `json:"t"`
	CWID uint64 `json:"c"`
}

// prune drops the entries stamped before cutoff (ms): no later query reads
// that far back, so they can never be returned again.
func (g *groupState) prune(cutoff int64) {
	for k, e := range g.Seen {
		if e.TS < cutoff {
			delete(g.Seen, k)
		}
	}
	for k, ts := range g.Dups {
		if ts < cutoff {
			delete(g.Dups, k)
		}
	}
}

// clampFuture moves a position (and a first-run floor) that lies ahead of
// now back to now, and reports the old position when it did. A position in
// the future — the clock was stepped back, or the host's clock was wrong
// when it was saved — would skip every record until the clock caught up,
// silently. Records between now-lookback and the old position are read
// again; the dedup window keeps those already handled from being handed on
// twice.
func (g *groupState) clampFuture(now time.Time) (was time.Time, clamped bool) {
	nowMS := now.UnixMilli()
	if g.Floor > nowMS {
		g.Floor = nowMS
	}
	if g.Position <= nowMS {
		return time.Time{}, false
	}
	was = time.UnixMilli(g.Position)
	g.Position = nowMS
	return was, true
}

// countDup records a second delivery and reports whether it is the first
// time this log event was seen as one.
func (g *groupState) countDup(e seenEntry) bool {
	if g.Dups == nil {
		g.Dups = map[uint64]int64{}
	}
	if _, ok := g.Dups[e.CWID]; ok {
		return false
	}
	g.Dups[e.CWID] = e.TS
	return true
}

var unsafeChars = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`[^A-Za-z0-9._-]+`) })

// statePath is the file that holds one log group's state: readable, and
// unique through a hash of the full name.
func statePath(dir, logGroup string) string {
	sum := sha256.Sum256([]byte(logGroup))
	readable := unsafeChars().ReplaceAllString(logGroup, "_")
	if len(readable) > 80 {
		readable = readable[len(readable)-80:]
	}
	return filepath.Join(dir, "cloudwatch-"+readable+"-"+hex.EncodeToString(sum[:6])+".json")
}

// loadState reads a log group's state; ok is false when there is none yet.
func loadState(dir, logGroup string) (st *groupState, ok bool, err error) {
	path := statePath(dir, logGroup)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("load cloudwatch state: %w", err)
	}
	var f stateFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, false, fmt.Errorf("load cloudwatch state %s: %w", path, err)
	}
	if f.Version != stateVersion {
		return nil, false, fmt.Errorf("load cloudwatch state %s: unsupported version %d", path, f.Version)
	}
	if f.LogGroup != logGroup {
		return nil, false, fmt.Errorf("load cloudwatch state %s: holds log group %q, want %q", path, f.LogGroup, logGroup)
	}
	st = &groupState{Position: f.PositionMS, Floor: f.FloorMS, Seen: make(map[string]seenEntry, len(f.Seen))}
	for _, e := range f.Seen {
		st.Seen[e.Key] = seenEntry{TS: e.TS, CWID: e.CWID}
	}
	return st, true, nil
}

// saveState writes a log group's state atomically: a temp file in the same
// directory, fsync, rename over the old file, fsync the directory. A crash
// at any point leaves either the old state or the new one.
func saveState(dir, logGroup string, st *groupState) error {
	f := stateFile{Version: stateVersion, LogGroup: logGroup, PositionMS: st.Position, FloorMS: st.Floor,
		Seen: make([]seenJSON, 0, len(st.Seen))}
	for k, e := range st.Seen {
		f.Seen = append(f.Seen, seenJSON{Key: k, TS: e.TS, CWID: e.CWID})
	}
	// A stable order keeps the file diffable when debugging.
	sort.Slice(f.Seen, func(i, j int) bool {
		if f.Seen[i].TS != f.Seen[j].TS {
			return f.Seen[i].TS < f.Seen[j].TS
		}
		return f.Seen[i].Key < f.Seen[j].Key
	})
	b, err := json.Marshal(&f)
	if err != nil {
		return fmt.Errorf("save cloudwatch state: %w", err)
	}
	if err := writeFileAtomic(statePath(dir, logGroup), b); err != nil {
		return fmt.Errorf("save cloudwatch state: %w", err)
	}
	return nil
}

func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// hashCWID reduces a CloudWatch event id (a 56-digit string on AWS) to 64
// bits: it only has to tell re-reads from duplicates.
func hashCWID(id string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(id))
	return h.Sum64()
}
