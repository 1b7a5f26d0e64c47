package dynamostate_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailwatch/trailwatch/engine/dynamostate"
	"github.com/trailwatch/trailwatch/engine/lifecycle"
	"github.com/trailwatch/trailwatch/internal/faultproxy"
	"github.com/trailwatch/trailwatch/internal/testservers"
)

// waits is an injected timer that fires at once and records every wait
// asked of it, so that a retry storm takes no real time.
type waits struct {
	mu sync.Mutex
	d  []time.Duration
}

func (w *waits) after(d time.Duration) <-chan time.Time {
	w.mu.Lock()
	w.d = append(w.d, d)
	w.mu.Unlock()
	ch := make(chan time.Time, 1)
	ch <- time.Time{}
	return ch
}

func (w *waits) all() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Duration(nil), w.d...)
}

// clientAt is a DynamoDB client on endpoint that makes one attempt per
// call: the SDK's own retries (and their real sleeps) are left out, so
// that every failure reaches the store's.
func clientAt(t *testing.T, endpoint string) *dynamodb.Client {
	t.Helper()
	t.Setenv("AWS_ENDPOINT_URL", endpoint)
	c, err := dynamostate.NewClient(context.Background(), "us-east-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	return dynamodb.New(c.Options(), func(o *dynamodb.Options) { o.RetryMaxAttempts = 1 })
}

// retries sums trailwatch_shared_state_retries_total over its operations.
func retries(t *testing.T, reg *prometheus.Registry) (total float64, byOp map[string]float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byOp = map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "trailwatch_shared_state_retries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			v := m.GetCounter().GetValue()
			total += v
			if v > 0 {
				byOp[m.GetLabel()[0].GetValue()] = v
			}
		}
	}
	return total, byOp
}

// transactThrottled is DynamoDB's answer to a transaction whose item was
// throttled: not a throttling error code, a cancelled transaction.
func transactThrottled() faultproxy.Fault {
	h := http.Header{}
	h.Set("Content-Type", "application/x-amz-json-1.0")
	h.Set("X-Amzn-Errortype", "TransactionCanceledException")
	body := `{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException",` +
		`"message":"Transaction cancelled, please refer cancellation reasons for specific reasons [ThrottlingError]",` +
		`"CancellationReasons":[{"Code":"ThrottlingError","Message":"Throughput exceeds the current capacity of your table or index."}]}`
	return faultproxy.Fault{Kind: faultproxy.Respond, Status: http.StatusBadRequest, Header: h, Body: []byte(body)}
}

// storm fails every request of the first n that match.
func storm(n int, match func(*http.Request, []byte) bool, f faultproxy.Fault) faultproxy.Policy {
	seen := 0
	return func(r *http.Request, body []byte, _ int) faultproxy.Fault {
		if match != nil && !match(r, body) {
			return faultproxy.Forward
		}
		seen++
		if seen <= n {
			return f
		}
		return faultproxy.Forward
	}
}

// TestSharedStateRetry checks the stores' retries against one moto
// behind a fault-injecting proxy.
func TestSharedStateRetry(t *testing.T) {
	moto := testservers.StartMoto(t)
	t.Run("failures that pass", func(t *testing.T) { retriesFailuresThatPass(t, moto) })
	t.Run("not what cannot pass", func(t *testing.T) { doesNotRetryWhatCannotPass(t, moto) })
	t.Run("until the context ends", func(t *testing.T) { retryEndsWithContext(t, moto) })
}

// retriesFailuresThatPass runs two processes' lifecycles
// and deliveries on one table behind a fault-injecting proxy (throttling,
// 5xx storms, connections dropped before and after DynamoDB acted): every
// call that failed is tried again in place, each alert is decided as
// without faults and delivered exactly once, and the retries are counted
// and waited for within the bounds.
func retriesFailuresThatPass(t *testing.T, moto *testservers.Moto) {
	set := loadSharedRules(t)
	direct := clientAt(t, moto.Endpoint)
	batches := [][]rec{
		{
			{id: "k1", name: "CreateAccessKey", user: "alice", ip: "203.0.113.9"},
			{id: "d1", name: "ListUsers", code: "AccessDenied", user: "bob", ip: "203.0.113.7"},
			{id: "s1", name: "StopLogging", user: "carol", ip: "203.0.113.5"},
		},
		{
			{id: "k2", name: "CreateAccessKey", user: "alice", ip: "203.0.113.9", at: time.Minute},
			{id: "d2", name: "ListUsers", code: "AccessDenied", user: "bob", ip: "203.0.113.7", at: time.Second},
			{id: "d3", name: "ListUsers", code: "AccessDenied", user: "bob", ip: "203.0.113.7", at: 2 * time.Second},
			{id: "b1", name: "DeleteBucket", bucket: "logs", user: "carol", ip: "203.0.113.5", at: 3 * time.Second},
		},
	}
	// Each batch is decided by process a, then read again by process b (a
	// takeover): both must get the same alerts, and each alert is sent
	// through both processes' notifiers.
	play := func(t *testing.T, store *dynamostate.Store, ls *dynamostate.LifecycleStore, rec *recorder) []string {
		t.Helper()
		a, b := newProc(t, set, ls), newProc(t, set, ls)
		na := dynamostate.NewNotifier("ops", rec, store, dynamostate.NotifierOptions{})
		nb := dynamostate.NewNotifier("ops", rec, store, dynamostate.NotifierOptions{})
		var got []string
		for _, batch := range batches {
			outs := a.mustRun(batch...)
			again := b.mustRun(batch...)
			if fmt.Sprint(describe(outs)) != fmt.Sprint(describe(again)) {
				t.Fatalf("a batch read again was decided differently:\n first: %s\n again: %s", describe(outs), describe(again))
			}
			for _, o := range outs {
				for _, n := range []*dynamostate.Notifier{na, nb} {
					if err := n.Notify(context.Background(), o.Alert); err != nil {
						t.Fatalf("Notify %s: %v", o.Alert.EventID, err)
					}
				}
			}
			got = append(got, describe(outs)...)
		}
		return got
	}

	newTable := func(t *testing.T) string {
		t.Helper()
		table := fmt.Sprintf("trailwatch-retry-%d", tableSeq.Add(1))
		if err := dynamostate.CreateTable(context.Background(), direct, table); err != nil {
			t.Fatal(err)
		}
		return table
	}
	clock := newClock()
	baseline := func() []string {
		store, ls, err := dynamostate.Open(direct, newTable(t), dynamostate.Options{Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		return play(t, store, ls, &recorder{})
	}()
	if len(baseline) < 3 {
		t.Fatalf("the batches give %d alerts; the test needs several", len(baseline))
	}

	tests := []struct {
		name   string
		policy faultproxy.Policy
	}{
		{"throttling storm", storm(40, nil, faultproxy.AWSError(http.StatusBadRequest, "ProvisionedThroughputExceededException",
			"The level of configured provisioned throughput for the table was exceeded."))},
		{"throttled transactions", storm(6, faultproxy.AWSTarget("TransactWriteItems"), transactThrottled())},
		{"500 storm", storm(40, nil, faultproxy.AWSError(http.StatusInternalServerError, "InternalServerError", "Internal server error"))},
		{"503s and throttling at random", faultproxy.Random(5, 0.25, nil, faultproxy.Status(http.StatusServiceUnavailable), faultproxy.AWSThrottle())},
		{"dropped connections, before and after dynamodb acted", faultproxy.Random(6, 0.2, nil, faultproxy.Drop(), faultproxy.DropAfter())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			table := newTable(t)
			proxy := faultproxy.Start(t, moto.Endpoint, nil)
			w := &waits{}
			reg := prometheus.NewRegistry()
			store, ls, err := dynamostate.Open(clientAt(t, proxy.URL), table, dynamostate.Options{
				Now: clock.Now, After: w.after, Rand: func() float64 { return 0.5 }, Registerer: reg,
			})
			if err != nil {
				t.Fatal(err)
			}
			proxy.SetPolicy(tt.policy)
			rec := &recorder{}
			got := play(t, store, ls, rec)
			proxy.SetPolicy(nil)

			faults := proxy.Count(faultproxy.Respond) + proxy.Count(faultproxy.DropRequest) + proxy.Count(faultproxy.DropResponse)
			if faults == 0 {
				t.Fatal("no fault was injected")
			}
			if fmt.Sprint(got) != fmt.Sprint(baseline) {
				t.Errorf("alerts under faults:\n%s\nwant as without:\n%s", strings.Join(got, "\n"), strings.Join(baseline, "\n"))
			}
			for _, line := range baseline {
				id := strings.Fields(line)[1]
				if n := rec.count(id); n != 1 {
					t.Errorf("alert %s sent %d times, want once", id, n)
				}
			}
			total, byOp := retries(t, reg)
			if total == 0 {
				t.Errorf("trailwatch_shared_state_retries_total = 0 after %d injected faults", faults)
			}
			ws := w.all()
			if len(ws) != int(total) {
				t.Errorf("%d waits for %v retries counted", len(ws), total)
			}
			for _, d := range ws {
				if d < dynamostate.RetryInitial/2 || d > dynamostate.RetryMax {
					t.Errorf("waited %s between tries, want between %s and %s", d, dynamostate.RetryInitial/2, dynamostate.RetryMax)
				}
			}
			t.Logf("%d faults injected, retries by operation %v", faults, byOp)
		})
	}
}

// doesNotRetryWhatCannotPass: a missing table is reported
// at once (no retry, nothing waited for), and Check finds it before any
// alert.
func doesNotRetryWhatCannotPass(t *testing.T, moto *testservers.Moto) {
	w := &waits{}
	reg := prometheus.NewRegistry()
	store, ls, err := dynamostate.Open(clientAt(t, moto.Endpoint), "no-such-table", dynamostate.Options{After: w.after, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var rnf *types.ResourceNotFoundException
	if err := ls.Check(ctx); !errors.As(err, &rnf) || !strings.Contains(err.Error(), `"no-such-table"`) {
		t.Errorf("Check = %v, want a ResourceNotFoundException naming the table", err)
	}
	if _, _, err := ls.Decision(ctx, "idem"); !errors.As(err, &rnf) {
		t.Errorf("Decision = %v, want a ResourceNotFoundException", err)
	}
	if _, err := store.Claim(ctx, "k", "ops", "rule-1"); !errors.As(err, &rnf) {
		t.Errorf("Claim = %v, want a ResourceNotFoundException", err)
	}
	if total, _ := retries(t, reg); total != 0 || len(w.all()) != 0 {
		t.Errorf("%v retries and %d waits for a missing table, want none", total, len(w.all()))
	}
}

// retryEndsWithContext: while the table throttles every
// call, a retry waits until its context ends, and then returns at once
// with the last error and the cause.
func retryEndsWithContext(t *testing.T, moto *testservers.Moto) {
	table := fmt.Sprintf("trailwatch-retry-%d", tableSeq.Add(1))
	if err := dynamostate.CreateTable(context.Background(), clientAt(t, moto.Endpoint), table); err != nil {
		t.Fatal(err)
	}
	proxy := faultproxy.Start(t, moto.Endpoint, func(*http.Request, []byte, int) faultproxy.Fault { return faultproxy.AWSThrottle() })
	waiting := make(chan time.Duration, 1)
	after := func(d time.Duration) <-chan time.Time {
		select {
		case waiting <- d:
		default:
		}
		return make(chan time.Time) // never fires: only the context ends the wait
	}
	_, ls, err := dynamostate.Open(clientAt(t, proxy.URL), table, dynamostate.Options{After: after})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, _, err := ls.Decision(ctx, "idem")
		errc <- err
	}()
	<-waiting
	stop := errors.New("shutting down")
	cancel(stop)
	err = <-errc
	if !errors.Is(err, stop) || !strings.Contains(err.Error(), "ThrottlingException") {
		t.Errorf("Decision after cancel = %v, want the throttling error and the cause", err)
	}
	var _ lifecycle.Shared = ls
}
