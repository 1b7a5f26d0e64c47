package outbox

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/trailwatch/trailwatch/notifiers"
)

// bigItems are n alerts of about 2 KB each for notifier.
func bigItems(notifier, prefix string, n int) []Item {
	its := items(notifier, keys(prefix, n)...)
	for i := range its {
		its[i].Alert.Summary = strings.Repeat("x", 2000)
	}
	return its
}

func storedSize(t *testing.T, o *Outbox) int64 {
	var n int64
	if err := o.view(func(tx *bolt.Tx) error { n = storedBytes(tx); return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSizeCapDropsOldestDelivered delivers an alert storm through an
// outbox capped at 256 KiB: the file stops growing, the delivered entries
// kept are the newest, the drops are counted and logged — and without the
// cap the same storm grows the file.
func TestSizeCapDropsOldestDelivered(t *testing.T) {
	const capBytes = 256 << 10
	storm := func(t *testing.T, maxBytes int64) (o *Outbox, e *env, logs *bytes.Buffer) {
		e = newEnv(t)
		logs = &bytes.Buffer{}
		e.opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
		e.opts.MaxBytes = maxBytes
		o = e.open()
		n := &fakeNotifier{}
		run(t, o, map[string]notifiers.Notifier{"slack": n})
		for batch := range 20 {
			its := bigItems("slack", string(rune('a'+batch)), 50) // 1000 alerts, ~2 MB
			mustEnqueue(t, o, len(its), its...)
			waitFor(t, "the batch delivered", func() bool { return o.Depth("slack") == 0 })
		}
		return o, e, logs
	}

	o, e, logs := storm(t, capBytes)
	// The cap is kept at each Enqueue; a delivery then adds a few bytes
	// to its record.
	if got := storedSize(t, o); got > capBytes*102/100 {
		t.Errorf("entries take up %d bytes, want about the cap %d", got, capBytes)
	}
	delivered := list(t, o, Delivered)
	if len(delivered) == 0 || len(delivered) >= 1000 {
		t.Fatalf("%d delivered entries kept, want some but not all 1000", len(delivered))
	}
	var all []string
	for batch := range 20 {
		all = append(all, keys(string(rune('a'+batch)), 50)...)
	}
	var kept []string
	for _, d := range delivered {
		kept = append(kept, d.Key)
	}
	slices.Sort(kept)
	if want := all[len(all)-len(kept):]; !slices.Equal(kept, want) {
		t.Errorf("kept %v, want the newest %d: %v", kept, len(kept), want)
	}
	evicted := metricValue(t, e.reg, "trailwatch_outbox_evictions_total", nil)
	if int(evicted)+len(delivered) != 1000 {
		t.Errorf("evictions counted %v + kept %d, want 1000", evicted, len(delivered))
	}
	if !strings.Contains(logs.String(), "outbox reached its size cap") {
		t.Errorf("no warning logged:\n%s", logs)
	}
	if v := metricValue(t, e.reg, "trailwatch_outbox_bytes", nil); v <= 0 || v > capBytes*102/100 {
		t.Errorf("trailwatch_outbox_bytes = %v", v)
	}
	capped, _ := os.Stat(e.path)

	_, e2, _ := storm(t, -1)
	uncapped, _ := os.Stat(e2.path)
	t.Logf("file after 1000 alerts: %d bytes capped at %d, %d bytes uncapped", capped.Size(), capBytes, uncapped.Size())
	if capped.Size() > 8*capBytes || uncapped.Size() < 2*capped.Size() {
		t.Errorf("file is %d bytes with the cap, %d without: want the cap to bound it", capped.Size(), uncapped.Size())
	}
}

// TestSizeCapNeverDropsPending: while the notifier is down, a storm past
// the cap keeps every alert (they are not sent yet), and says so.
func TestSizeCapNeverDropsPending(t *testing.T) {
	e := newEnv(t)
	var logs bytes.Buffer
	e.opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	e.opts.MaxBytes = 64 << 10
	o := e.open()
	mustEnqueue(t, o, 200, bigItems("slack", "p", 200)...)
	run(t, o, map[string]notifiers.Notifier{"slack": &fakeNotifier{outcome: func(context.Context, int, notifiers.Alert) error {
		return errors.New("down")
	}}})
	if got := len(list(t, o, Pending)); got != 200 {
		t.Errorf("%d pending, want all 200", got)
	}
	if !strings.Contains(logs.String(), "over its size cap with only pending alerts") {
		t.Errorf("no warning that the cap cannot be kept:\n%s", logs.String())
	}
}
