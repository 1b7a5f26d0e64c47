package decide

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	goruntime "runtime"
	"testing"

	"github.com/trailwatch/trailwatch/rules"
	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

func testSet(t testing.TB) *rules.Set {
	t.Helper()
	set, err := rules.LoadFiles([]rules.File{{Name: "r.yaml", Data: []byte(`rules:
  - id: key-deleted
    title: Key pair deleted
    severity: medium
    tags: [attack:T1531]
    when: eventName == "DeleteKeyPair" && errorCode == ""
    summary: "{{ requestParameters.keyName }} deleted by {{ userIdentity.userName }}"
  - id: any-error
    title: Error
    severity: low
    when: errorCode != ""
`)}})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func TestEvaluatorAlerts(t *testing.T) {
	e := NewEvaluator(testSet(t), EvaluatorOptions{})
	rec := `{"eventVersion":"1.08","eventID":"ev-1","eventTime":"2024-05-01T10:00:00Z","eventName":"DeleteKeyPair",
	  "eventSource":"ec2.amazonaws.com","awsRegion":"us-west-2","sourceIPAddress":"198.51.100.1","userAgent":"cli",
	  "recipientAccountId":"111122223333","requestParameters":{"keyName":"k1"},
	  "userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/bob","userName":"bob","accessKeyId":"AKIAX"}}`
	alerts, err := e.Evaluate([]byte(rec), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(alerts) != 1 {
		t.Fatalf("got %d alerts, want 1", len(alerts))
	}
	a := alerts[0].Alert
	if alerts[0].Rule == nil || alerts[0].Rule.ID != "key-deleted" {
		t.Errorf("match rule = %v, want key-deleted", alerts[0].Rule)
	}
	if ev := alerts[0].Event; ev == nil || ev.EventID != "ev-1" || ev.RequestParameters["keyName"] != "k1" {
		t.Errorf("match event = %+v, want the decoded record", ev)
	}
	checks := map[string][2]string{
		"rule_id": {a.RuleID, "key-deleted"}, "summary": {a.Summary, "k1 deleted by bob"}, "principal": {a.Principal, "arn:aws:iam::111122223333:user/bob"},
		"event_id": {a.EventID, "ev-1"}, "account": {a.AccountID, "111122223333"}, "region": {a.AWSRegion, "us-west-2"},
		"source_ip": {a.SourceIP, "198.51.100.1"}, "access_key": {a.AccessKeyID, "AKIAX"}, "user": {a.UserName, "bob"},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", name, c[0], c[1])
		}
	}
	var back map[string]any
	b, _ := json.Marshal(a)
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"rule_id", "title", "severity", "summary", "event_id", "event_time", "event_name", "principal", "source_ip", "aws_region", "account_id", "event"} {
		if _, ok := back[k]; !ok {
			t.Errorf("public alert JSON lacks %q: %s", k, b)
		}
	}
	if ev, ok := back["event"].(map[string]any); !ok || ev["eventID"] != "ev-1" {
		t.Errorf("alert's event is not the whole record: %v", back["event"])
	}

	// The same record again (CloudTrail's duplicate delivery): no alert.
	again, err := e.Evaluate([]byte(rec), nil)
	if err != nil || len(again) != 0 {
		t.Errorf("duplicate delivery gave %d alerts, err %v; want none", len(again), err)
	}
	if _, err := e.Evaluate([]byte(`{"not":"cloudtrail"}`), nil); err == nil {
		t.Error("a non-CloudTrail object must be an error")
	}
	st := e.Stats()
	if st.Records != 1 || st.Duplicates != 1 || st.Malformed != 1 || st.Alerts != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestAlertKeyStable(t *testing.T) {
	ev := &cloudtrail.Event{EventID: "e1"}
	if AlertKey("r", ev) != AlertKey("r", ev) || AlertKey("r", ev) == AlertKey("s", ev) {
		t.Error("AlertKey must be stable per rule and event and differ across rules")
	}
}

func TestIDWindowBounded(t *testing.T) {
	w := NewIDWindow(3)
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
	goruntime.KeepAlive(w) // its keys are unmapped once it is unreachable
	if held > 3 {
		t.Errorf("window holds %d ids, want at most 3", held)
	}
}

// TestIDWindowOutsideTheHeap checks that on Linux the default window's
// 12 MiB of keys are not in the Go heap, where they counted as live data
// and let the heap (and its page faults) grow as much again before each
// collection; and that the window works and its memory is given back.
func TestIDWindowOutsideTheHeap(t *testing.T) {
	if goruntime.GOOS != "linux" {
		t.Skip("the keys are mapped outside the heap on Linux only")
	}
	heap := func() uint64 {
		goruntime.GC()
		var ms goruntime.MemStats
		goruntime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	w := NewIDWindow(1 << 18)
	grew := int64(heap()) - int64(before)
	for i := range 1000 {
		if !w.Add(fmt.Sprint(i)) || w.Add(fmt.Sprint(i)) {
			t.Fatalf("id %d: the window does not remember it", i)
		}
	}
	goruntime.KeepAlive(w)
	if grew > 1<<20 {
		t.Errorf("a window of 2^18 ids grew the Go heap by %d bytes, want its keys outside the heap", grew)
	}
}

// TestIDWindowMatchesModel checks the window against the obvious model (a
// map and the last n ids in order) on random ids, with keys forced into
// few slots so that clusters, wrap-around and the shifts after a removal
// all happen.
func TestIDWindowMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 3, 7, 64} {
		w := NewIDWindow(n)
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
			if got := w.addKey(key); got != want {
				t.Fatalf("n=%d step %d: addKey(%x) = %v, want %v", n, step, key, got, want)
			}
		}
	}
}

// BenchmarkIDWindow measures the dedup window on a stream of distinct ids
// (the replay case: every record is checked), against a Go map of the same
// keys with the same ring, the window's previous form.
func BenchmarkIDWindow(b *testing.B) {
	const n = 1 << 18
	keys := make([][16]byte, 4*n)
	for i := range keys {
		keys[i] = idKey(fmt.Sprintf("c1-%08x-0000-4000-8000-%012x", i, i*7919))
	}
	b.Run("table", func(b *testing.B) {
		w := NewIDWindow(n)
		for i := 0; i < b.N; i++ {
			w.addKey(keys[i%len(keys)])
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
