package outbox

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/trailwatch/trailwatch/notifiers"
)

// bbolt's page layout, for damaging files on purpose: a 16-byte header
// (id, flags, count, overflow), and in a meta page (pages 0 and 1) the
// freelist's page id at offset 16+4+4+4+4+16.
const (
	pageHeader     = 16
	freelistInMeta = pageHeader + 32
	leafPageFlag   = 0x02
	freelistFlag   = 0x10
)

// filledOutbox writes an outbox with pending, delivered and dead entries
// for two notifiers, and closes it.
func filledOutbox(t *testing.T) (path string, e *env) {
	t.Helper()
	e = newEnv(t)
	o, err := Open(e.path, e.opts)
	if err != nil {
		t.Fatal(err)
	}
	mustEnqueue(t, o, 40, append(items("slack", keys("s", 20)...), items("mail", keys("m", 20)...)...)...)
	n := &fakeNotifier{outcome: func(_ context.Context, call int, a notifiers.Alert) error {
		switch {
		case a.DedupKey < "m05", strings.HasPrefix(a.DedupKey, "s") && a.DedupKey < "s05":
			return nil
		case a.DedupKey == "m05" || a.DedupKey == "s05":
			return notifiers.Permanent(errors.New("no such channel"))
		}
		return errors.New("down")
	}}
	stop := run(t, o, map[string]notifiers.Notifier{"slack": n, "mail": n})
	waitFor(t, "the first deliveries", func() bool { return len(list(t, o, Delivered)) == 10 && len(list(t, o, Dead)) == 2 })
	stop()
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(e.path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	_ = db.View(func(tx *bolt.Tx) error {
		slackRecordsRoot = int(uint64(tx.Bucket(bNotifiers).Bucket([]byte("slack")).Bucket(bRecords).Root()))
		return nil
	})
	db.Close()
	return e.path, e
}

// slackRecordsRoot is the page of the slack notifier's records bucket in
// filledOutbox's file.
var slackRecordsRoot int

// pages returns the file's pages (of the OS page size bbolt used).
func pages(t *testing.T, data []byte) int {
	t.Helper()
	return len(data) / os.Getpagesize()
}

func damage(t *testing.T, path string, how func(data []byte)) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	how(data)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// The ways a file gets damaged: what each does to a copy of it.
var damages = []struct {
	name      string
	how       func(t *testing.T, data []byte)
	recovered int // entries Salvage must bring back, of 40
}{
	{"invalid freelist page", func(t *testing.T, data []byte) {
		ps := os.Getpagesize()
		for meta := 0; meta < 2; meta++ {
			fl := binary.LittleEndian.Uint64(data[meta*ps+freelistInMeta:])
			binary.LittleEndian.PutUint16(data[int(fl)*ps+8:], leafPageFlag)
		}
	}, 40},
	{"one notifier's records zeroed", func(t *testing.T, data []byte) {
		ps := os.Getpagesize()
		clear(data[slackRecordsRoot*ps : (slackRecordsRoot+1)*ps])
	}, 20},
	{"garbage over the data pages", func(t *testing.T, data []byte) {
		ps := os.Getpagesize()
		for i := 2 * ps; i < len(data); i++ {
			data[i] = byte(i*7 + 3)
		}
	}, 0},
}

// TestDamagedFileIsReportedNotPanicked damages a real outbox file in each
// way and opens it, writable and read-only: never a panic, always an error
// wrapping ErrCorrupt that says how to salvage it.
func TestDamagedFileIsReportedNotPanicked(t *testing.T) {
	src, e := filledOutbox(t)
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			path := copyFile(t, src)
			damage(t, path, func(data []byte) { d.how(t, data) })
			for _, ro := range []bool{false, true} {
				opts := e.opts
				opts.ReadOnly = ro
				o, err := Open(path, opts)
				if err == nil {
					o.Close()
					t.Fatalf("read-only %v: Open of a damaged file succeeded", ro)
				}
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "trailwatch outbox --salvage") {
					t.Errorf("read-only %v: Open = %v, want ErrCorrupt and how to salvage", ro, err)
				}
			}
		})
	}
}

// TestSalvage moves a damaged file aside and copies what can be read into
// a new outbox: with only the freelist damaged, every entry in its state;
// the pending ones are then delivered.
func TestSalvage(t *testing.T) {
	src, e := filledOutbox(t)
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			path := copyFile(t, src)
			damage(t, path, func(data []byte) { d.how(t, data) })
			rep, err := Salvage(path, e.opts)
			if err != nil {
				t.Fatalf("Salvage: %v", err)
			}
			if _, err := os.Stat(rep.Damaged); err != nil || filepath.Dir(rep.Damaged) != filepath.Dir(path) {
				t.Errorf("the damaged file is not kept beside: %q, %v", rep.Damaged, err)
			}
			got := rep.Pending + rep.Delivered + rep.Dead
			if got < d.recovered {
				t.Errorf("salvaged %d entries (%+v), want at least %d", got, rep, d.recovered)
			}
			if got < 40 && len(rep.Lost) == 0 {
				t.Errorf("salvaged %d of 40 entries and reports nothing lost", got)
			}
			o, err := Open(path, e.opts)
			if err != nil {
				t.Fatalf("Open after Salvage: %v", err)
			}
			defer o.Close()
			if d.recovered == 40 {
				if rep.Pending != 28 || rep.Delivered != 10 || rep.Dead != 2 {
					t.Errorf("salvaged %+v, want 28 pending, 10 delivered, 2 dead", rep)
				}
				n := &fakeNotifier{}
				run(t, o, map[string]notifiers.Notifier{"slack": n, "mail": n})
				waitFor(t, "the salvaged pending alerts", func() bool { return len(n.Sent()) == 28 })
				mustEnqueue(t, o, 0, items("slack", "s00", "s10")...) // still idempotent
			}
		})
	}
}

func TestSalvageRefusesWhileLocked(t *testing.T) {
	e := newEnv(t)
	e.open()
	if _, err := Salvage(e.path, e.opts); !errors.Is(err, ErrLocked) {
		t.Errorf("Salvage of a file in use = %v, want ErrLocked", err)
	}
}

// FuzzOpenDamaged flips bytes of a real outbox file where the fuzzer says
// and opens it: Open, List and Enqueue may fail, never panic.
func FuzzOpenDamaged(f *testing.F) {
	f.Add(uint32(4096*2+20), byte(0xff), uint32(0), byte(0))
	f.Add(uint32(48), byte(0x07), uint32(4096*3+8), byte(0x10))
	f.Fuzz(func(t *testing.T, off1 uint32, v1 byte, off2 uint32, v2 byte) {
		e := newEnv(t)
		o, err := Open(e.path, e.opts)
		if err != nil {
			t.Fatal(err)
		}
		mustEnqueue(t, o, 30, items("n", keys("k", 30)...)...)
		o.Close()
		damage(t, e.path, func(data []byte) {
			data[int(off1)%len(data)] ^= v1
			data[int(off2)%len(data)] ^= v2
		})
		o, err = Open(e.path, e.opts)
		if err != nil {
			return
		}
		defer o.Close()
		_, _ = o.List(All)
		_, _ = o.Enqueue(context.Background(), items("n", "new")...)
		_, _ = o.Parked()
	})
}

// TestRequirePaired: an outbox deleted or emptied beside read positions is
// not silently recreated; a new state directory, or an outbox that is
// there, opens as ever.
func TestRequirePaired(t *testing.T) {
	e := newEnv(t)
	e.opts.RequirePaired = true
	dir := filepath.Dir(e.path)
	if o, err := Open(e.path, e.opts); err != nil {
		t.Fatalf("first run in a new state directory: %v", err)
	} else {
		mustEnqueue(t, o, 3, items("slack", "a", "b", "c")...)
		o.Close()
	}
	if err := os.MkdirAll(filepath.Join(dir, "cloudwatch"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cloudwatch", "cloudwatch-group-abc.json"), []byte(`{}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if o, err := Open(e.path, e.opts); err != nil {
		t.Fatalf("an outbox that is there: %v", err)
	} else {
		o.Close()
	}
	for _, lose := range []struct {
		name string
		do   func() error
	}{
		{"deleted", func() error { return os.Remove(e.path) }},
		{"emptied", func() error { return os.WriteFile(e.path, nil, 0o600) }},
	} {
		t.Run(lose.name, func(t *testing.T) {
			if err := lose.do(); err != nil {
				t.Fatal(err)
			}
			_, err := Open(e.path, e.opts)
			if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "cloudwatch/") || !strings.Contains(err.Error(), "--accept-empty-outbox") {
				t.Errorf("Open = %v, want ErrMissing naming the positions and the way out", err)
			}
			if st, err := os.Stat(e.path); err == nil && st.Size() > 0 {
				t.Error("the refused Open created a file: the next start would not refuse")
			}
			accept := e.opts
			accept.RequirePaired = false
			o, err := Open(e.path, accept)
			if err != nil {
				t.Fatalf("accepting the empty outbox: %v", err)
			}
			o.Close()
			if o, err = Open(e.path, e.opts); err != nil {
				t.Fatalf("after the accepted start: %v", err)
			}
			o.Close()
		})
	}
}
