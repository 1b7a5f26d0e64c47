// Package idwindow remembers the most recent N distinct ids in bounded
// memory: the evaluator's window of CloudTrail eventIDs (duplicate
// deliveries are dropped) and the alert lifecycle's processed (rule,
// event) pairs (a batch read again is not counted twice).
package idwindow

import (
	"encoding/binary"
	"hash/maphash"
	"sync"
)

// Window remembers the most recent N distinct ids, to drop repeats. Its
// memory is bounded by N whatever the input size. It is safe for
// concurrent use.
//
// It is an open-addressing table of the ids' 16-byte keys (twice as many
// slots as ids, linear probing, a deleted key's cluster shifted back) with
// a ring that says which key to forget next. The keys are seeded hashes
// (Key), uniform already, so a key's first eight bytes are its slot: a
// lookup is usually one cache line, where a Go map of the same keys touches
// two or three, and forgetting the oldest key reads no string (the
// evaluator's window is checked for every record, in input order, on the
// one goroutine that hands results back).
type Window struct {
	mu    sync.Mutex
	slots [][16]byte // the zero key marks an empty slot
	mask  uint64
	ring  [][16]byte
	next  int
}

// New returns a window that remembers n ids.
func New(n int) *Window {
	size := 2
	for size < 2*n {
		size <<= 1
	}
	// The table and the ring in one mapping outside the heap: see keyMemory.
	keys, free := keyMemory(size + n)
	w := &Window{slots: keys[:size:size], mask: uint64(size - 1), ring: keys[size : size : size+n]}
	freeWithWindow(w, free)
	return w
}

// Add records id and reports whether it was new.
func (w *Window) Add(id string) bool { return w.AddKey(Key(id)) }

// Has reports whether id is in the window, without recording it.
func (w *Window) Has(id string) bool { return w.hasKey(Key(id)) }

func (w *Window) hasKey(key [16]byte) bool {
	if key == ([16]byte{}) {
		key[15] = 1 // as AddKey stores it
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := w.home(key); w.slots[i] != ([16]byte{}); i = (i + 1) & w.mask {
		if w.slots[i] == key {
			return true
		}
	}
	return false
}

// AddKey is Add for a key made by Key.

// Key is the window's key for id: a hash, so that the window's memory
// does not depend on the ids' lengths (nor keep the records they alias).
// It is 128 bits of two hash/maphash hashes with seeds made at random for
// the process: ids collide by chance with probability 2^-128 a pair, and
// no one can make two collide on purpose without the seeds, which never
// leave the process (the window is in memory only). SHA-256, which it
// replaces, cost ten times as much, once for every record.
func Key(id string) [16]byte {
	var key [16]byte
	binary.LittleEndian.PutUint64(key[:8], maphash.String(seeds[0], id))
	binary.LittleEndian.PutUint64(key[8:], maphash.String(seeds[1], id))
	return key
}

// seeds are Key's seeds.
var seeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

func (w *Window) AddKey(key [16]byte) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.addLocked(key)
}

func (w *Window) addLocked(key [16]byte) bool {
	if key == ([16]byte{}) {
		key[15] = 1 // the zero key marks an empty slot
	}
	i := w.home(key)
	for w.slots[i] != ([16]byte{}) {
		if w.slots[i] == key {
			return false
		}
		i = (i + 1) & w.mask
	}
	if len(w.ring) < cap(w.ring) {
		w.ring = append(w.ring, key)
	} else {
		w.remove(w.ring[w.next])
		w.ring[w.next] = key
		w.next = (w.next + 1) % len(w.ring)
		// The removal may have shifted the cluster key lands in.
		i = w.home(key)
		for w.slots[i] != ([16]byte{}) {
			i = (i + 1) & w.mask
		}
	}
	w.slots[i] = key
	return true
}

// AddKeys is AddKey for each of keys in turn, appending to fresh whether
// each was new, under one lock: a lookup nearly always misses the cache
// (the table is megabytes large and a key's slot is random), and taken
// together, with the slots read first, the misses overlap instead of each
// lookup waiting for its own behind a lock.
func (w *Window) AddKeys(keys [][16]byte, fresh []bool) []bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	var x byte
	for i := range keys {
		x += w.slots[w.home(keys[i])][15]
	}
	prefetchSink = x
	for _, k := range keys {
		fresh = append(fresh, w.addLocked(k))
	}
	return fresh
}

// prefetchSink keeps addKeys' first reads from being optimized away.
var prefetchSink byte

func (w *Window) home(key [16]byte) uint64 {
	return binary.LittleEndian.Uint64(key[:8]) & w.mask
}

// remove deletes key (which is in the table) and shifts back the keys
// after it in its cluster that would no longer be found past the gap.
func (w *Window) remove(key [16]byte) {
	i := w.home(key)
	for w.slots[i] != key {
		i = (i + 1) & w.mask
	}
	for j := i; ; {
		j = (j + 1) & w.mask
		if w.slots[j] == ([16]byte{}) {
			break
		}
		// The key at j stays if its home lies cyclically in (i, j].
		h := w.home(w.slots[j])
		if (i <= j && i < h && h <= j) || (i > j && (i < h || h <= j)) {
			continue
		}
		w.slots[i] = w.slots[j]
		i = j
	}
	w.slots[i] = [16]byte{}
}
