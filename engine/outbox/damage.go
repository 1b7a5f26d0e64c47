package outbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// What the outbox does when its file is damaged, lost, or growing without
// bound. The file is the only record of alerts not yet delivered, so none
// of these may pass silently:
//
//   - A damaged file (a torn page, a bad freelist) made bbolt panic, and
//     the service crash-looped. Open checks the file (bbolt's Check) and
//     every transaction recovers bbolt's panics: both give an error wrapping
//     ErrCorrupt that says what to do. Salvage copies what can still be
//     read into a new file.
//   - A deleted or emptied file was silently recreated while the read
//     positions beside it had moved past the alerts it held. With
//     Options.RequirePaired, Open refuses to create an outbox in a state
//     directory that already holds positions (ErrMissing).
//   - Delivered entries were kept for the whole retention (7 days) whatever
//     their number, so an alert storm could fill the disk. Options.MaxBytes
//     caps what the entries take up: past it, the oldest delivered entries
//     are dropped first, counted and logged.

var (
	// ErrCorrupt is wrapped by the error of an outbox whose file is
	// damaged.
	ErrCorrupt = errors.New("outbox file is damaged")
	// ErrMissing is wrapped by Open's error when Options.RequirePaired is
	// set and the outbox file is missing or empty while the state
	// directory holds read positions.
	ErrMissing = errors.New("outbox file is missing or empty")
)

// corruptError reports a damaged file and what to do about it.
func corruptError(path string, cause any) error {
	return fmt.Errorf("open outbox %s: %w (%v). Alerts it holds cannot be read or sent. "+
		"Stop trailwatch and run `trailwatch outbox --salvage --state-dir %s`: it moves the file aside "+
		"and copies every entry that can still be read into a new outbox", path, ErrCorrupt, cause, filepath.Dir(path))
}

// view is db.View that turns a panic of bbolt (a damaged page), or a fault
// reading the mapped file, into an error wrapping ErrCorrupt.
func (o *Outbox) view(fn func(*bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer o.recoverDamage(&err)
	return o.db.View(fn)
}

// update is db.Update, with view's handling of damage.
func (o *Outbox) update(fn func(*bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer o.recoverDamage(&err)
	return o.db.Update(fn)
}

func (o *Outbox) recoverDamage(err *error) {
	if r := recover(); r != nil {
		o.log.Error("outbox file is damaged", "path", o.path, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		*err = corruptError(o.path, r)
	}
}

// checkFile reads every bucket, key and value of the file, on the caller's
// goroutine (which must recover panics and faults): a damaged page panics
// or faults here rather than later. bbolt's own Check runs on a goroutine
// of its own, where a fault in the mapped file cannot be recovered.
func checkFile(db *bolt.DB) error {
	return db.View(func(tx *bolt.Tx) error {
		var sum byte
		var walk func(b *bolt.Bucket, depth int) error
		walk = func(b *bolt.Bucket, depth int) error {
			if depth > 4 {
				return errors.New("buckets nested deeper than the outbox's layout")
			}
			c := b.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				sum ^= k[0] ^ k[len(k)-1]
				if v == nil {
					nb := b.Bucket(k)
					if nb == nil {
						return fmt.Errorf("key %q holds neither a value nor a bucket", k)
					}
					if err := walk(nb, depth+1); err != nil {
						return err
					}
					continue
				}
				if len(v) > 0 {
					sum ^= v[0] ^ v[len(v)-1]
				}
			}
			return nil
		}
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error { return walk(b, 1) })
	})
}

// fresh reports whether path holds no outbox yet: absent, or empty.
func fresh(path string) bool {
	st, err := os.Stat(path)
	return errors.Is(err, os.ErrNotExist) || (err == nil && st.Size() == 0)
}

// positionsIn lists what in dir says a service ran there: a source's state
// (a non-empty subdirectory, as every source keeps its positions in one) or
// the alert lifecycle's state file.
func positionsIn(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, "."):
		case e.IsDir():
			if sub, err := os.ReadDir(filepath.Join(dir, name)); err == nil && len(sub) > 0 {
				out = append(out, name+"/")
			}
		case name == "lifecycle.json":
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// missingError refuses to recreate a lost outbox.
func missingError(path string, positions []string) error {
	return fmt.Errorf("open outbox %s: %w, but the state directory holds read positions (%s): "+
		"the alerts that were pending in it would be lost without a word. Restore the file if you can; "+
		"if it was lost for good (or moved aside by `trailwatch outbox --salvage`), start once with "+
		"--accept-empty-outbox to begin a new one", path, ErrMissing, strings.Join(positions, ", "))
}

// DefaultMaxBytes is the default cap on what the outbox's entries take up.
const DefaultMaxBytes = 128 << 20

// evictWarnEvery is how often at most eviction is logged.
const evictWarnEvery = 10 * time.Minute

// evict drops the oldest delivered entries, across notifiers, until the
// entries take up at most MaxBytes. Pending entries and dead letters are
// never dropped: the first are alerts not yet sent, the second ones that
// need a person. It returns how many it dropped, and what the entries take
// up after.
func (o *Outbox) evict(tx *bolt.Tx) (dropped int, total int64, err error) {
	total = storedBytes(tx)
	if o.opts.MaxBytes <= 0 || total <= o.opts.MaxBytes {
		return 0, total, nil
	}
	type head struct {
		nb *bolt.Bucket
		c  *bolt.Cursor
		k  []byte
	}
	var heads []*head
	err = forEachNotifier(tx, func(_ string, nb *bolt.Bucket) error {
		c := nb.Bucket(bDone).Cursor()
		if k, _ := c.First(); k != nil {
			heads = append(heads, &head{nb, c, k})
		}
		return nil
	})
	if err != nil {
		return 0, total, err
	}
	for total > o.opts.MaxBytes {
		// The oldest finished entry of every notifier; done keys begin
		// with the time the entry finished.
		var h *head
		for _, x := range heads {
			if x.k != nil && (h == nil || string(x.k[:8]) < string(h.k[:8])) {
				h = x
			}
		}
		if h == nil {
			break
		}
		k := append([]byte(nil), h.k...)
		seq := seqOf(k[8:])
		r, err := getRecord(h.nb, seq)
		switch {
		case errors.Is(err, ErrNotFound):
			// An index entry without its record: drop it.
			if err := h.nb.Bucket(bDone).Delete(k); err != nil {
				return dropped, total, err
			}
		case err != nil:
			return dropped, total, err
		case r.State == Delivered:
			if err := deleteRecord(h.nb, seq, r.Key); err != nil {
				return dropped, total, err
			}
			if err := h.nb.Bucket(bDone).Delete(k); err != nil {
				return dropped, total, err
			}
			dropped++
			total = storedBytes(tx)
		default:
			// A dead letter stays; look past it.
			k = append(k, 0)
		}
		h.k, _ = h.c.Seek(k)
	}
	return dropped, total, nil
}

// noteEviction counts and (at most every evictWarnEvery) logs evictions,
// and warns when the cap cannot be kept.
func (o *Outbox) noteEviction(dropped int, total int64) {
	if dropped == 0 && total <= o.opts.MaxBytes {
		return
	}
	if o.metrics != nil && dropped > 0 {
		o.metrics.evictions.Add(float64(dropped))
	}
	o.mu.Lock()
	o.evictedSinceWarn += dropped
	now := o.opts.Now()
	warn := now.Sub(o.lastEvictWarn) >= evictWarnEvery
	n := o.evictedSinceWarn
	if warn {
		o.lastEvictWarn, o.evictedSinceWarn = now, 0
	}
	o.mu.Unlock()
	if !warn {
		return
	}
	if total > o.opts.MaxBytes {
		o.log.Warn("outbox is over its size cap with only pending alerts and dead letters left: it grows until they are delivered or requeued",
			"bytes", total, "max_bytes", o.opts.MaxBytes, "evicted", n)
		return
	}
	o.log.Warn("outbox reached its size cap: the oldest delivered alerts were dropped (an alert storm?); a re-read of their records could send them again",
		"evicted", n, "max_bytes", o.opts.MaxBytes)
}

// SalvageReport says what Salvage recovered.
type SalvageReport struct {
	// Damaged is where the damaged file was moved.
	Damaged string
	// Pending, Delivered and Dead count the entries copied.
	Pending, Delivered, Dead int
	// Lost names what could not be read.
	Lost []string
}

// Salvage moves the (damaged) outbox file at path aside, to
// path.damaged-TIME, and copies every entry that can still be read into a
// new outbox file at path, in its state (pending entries are sent when the
// service starts). It takes the file's lock, so it fails with ErrLocked
// while trailwatch runs.
func Salvage(path string, opts Options) (SalvageReport, error) {
	opts.setDefaults()
	var rep SalvageReport
	lock, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return rep, fmt.Errorf("salvage outbox: %w", err)
	}
	defer lock.Close()
	// A shared lock: trailwatch run holds the file exclusively.
	if err := lockShared(lock); err != nil {
		return rep, fmt.Errorf("salvage outbox %s: %w (is trailwatch running? stop it first)", path, ErrLocked)
	}
	rep.Damaged = path + ".damaged-" + opts.Now().UTC().Format("20060102T150405Z")
	if err := os.Rename(path, rep.Damaged); err != nil {
		return rep, fmt.Errorf("salvage outbox: move the damaged file aside: %w", err)
	}
	entries, lost := readDamaged(rep.Damaged)
	rep.Lost = lost

	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if err != nil {
		return rep, fmt.Errorf("salvage outbox: create %s: %w", path, err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		if err := initSchema(tx); err != nil {
			return err
		}
		for _, e := range entries {
			nb, err := notifierBucket(tx, e.r.Notifier, true)
			if err != nil {
				return err
			}
			if nb.Bucket(bKeys).Get([]byte(e.r.Key)) != nil {
				continue
			}
			if e.seq > nb.Sequence() {
				if err := nb.SetSequence(e.seq); err != nil {
					return err
				}
			}
			if e.r.State == Pending {
				// Tried as soon as the service starts, by whoever runs it.
				e.r.NextAttempt, e.r.Held = time.Time{}, false
			}
			if err := putRecord(nb, e.seq, &e.r); err != nil {
				return err
			}
			if err := nb.Bucket(bKeys).Put([]byte(e.r.Key), u64(e.seq)); err != nil {
				return err
			}
			switch e.r.State {
			case Pending:
				rep.Pending++
				err = nb.Bucket(bPending).Put(u64(e.seq), nil)
			case Delivered:
				rep.Delivered++
				err = nb.Bucket(bDone).Put(doneKey(e.r.DeliveredAt, e.seq), nil)
			default:
				rep.Dead++
				err = nb.Bucket(bDone).Put(doneKey(e.r.DeadAt, e.seq), nil)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("salvage outbox: write %s: %w", path, err)
	}
	return rep, nil
}

type salvaged struct {
	seq uint64
	r   record
}

// readDamaged reads what it can of a damaged outbox file: every notifier's
// records in turn, each read stopping at the first damaged page (bbolt
// panics there) and going on with the next notifier.
func readDamaged(path string) (out []salvaged, lost []string) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	var db *bolt.DB
	func() {
		defer func() {
			if r := recover(); r != nil {
				lost = append(lost, fmt.Sprintf("the whole file: %v", r))
			}
		}()
		// Read-only: bbolt does not read the freelist, a common casualty.
		var err error
		if db, err = bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: time.Second}); err != nil {
			lost = append(lost, fmt.Sprintf("the whole file: %v", err))
		}
	}()
	if db == nil {
		return nil, lost
	}
	defer db.Close()
	var names []string
	func() {
		defer func() {
			if r := recover(); r != nil {
				lost = append(lost, fmt.Sprintf("the list of notifiers, after %q: %v", names, r))
			}
		}()
		_ = db.View(func(tx *bolt.Tx) error {
			root := tx.Bucket(bNotifiers)
			if root == nil {
				return nil
			}
			return root.ForEachBucket(func(k []byte) error {
				names = append(names, string(k))
				return nil
			})
		})
	}()
	for _, name := range names {
		var last uint64
		func() {
			defer func() {
				if r := recover(); r != nil {
					lost = append(lost, fmt.Sprintf("notifier %q: entries after %d: %v", name, last, r))
				}
			}()
			_ = db.View(func(tx *bolt.Tx) error {
				nb := tx.Bucket(bNotifiers).Bucket([]byte(name))
				recs := nb.Bucket(bRecords)
				if recs == nil {
					lost = append(lost, fmt.Sprintf("notifier %q: its records", name))
					return nil
				}
				c := recs.Cursor()
				for k, v := c.First(); k != nil; k, v = c.Next() {
					var r record
					if err := json.Unmarshal(v, &r); err != nil || r.Key == "" {
						lost = append(lost, fmt.Sprintf("notifier %q: entry %d: unreadable", name, seqOf(k)))
						continue
					}
					if r.Notifier == "" {
						r.Notifier = name
					}
					last = seqOf(k)
					out = append(out, salvaged{seq: last, r: r})
				}
				return nil
			})
		}()
	}
	return out, lost
}
