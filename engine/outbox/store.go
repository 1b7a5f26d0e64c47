package outbox

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/trailwatch/trailwatch/notifiers"
)

// The file's layout. The root bucket "notifiers" holds one bucket per
// notifier name, and each of those holds:
//
//	records  seq -> record JSON      every entry, by enqueue order
//	keys     key -> seq              the idempotency index
//	pending  seq -> (empty)          the queue: pending entries only
//	done     finished-at|seq -> ()   delivered and dead entries, by age, for Purge
//
// seq comes from the notifier bucket's sequence, so it never repeats; all
// integers are 8-byte big-endian so that byte order is numeric order.
var (
	bMeta      = []byte("meta")
	bNotifiers = []byte("notifiers")
	bRecords   = []byte("records")
	bKeys      = []byte("keys")
	bPending   = []byte("pending")
	bDone      = []byte("done")

	kVersion = []byte("version")
	// kBytes in the meta bucket is what the entries take up (entrySize
	// summed), kept by putRecord and deleteRecord, for the size cap.
	kBytes = []byte("bytes")
)

// schemaVersion is bumped on an incompatible change of the layout above.
const schemaVersion = 1

// record is an entry as stored. The alert stays in its JSON form so that
// the drainer decodes it once per attempt and listing can skip it.
type record struct {
	Key         string          `json:"key"`
	Notifier    string          `json:"notifier"`
	State       State           `json:"state"`
	Attempts    int             `json:"attempts,omitempty"`
	NextAttempt time.Time       `json:"next_attempt,omitzero"`
	Backoff     time.Duration   `json:"backoff,omitempty"`
	LastError   string          `json:"last_error,omitempty"`
	EnqueuedAt  time.Time       `json:"enqueued_at"`
	RequeuedAt  time.Time       `json:"requeued_at,omitzero"`
	DeliveredAt time.Time       `json:"delivered_at,omitzero"`
	DeadAt      time.Time       `json:"dead_at,omitzero"`
	Alert       json.RawMessage `json:"alert"`

	// Held says the last attempt found the delivery held by another
	// process (see drain.go): the drainer steps past the entry until
	// NextAttempt instead of holding the queue behind it.
	Held bool `json:"held,omitempty"`
}

func (r *record) entry(seq uint64) (Entry, error) {
	e := Entry{
		Seq:         seq,
		Key:         r.Key,
		Notifier:    r.Notifier,
		State:       r.State,
		Attempts:    r.Attempts,
		NextAttempt: r.NextAttempt,
		LastError:   r.LastError,
		EnqueuedAt:  r.EnqueuedAt,
		RequeuedAt:  r.RequeuedAt,
		DeliveredAt: r.DeliveredAt,
		DeadAt:      r.DeadAt,
	}
	if err := json.Unmarshal(r.Alert, &e.Alert); err != nil {
		return e, fmt.Errorf("decode alert of entry %d of %q: %w", seq, r.Notifier, err)
	}
	return e, nil
}

// ageFrom is when the entry's MaxAge starts to count.
func (r *record) ageFrom() time.Time {
	if r.RequeuedAt.After(r.EnqueuedAt) {
		return r.RequeuedAt
	}
	return r.EnqueuedAt
}

func initSchema(tx *bolt.Tx) error {
	meta, err := tx.CreateBucketIfNotExists(bMeta)
	if err != nil {
		return err
	}
	if v := meta.Get(kVersion); v != nil {
		if got := binary.BigEndian.Uint64(v); got != schemaVersion {
			return fmt.Errorf("outbox schema version %d, this trailwatch reads %d", got, schemaVersion)
		}
	} else if err := meta.Put(kVersion, u64(schemaVersion)); err != nil {
		return err
	}
	if _, err = tx.CreateBucketIfNotExists(bNotifiers); err != nil {
		return err
	}
	if meta.Get(kBytes) == nil {
		// A file from before the size cap: count its entries once.
		var total int64
		err := forEachNotifier(tx, func(_ string, nb *bolt.Bucket) error {
			return nb.Bucket(bRecords).ForEach(func(_, v []byte) error {
				var r struct {
					Key string `json:"key"`
				}
				_ = json.Unmarshal(v, &r)
				total += entrySize(r.Key, len(v))
				return nil
			})
		})
		if err != nil {
			return err
		}
		return meta.Put(kBytes, u64(uint64(total)))
	}
	return nil
}

// entrySize is what one entry takes up in the file, near enough: its
// record, its key in the index, and the index entries.
func entrySize(key string, recordLen int) int64 {
	return int64(recordLen + 2*len(key) + 48)
}

// storedBytes returns what the entries take up (kBytes).
func storedBytes(tx *bolt.Tx) int64 {
	meta := tx.Bucket(bMeta)
	if meta == nil {
		return 0
	}
	return int64(seqOf(meta.Get(kBytes)))
}

// addBytes changes kBytes by n (in a writable transaction).
func addBytes(tx *bolt.Tx, n int64) error {
	meta := tx.Bucket(bMeta)
	if meta == nil || n == 0 {
		return nil
	}
	return meta.Put(kBytes, u64(uint64(max(storedBytes(tx)+n, 0))))
}

// notifierBucket returns name's bucket, creating it when create is set
// (only in a writable transaction). Without create, a missing bucket is nil.
func notifierBucket(tx *bolt.Tx, name string, create bool) (*bolt.Bucket, error) {
	root := tx.Bucket(bNotifiers)
	if root == nil {
		if !create {
			return nil, nil
		}
		return nil, fmt.Errorf("outbox file has no %q bucket", bNotifiers)
	}
	if nb := root.Bucket([]byte(name)); nb != nil || !create {
		return nb, nil
	}
	nb, err := root.CreateBucket([]byte(name))
	if err != nil {
		return nil, fmt.Errorf("create bucket for notifier %q: %w", name, err)
	}
	for _, sub := range [][]byte{bRecords, bKeys, bPending, bDone} {
		if _, err := nb.CreateBucket(sub); err != nil {
			return nil, fmt.Errorf("create bucket for notifier %q: %w", name, err)
		}
	}
	return nb, nil
}

// forEachNotifier calls fn for every notifier bucket, in name order.
func forEachNotifier(tx *bolt.Tx, fn func(name string, nb *bolt.Bucket) error) error {
	root := tx.Bucket(bNotifiers)
	if root == nil {
		return nil // a read-only open of a file never written
	}
	return root.ForEachBucket(func(k []byte) error {
		return fn(string(k), root.Bucket(k))
	})
}

func getRecord(nb *bolt.Bucket, seq uint64) (*record, error) {
	v := nb.Bucket(bRecords).Get(u64(seq))
	if v == nil {
		return nil, fmt.Errorf("entry %d: %w", seq, ErrNotFound)
	}
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decode entry %d: %w", seq, err)
	}
	return &r, nil
}

// putRecord stores r as entry seq, new or replacing, and counts its size.
func putRecord(nb *bolt.Bucket, seq uint64, r *record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode entry %d: %w", seq, err)
	}
	recs := nb.Bucket(bRecords)
	delta := entrySize(r.Key, len(b))
	if old := recs.Get(u64(seq)); old != nil {
		delta -= entrySize(r.Key, len(old))
	}
	if err := recs.Put(u64(seq), b); err != nil {
		return err
	}
	return addBytes(nb.Tx(), delta)
}

// deleteRecord removes entry seq (whose key is key) from the records and
// the key index, and uncounts its size. The pending and done indexes are
// the caller's.
func deleteRecord(nb *bolt.Bucket, seq uint64, key string) error {
	recs := nb.Bucket(bRecords)
	old := recs.Get(u64(seq))
	if old == nil {
		return nil
	}
	n := entrySize(key, len(old))
	if err := nb.Bucket(bKeys).Delete([]byte(key)); err != nil {
		return err
	}
	if err := recs.Delete(u64(seq)); err != nil {
		return err
	}
	return addBytes(nb.Tx(), -n)
}

func decodeEntry(notifier string, k, v []byte) (Entry, error) {
	if v == nil {
		return Entry{}, fmt.Errorf("pending entry %d of %q has no record", seqOf(k), notifier)
	}
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return Entry{}, fmt.Errorf("decode entry %d of %q: %w", seqOf(k), notifier, err)
	}
	return r.entry(seqOf(k))
}

func u64(v uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, v)
}

func seqOf(k []byte) uint64 {
	if len(k) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(k)
}

// doneKey orders finished entries by when they finished. Times before the
// epoch clamp to zero.
func doneKey(at time.Time, seq uint64) []byte {
	ns := at.UnixNano()
	if ns < 0 {
		ns = 0
	}
	return binary.BigEndian.AppendUint64(u64(uint64(ns)), seq)
}

// alertOf decodes a stored alert.
func alertOf(r *record) (notifiers.Alert, error) {
	var a notifiers.Alert
	err := json.Unmarshal(r.Alert, &a)
	return a, err
}
