package outbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/notifiers"

	"github.com/trailwatch/trailwatch/internal/corpus"
)

var corpusGlob = filepath.Join(corpus.Dir(), "*.jsonl") // $TRAILWATCH_CORPUS or ../shared/corpus

// TestRealRecordsRoundTrip stores real CloudTrail records as alerts and
// checks that each notifier receives every record exactly as it was read.
func TestRealRecordsRoundTrip(t *testing.T) {
	files, _ := filepath.Glob(corpusGlob)
	if len(files) == 0 {
		t.Skipf("no CloudTrail corpus at %s: this test needs real records", corpusGlob)
	}
	var its []Item
	want := map[string][]byte{}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatalf("open corpus: %v", err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(nil, 4<<20)
		for n := 0; n < 25 && sc.Scan(); n++ {
			var rec struct {
				EventID   string    `json:"eventID"`
				EventName string    `json:"eventName"`
				EventTime time.Time `json:"eventTime"`
				Region    string    `json:"awsRegion"`
			}
			line := bytes.Clone(sc.Bytes())
			if err := json.Unmarshal(line, &rec); err != nil || rec.EventID == "" {
				continue
			}
			key := fmt.Sprintf("%s/%s", filepath.Base(f), rec.EventID)
			if _, dup := want[key]; dup {
				continue
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, line); err != nil {
				t.Fatalf("compact record: %v", err)
			}
			want[key] = compact.Bytes()
			its = append(its, Item{Key: key, Notifier: "webhook", Alert: notifiers.Alert{
				RuleID: "corpus", DedupKey: key, EventID: rec.EventID, EventName: rec.EventName,
				EventTime: rec.EventTime, AWSRegion: rec.Region, Event: line,
			}})
		}
		if err := sc.Err(); err != nil {
			t.Fatalf("read %s: %v", f, err)
		}
		fh.Close()
	}

	e := newEnv(t)
	o := e.open()
	mustEnqueue(t, o, len(its), its...)

	var mu sync.Mutex
	got := map[string][]byte{}
	n := &fakeNotifier{outcome: func(_ context.Context, _ int, a notifiers.Alert) error {
		mu.Lock()
		defer mu.Unlock()
		got[a.DedupKey] = a.Event
		return nil
	}}
	run(t, o, map[string]notifiers.Notifier{"webhook": n})
	waitFor(t, "every record", func() bool { return o.Depth("webhook") == 0 })
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(want) {
		t.Errorf("delivered %d records, want %d", len(got), len(want))
	}
	for k, w := range want {
		if !bytes.Equal(got[k], w) {
			t.Errorf("record %s changed in the outbox:\n got %.200s\nwant %.200s", k, got[k], w)
		}
	}
}

// BenchmarkEnqueue measures the durable Enqueue, one fsynced transaction per
// call, for batches of several sizes.
func BenchmarkEnqueue(b *testing.B) {
	for _, size := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			o, err := Open(filepath.Join(b.TempDir(), FileName), Options{PurgeInterval: -1})
			if err != nil {
				b.Fatal(err)
			}
			defer o.Close()
			batch := make([]Item, size)
			seq := 0
			for b.Loop() {
				for i := range batch {
					seq++
					k := fmt.Sprintf("k%d", seq)
					batch[i] = Item{Key: k, Notifier: "slack", Alert: alert(k)}
				}
				if _, err := o.Enqueue(context.Background(), batch...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "alerts/s")
		})
	}
}
