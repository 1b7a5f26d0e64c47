package idwindow

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

func TestWindowBounded(t *testing.T) {
	w := New(3)
	for i := 0; i < 10; i++ {
		if !w.Add(fmt.Sprint(i)) {
			t.Fatalf("id %d reported as seen", i)
		}
	}
	if w.Add("9") || w.Add("8") {
		t.Error("recent ids must be remembered")
	}
	if !w.Add("0") {
		t.Error("ids beyond the window must be forgotten")
	}
	held := 0
	for _, k := range w.slots {
		if k != ([16]byte{}) {
			held++
		}
	}
	runtime.KeepAlive(w) // its keys are unmapped once it is unreachable
	if held > 3 {
		t.Errorf("window holds %d ids, want at most 3", held)
	}
}

// TestWindowOutsideTheHeap checks that on Linux the default window's
// 12 MiB of keys are not in the Go heap, where they counted as live data
// and let the heap (and its page faults) grow as much again before each
// collection; and that the window works and its memory is given back.
func TestWindowOutsideTheHeap(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the keys are mapped outside the heap on Linux only")
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	w := New(1 << 18)
	grew := int64(heap()) - int64(before)
	for i := range 1000 {
		if !w.Add(fmt.Sprint(i)) || w.Add(fmt.Sprint(i)) {
			t.Fatalf("id %d: the window does not remember it", i)
		}
	}
	runtime.KeepAlive(w)
	if grew > 1<<20 {
		t.Errorf("a window of 2^18 ids grew the Go heap by %d bytes, want its keys outside the heap", grew)
	}
}

// TestWindowMatchesModel checks the window against the obvious model (a
// map and the last n ids in order) on random ids, with keys forced into
// few slots so that clusters, wrap-around and the shifts after a removal
// all happen.
func TestWindowMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 3, 7, 64} {
		w := New(n)
		var order [][16]byte
		model := map[[16]byte]bool{}
		for step := 0; step < 20000; step++ {
			var key [16]byte
			// Few distinct homes and values: collisions all the time.
			binary.LittleEndian.PutUint64(key[:8], rng.Uint64N(uint64(len(w.slots)))|uint64(rng.IntN(3))<<40)
			key[8] = byte(rng.IntN(4))
			want := !model[key]
			if want {
				model[key] = true
				order = append(order, key)
				if len(order) > n {
					delete(model, order[0])
					order = order[1:]
				}
			}
			if got := w.AddKey(key); got != want {
				t.Fatalf("n=%d step %d: AddKey(%x) = %v, want %v", n, step, key, got, want)
			}
			// hasKey (Has) agrees with the model and records nothing.
			var probe [16]byte
			binary.LittleEndian.PutUint64(probe[:8], rng.Uint64N(uint64(len(w.slots)))|uint64(rng.IntN(3))<<40)
			probe[8] = byte(rng.IntN(4))
			if got := w.hasKey(probe); got != model[probe] {
				t.Fatalf("n=%d step %d: hasKey(%x) = %v, want %v", n, step, probe, got, model[probe])
			}
		}
	}
}

// BenchmarkWindow measures the dedup window on a stream of distinct ids
// (the replay case: every record is checked), against a Go map of the same
// keys with the same ring, the window's previous form.
func BenchmarkWindow(b *testing.B) {
	const n = 1 << 18
	keys := make([][16]byte, 4*n)
	for i := range keys {
		keys[i] = Key(fmt.Sprintf("c1-%08x-0000-4000-8000-%012x", i, i*7919))
	}
	b.Run("table", func(b *testing.B) {
		w := New(n)
		for i := 0; i < b.N; i++ {
			w.AddKey(keys[i%len(keys)])
		}
	})
	b.Run("map", func(b *testing.B) {
		set := make(map[[16]byte]struct{}, n)
		ring := make([][16]byte, 0, n)
		next := 0
		for i := 0; i < b.N; i++ {
			k := keys[i%len(keys)]
			if _, ok := set[k]; ok {
				continue
			}
			if len(ring) < cap(ring) {
				ring = append(ring, k)
			} else {
				delete(set, ring[next])
				ring[next] = k
				next = (next + 1) % len(ring)
			}
			set[k] = struct{}{}
		}
	})
}
