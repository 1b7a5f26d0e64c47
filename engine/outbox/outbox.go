// Package outbox is trailwatch's durable alert outbox: every alert is
// written to a bbolt file in the state directory before anything is sent,
// and one goroutine per notifier drains it in enqueue order, retrying with
// exponential backoff and jitter, honouring a server's Retry-After, and
// setting aside as dead letters the alerts a notifier refuses for good.
//
// # Guarantees
//
// Enqueue returns only after its transaction is committed and fsynced, so an
// alert it accepted survives a crash or a power cut. Enqueue is idempotent on
// (Key, Notifier): the same pair enqueued again, in any state, is a no-op
// until the record is purged, Retention after it was delivered or
// dead-lettered. A source that re-reads a batch after a restart therefore
// does not send its alerts twice.
//
// Delivery is at least once. An entry is marked delivered in a transaction
// that follows the successful Notify call; a crash between the two sends
// that alert once more after the restart. Nothing else is ever re-sent.
//
// A notifier that is slow, rate-limited or down delays only its own queue:
// each notifier has its own drain goroutine and its own backoff. Within one
// notifier, delivery is first in, first out: the head entry is retried until
// it is delivered or dead-lettered, and the entries behind it wait. The one
// exception is an entry whose delivery another process holds (its notifier
// says so, see drain.go): it is stepped over, and tried again by the time
// that process's claim runs out, so one stuck claim delays only its alert.
//
// # Locking
//
// The file is locked exclusively by the process that opens it for writing.
// A second Open of the same file — for example `trailwatch outbox` while the
// service runs — waits Options.LockTimeout and then fails with an error that
// wraps ErrLocked, rather than hanging or reading a file another process is
// writing. With Options.ReadOnly several readers may share the file, but
// never with a writer.
package outbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/trailwatch/trailwatch/notifiers"
)

// FileName is the outbox file's name inside trailwatch's state directory.
const FileName = "outbox.db"

// Defaults for the zero values of Options.
const (
	DefaultInitialBackoff = time.Second
	DefaultMaxBackoff     = 5 * time.Minute
	DefaultMaxAge         = 24 * time.Hour
	DefaultAttemptTimeout = 30 * time.Second
	DefaultRetention      = 7 * 24 * time.Hour
	DefaultPurgeInterval  = time.Hour
	DefaultLockTimeout    = time.Second
)

// maxErrorLen bounds the last error kept with an entry, so that a notifier
// echoing a huge response body cannot bloat the file.
const maxErrorLen = 1024

var (
	// ErrLocked is wrapped by Open's error when another process holds the
	// outbox file.
	ErrLocked = errors.New("outbox file is locked by another process")
	// ErrNotFound is wrapped by Requeue's error when no entry has the key
	// and notifier.
	ErrNotFound = errors.New("no such outbox entry")
	// ErrNotDead is wrapped by Requeue's error when the entry is not a dead
	// letter.
	ErrNotDead = errors.New("outbox entry is not a dead letter")
	// ErrRunning is returned by Run when the outbox is already running.
	ErrRunning = errors.New("outbox is already running")
)

// Jitter selects how a retry delay is randomised.
type Jitter int

const (
	// DecorrelatedJitter waits a random time between InitialBackoff and
	// three times the previous wait, capped at MaxBackoff. It never retries
	// sooner than InitialBackoff. This is the default.
	DecorrelatedJitter Jitter = iota
	// FullJitter waits a random time between zero and
	// InitialBackoff·2^(attempts-1), capped at MaxBackoff.
	FullJitter
)

// Options configures an Outbox. The zero value of every field selects its
// default.
type Options struct {
	// Logger receives retries (debug), dead letters (warn) and storage
	// errors. Defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
	// After waits on the clock, like time.After. Defaults to time.After. A
	// test injects a fake pair of Now and After to drive backoff.
	After func(d time.Duration) <-chan time.Time
	// Rand returns a uniform number in [0, 1) for jitter. Defaults to
	// math/rand/v2.Float64.
	Rand func() float64
	// Registerer, if set, receives the outbox metrics.
	Registerer prometheus.Registerer

	// InitialBackoff is the first retry delay (default 1s).
	InitialBackoff time.Duration
	// MaxBackoff caps a computed retry delay (default 5m). A server's
	// Retry-After is honoured even when it is longer.
	MaxBackoff time.Duration
	// Jitter selects the randomisation of retry delays.
	Jitter Jitter
	// MaxAge is how long an entry may keep failing, counted from its
	// enqueue (or requeue), before it is dead-lettered (default 24h;
	// negative: retry forever). The last attempt falls on the deadline, or
	// at the server's Retry-After if that is later.
	MaxAge time.Duration
	// AttemptTimeout bounds each Notify call (default 30s).
	AttemptTimeout time.Duration
	// Retention is how long delivered and dead entries are kept, and so how
	// long Enqueue stays idempotent for them (default 7 days).
	Retention time.Duration
	// PurgeInterval is how often Run purges entries past Retention (default
	// 1h; negative: never, call Purge yourself).
	PurgeInterval time.Duration

	// LockTimeout is how long Open waits for another process to release
	// the file (default 1s).
	LockTimeout time.Duration
	// ReadOnly opens the file for List and Depth only, under a shared lock.
	// The file must exist.
	ReadOnly bool
	// RequirePaired makes Open refuse (ErrMissing) to create the file, or
	// to use an empty one, when its directory already holds read positions
	// (a source's state, or lifecycle.json): the outbox that went with
	// them was lost, and with it the alerts still pending. `run` sets it
	// unless told --accept-empty-outbox.
	RequirePaired bool
	// MaxBytes caps what the entries take up (default DefaultMaxBytes;
	// negative: no cap). Past it, Enqueue drops the oldest delivered
	// entries, which also ends their idempotency.
	MaxBytes int64
}

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.InitialBackoff, DefaultInitialBackoff)
	def(&o.MaxBackoff, DefaultMaxBackoff)
	def(&o.MaxAge, DefaultMaxAge)
	def(&o.AttemptTimeout, DefaultAttemptTimeout)
	def(&o.Retention, DefaultRetention)
	def(&o.PurgeInterval, DefaultPurgeInterval)
	def(&o.LockTimeout, DefaultLockTimeout)
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxBackoff < o.InitialBackoff {
		o.MaxBackoff = o.InitialBackoff
	}
}

// Item is one alert for one notifier, as handed to Enqueue.
type Item struct {
	// Key identifies the alert for idempotency: the same Key for the same
	// Notifier is enqueued once. It must not be empty.
	Key string
	// Notifier names the target, as in the map given to Run.
	Notifier string
	// Alert is what will be sent.
	Alert notifiers.Alert
}

// State is an entry's place in its lifecycle.
type State uint8

// The states of an entry. All is a List filter only.
const (
	All State = iota
	Pending
	Delivered
	Dead
)

// String returns the state's lowercase name.
func (s State) String() string {
	switch s {
	case All:
		return "all"
	case Pending:
		return "pending"
	case Delivered:
		return "delivered"
	case Dead:
		return "dead"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// MarshalText encodes the state as its name.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText decodes a state name.
func (s *State) UnmarshalText(b []byte) error {
	v, err := ParseState(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// ParseState returns the state named s ("all", "pending", "delivered" or
// "dead").
func ParseState(s string) (State, error) {
	for _, v := range []State{All, Pending, Delivered, Dead} {
		if v.String() == s {
			return v, nil
		}
	}
	return 0, fmt.Errorf("parse outbox state %q: want all, pending, delivered or dead", s)
}

// Entry is one stored (Key, Notifier) pair with its delivery history.
type Entry struct {
	// Seq orders a notifier's entries by enqueue.
	Seq      uint64 `json:"seq"`
	Key      string `json:"key"`
	Notifier string `json:"notifier"`
	State    State  `json:"state"`
	// Attempts counts finished Notify calls; one cut short by shutdown
	// does not count.
	Attempts int `json:"attempts"`
	// NextAttempt is when a pending entry that failed is tried again.
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	// LastError is the last failure as the notifier reported it, already
	// redacted by the notifier and bounded in length.
	LastError   string          `json:"last_error,omitempty"`
	EnqueuedAt  time.Time       `json:"enqueued_at"`
	RequeuedAt  time.Time       `json:"requeued_at,omitzero"`
	DeliveredAt time.Time       `json:"delivered_at,omitzero"`
	DeadAt      time.Time       `json:"dead_at,omitzero"`
	Alert       notifiers.Alert `json:"alert"`
}

// Outbox is the durable queue of alerts per notifier. Its methods are safe
// for concurrent use.
type Outbox struct {
	db      *bolt.DB
	path    string
	opts    Options
	log     *slog.Logger
	metrics *metrics

	mu      sync.Mutex
	depth   map[string]int
	wake    map[string]chan struct{}
	running bool
	drains  map[string]*drainer

	evictedSinceWarn int
	lastEvictWarn    time.Time
}

// Open opens (creating if needed, with its directory) the outbox file at
// path. It fails with an error wrapping ErrLocked when another process holds
// the file for longer than opts.LockTimeout, ErrCorrupt when the file is
// damaged (it checks every page), and ErrMissing when opts.RequirePaired
// forbids creating it.
func Open(path string, opts Options) (o *Outbox, err error) {
	opts.setDefaults()
	if !opts.ReadOnly {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("open outbox: %w", err)
		}
		if opts.RequirePaired && fresh(path) {
			if positions := positionsIn(filepath.Dir(path)); len(positions) > 0 {
				return nil, missingError(path, positions)
			}
		}
	}
	if !opts.ReadOnly && !fresh(path) {
		// Check an existing file before opening it for writing: bbolt
		// reads the freelist then, and panics on a damaged one, leaving
		// the file locked. A panic in a read-only open leaves at most a
		// shared lock, which does not stop the error from being told.
		ro := opts
		ro.ReadOnly, ro.Registerer = true, nil
		c, err := Open(path, ro)
		if err != nil {
			return nil, err
		}
		c.Close()
	}
	var db *bolt.DB
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		// bbolt panics on some damage (an invalid freelist page, a page
		// of the wrong type), and reading a damaged mapped file can
		// fault: report it rather than crash.
		if r := recover(); r != nil {
			if db != nil {
				_ = db.Close()
			}
			o, err = nil, corruptError(path, r)
		}
	}()
	// Read-only, the freelist is loaded now, where its damage is caught.
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout, ReadOnly: opts.ReadOnly, PreLoadFreelist: opts.ReadOnly})
	if err != nil {
		db = nil
		switch {
		case errors.Is(err, berrors.ErrTimeout):
			return nil, fmt.Errorf("open outbox %s: %w (is trailwatch running? stop it, or wait)", path, ErrLocked)
		case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
			return nil, corruptError(path, err)
		}
		return nil, fmt.Errorf("open outbox %s: %w", path, err)
	}
	if opts.ReadOnly {
		// (A writable open was preceded by a read-only one.)
		if err := checkFile(db); err != nil {
			db.Close()
			return nil, corruptError(path, err)
		}
	}
	o = &Outbox{
		db:     db,
		path:   path,
		opts:   opts,
		log:    opts.Logger.With("component", "outbox"),
		depth:  map[string]int{},
		wake:   map[string]chan struct{}{},
		drains: map[string]*drainer{},
	}
	if !opts.ReadOnly {
		if err := db.Update(initSchema); err != nil {
			db.Close()
			return nil, fmt.Errorf("open outbox %s: %w", path, err)
		}
	}
	if err := db.View(func(tx *bolt.Tx) error {
		return forEachNotifier(tx, func(name string, nb *bolt.Bucket) error {
			if n := nb.Bucket(bPending).Stats().KeyN; n > 0 {
				o.depth[name] = n
			}
			return nil
		})
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("open outbox %s: count pending: %w", path, err)
	}
	if opts.Registerer != nil {
		m, err := newMetrics(opts.Registerer)
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("open outbox %s: %w", path, err)
		}
		o.metrics = m
		for name, n := range o.depth {
			m.depth.WithLabelValues(name).Set(float64(n))
		}
		if err := opts.Registerer.Register(parkedCollector{o}); err != nil {
			// Reopened on the same registry: the collector there reads the
			// old (closed) outbox; replace it.
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				opts.Registerer.Unregister(are.ExistingCollector)
				err = opts.Registerer.Register(parkedCollector{o})
			}
			if err != nil {
				db.Close()
				return nil, fmt.Errorf("open outbox %s: register metrics: %w", path, err)
			}
		}
	}
	return o, nil
}

// ParkedAfter is how long a retry must be put off for its notifier to count
// as parked: its head alert failed and waits at least this long (a server's
// Retry-After, capped at notifiers.MaxRetryAfter, or a backoff grown this
// long), so nothing reaches that notifier meanwhile.
const ParkedAfter = time.Minute

// Parked is a notifier whose queue waits on a retry of its head alert.
type Parked struct {
	Notifier string
	// Until is when the head alert is tried again; Wait is how long the
	// retry was put off for when it failed.
	Until time.Time
	Wait  time.Duration
	// Pending is the queue's depth; LastError the head's last failure.
	Pending   int
	LastError string
}

// Parked returns the notifiers whose head alert waits for a retry put off
// by ParkedAfter or more, in name order.
func (o *Outbox) Parked() ([]Parked, error) {
	now := o.opts.Now()
	var out []Parked
	err := o.view(func(tx *bolt.Tx) error {
		return forEachNotifier(tx, func(name string, nb *bolt.Bucket) error {
			// The head, past deliveries another process holds (those
			// are not this notifier's to wait on).
			var r *record
			c := nb.Bucket(bPending).Cursor()
			for k, _ := c.First(); k != nil && r == nil; k, _ = c.Next() {
				x, err := getRecord(nb, seqOf(k))
				if err != nil {
					return err
				}
				if !x.Held {
					r = x
				}
			}
			if r == nil {
				return nil
			}
			if r.Attempts > 0 && r.NextAttempt.After(now) && r.Backoff >= ParkedAfter {
				out = append(out, Parked{Notifier: name, Until: r.NextAttempt, Wait: r.Backoff,
					Pending: o.Depth(name), LastError: r.LastError})
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read parked notifiers: %w", err)
	}
	return out, nil
}

// CheckParked is a readiness check: it fails, naming each one, while a
// notifier is parked (see Parked), since its alerts are not being sent.
func (o *Outbox) CheckParked(context.Context) error {
	parked, err := o.Parked()
	if err != nil {
		return err
	}
	if len(parked) == 0 {
		return nil
	}
	var b strings.Builder
	for i, p := range parked {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %d alerts wait, the next attempt at %s (put off %s after: %s)", p.Notifier, p.Pending,
			p.Until.UTC().Format(time.RFC3339), p.Wait, truncateError(p.LastError, 200))
	}
	return fmt.Errorf("notifiers parked: %s", b.String())
}

func truncateError(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Close closes the file. Cancel Run's context and wait for Run to return
// before calling Close.
func (o *Outbox) Close() error {
	if err := o.db.Close(); err != nil {
		return fmt.Errorf("close outbox: %w", err)
	}
	return nil
}

// Enqueue stores items in one committed, fsynced transaction and wakes the
// drainer of every notifier named. An item whose (Key, Notifier) is already
// stored, in any state, is skipped; added counts the others. Either every
// item is stored or, on error, none is.
func (o *Outbox) Enqueue(ctx context.Context, items ...Item) (added int, err error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("enqueue alerts: %w", err)
	}
	if len(items) == 0 {
		return 0, nil
	}
	type encoded struct {
		item  Item
		alert []byte
	}
	enc := make([]encoded, len(items))
	for i, it := range items {
		if it.Key == "" {
			return 0, fmt.Errorf("enqueue alerts: item %d (rule %q, notifier %q): empty key", i, it.Alert.RuleID, it.Notifier)
		}
		if it.Notifier == "" {
			return 0, fmt.Errorf("enqueue alerts: item %d (rule %q): empty notifier", i, it.Alert.RuleID)
		}
		b, err := json.Marshal(it.Alert)
		if err != nil {
			return 0, fmt.Errorf("enqueue alerts: item %d: encode alert: %w", i, err)
		}
		enc[i] = encoded{it, b}
	}
	now := o.opts.Now()
	perNotifier := map[string]int{}
	var stored []int // indexes of the items this call added
	var (
		dropped int
		total   int64
	)
	err = o.update(func(tx *bolt.Tx) error {
		clear(perNotifier)
		stored = stored[:0]
		for i, e := range enc {
			nb, err := notifierBucket(tx, e.item.Notifier, true)
			if err != nil {
				return err
			}
			keys := nb.Bucket(bKeys)
			if keys.Get([]byte(e.item.Key)) != nil {
				continue
			}
			seq, err := nb.NextSequence()
			if err != nil {
				return err
			}
			rec := record{
				Key:        e.item.Key,
				Notifier:   e.item.Notifier,
				State:      Pending,
				EnqueuedAt: now,
				Alert:      e.alert,
			}
			if err := putRecord(nb, seq, &rec); err != nil {
				return err
			}
			if err := keys.Put([]byte(e.item.Key), u64(seq)); err != nil {
				return err
			}
			if err := nb.Bucket(bPending).Put(u64(seq), nil); err != nil {
				return err
			}
			perNotifier[e.item.Notifier]++
			stored = append(stored, i)
		}
		dropped, total, err = o.evict(tx)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("enqueue alerts: %w", err)
	}
	o.logQueued(items, stored)
	o.noteEviction(dropped, total)
	for name, n := range perNotifier {
		o.addDepth(name, n)
		o.signal(name)
		added += n
	}
	return added, nil
}

// logQueued logs, at info, each alert this Enqueue stored, once with
// every notifier it waits for: what an operator reads to know an alert
// was raised and handed over, before any delivery attempt.
func (o *Outbox) logQueued(items []Item, stored []int) {
	if len(stored) == 0 || !o.log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	var order []string
	byKey := map[string][]int{}
	for _, i := range stored {
		k := items[i].Key
		if _, ok := byKey[k]; !ok {
			order = append(order, k)
		}
		byKey[k] = append(byKey[k], i)
	}
	for _, k := range order {
		idx := byKey[k]
		a := &items[idx[0]].Alert
		names := make([]string, len(idx))
		for j, i := range idx {
			names[j] = items[i].Notifier
		}
		o.log.Info("alert queued for delivery", "rule", a.RuleID, "severity", a.Severity,
			"event_id", a.EventID, "event_time", a.EventTime, "notifiers", names, "key", k)
	}
}

// List returns the entries in the given state (All for every entry),
// ordered by notifier name and then enqueue order.
func (o *Outbox) List(filter State) ([]Entry, error) {
	var out []Entry
	err := o.view(func(tx *bolt.Tx) error {
		return forEachNotifier(tx, func(name string, nb *bolt.Bucket) error {
			recs := nb.Bucket(bRecords)
			if filter == Pending {
				// The pending index avoids reading every delivered record.
				return nb.Bucket(bPending).ForEach(func(k, _ []byte) error {
					e, err := decodeEntry(name, k, recs.Get(k))
					if err != nil {
						return err
					}
					out = append(out, e)
					return nil
				})
			}
			return recs.ForEach(func(k, v []byte) error {
				var r record
				if err := json.Unmarshal(v, &r); err != nil {
					return fmt.Errorf("decode entry %d of %q: %w", seqOf(k), name, err)
				}
				if filter != All && r.State != filter {
					return nil
				}
				e, err := r.entry(seqOf(k))
				if err != nil {
					return err
				}
				out = append(out, e)
				return nil
			})
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list outbox: %w", err)
	}
	return out, nil
}

// Requeue moves the dead letter (key, notifier) back to pending, with its
// attempts reset and its max age counted afresh, and wakes its drainer. Its
// place in the queue is its original enqueue order.
func (o *Outbox) Requeue(key, notifier string) error {
	now := o.opts.Now()
	err := o.update(func(tx *bolt.Tx) error {
		nb, err := notifierBucket(tx, notifier, false)
		if err != nil {
			return err
		}
		if nb == nil {
			return ErrNotFound
		}
		sk := nb.Bucket(bKeys).Get([]byte(key))
		if sk == nil {
			return ErrNotFound
		}
		seq := seqOf(sk)
		r, err := getRecord(nb, seq)
		if err != nil {
			return err
		}
		if r.State != Dead {
			return fmt.Errorf("%w (it is %s)", ErrNotDead, r.State)
		}
		if err := nb.Bucket(bDone).Delete(doneKey(r.DeadAt, seq)); err != nil {
			return err
		}
		r.State = Pending
		r.Attempts = 0
		r.NextAttempt = time.Time{}
		r.Backoff = 0
		r.DeadAt = time.Time{}
		r.RequeuedAt = now
		if err := putRecord(nb, seq, r); err != nil {
			return err
		}
		return nb.Bucket(bPending).Put(u64(seq), nil)
	})
	if err != nil {
		return fmt.Errorf("requeue %q for %q: %w", key, notifier, err)
	}
	o.addDepth(notifier, 1)
	o.signal(notifier)
	return nil
}

// Depth returns the number of pending entries for notifier.
func (o *Outbox) Depth(notifier string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.depth[notifier]
}

// Purge deletes the delivered and dead entries that finished Retention or
// more ago, after which their keys may be enqueued again, and the oldest
// delivered entries past the size cap (MaxBytes). Pending entries are never
// purged. It returns how many entries it deleted.
func (o *Outbox) Purge() (int, error) {
	cutoff := o.opts.Now().Add(-o.opts.Retention)
	total := 0
	for {
		// Bounded transactions keep a large purge from holding the write
		// lock, and Enqueue with it, for long.
		n, err := o.purgeBatch(cutoff, 1000)
		total += n
		if err != nil {
			return total, fmt.Errorf("purge outbox: %w", err)
		}
		if n == 0 {
			break
		}
	}
	// Keep the size cap too: deliveries since the last Enqueue grew the
	// records a little.
	var dropped int
	var size int64
	err := o.update(func(tx *bolt.Tx) (err error) {
		dropped, size, err = o.evict(tx)
		return err
	})
	if err != nil {
		return total, fmt.Errorf("purge outbox: %w", err)
	}
	o.noteEviction(dropped, size)
	return total + dropped, nil
}

func (o *Outbox) purgeBatch(cutoff time.Time, limit int) (int, error) {
	n := 0
	err := o.update(func(tx *bolt.Tx) error {
		n = 0
		return forEachNotifier(tx, func(name string, nb *bolt.Bucket) error {
			var dones [][]byte
			c := nb.Bucket(bDone).Cursor()
			end := doneKey(cutoff, math.MaxUint64)
			for k, _ := c.First(); k != nil && bytes.Compare(k, end) <= 0 && n+len(dones) < limit; k, _ = c.Next() {
				dones = append(dones, append([]byte(nil), k...))
			}
			for _, k := range dones {
				seq := k[8:]
				if v := nb.Bucket(bRecords).Get(seq); v != nil {
					var r record
					if err := json.Unmarshal(v, &r); err != nil {
						return fmt.Errorf("decode entry %d of %q: %w", seqOf(seq), name, err)
					}
					if err := deleteRecord(nb, seqOf(seq), r.Key); err != nil {
						return err
					}
				}
				if err := nb.Bucket(bDone).Delete(k); err != nil {
					return err
				}
			}
			n += len(dones)
			return nil
		})
	})
	return n, err
}

func (o *Outbox) addDepth(notifier string, n int) {
	o.mu.Lock()
	o.depth[notifier] += n
	d := o.depth[notifier]
	if d == 0 {
		delete(o.depth, notifier)
	}
	o.mu.Unlock()
	if o.metrics != nil {
		o.metrics.depth.WithLabelValues(notifier).Set(float64(d))
	}
}

// wakeChan returns notifier's wake channel, which holds at most one
// signal: a drainer that finds it full re-reads its queue.
func (o *Outbox) wakeChan(notifier string) chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	ch, ok := o.wake[notifier]
	if !ok {
		ch = make(chan struct{}, 1)
		o.wake[notifier] = ch
	}
	return ch
}

func (o *Outbox) signal(notifier string) {
	select {
	case o.wakeChan(notifier) <- struct{}{}:
	default:
	}
}

// redactedError returns err's text, bounded in length and valid UTF-8. The
// notifier has already removed secrets from it.
func redactedError(err error) string {
	s := strings.ToValidUTF8(err.Error(), "\uFFFD")
	if len(s) <= maxErrorLen {
		return s
	}
	cut := maxErrorLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
