package cloudwatch

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailwatch/trailwatch/internal/faultproxy"
)

// TestFaults puts a fault-injecting proxy between the source and moto:
// throttling storms, HTTP 500s and dropped connections (before and after
// moto answered) must neither lose nor repeat a record.
func TestFaults(t *testing.T) {
	env := startMoto(t)
	filter := faultproxy.AWSTarget("FilterLogEvents")
	tests := []struct {
		name   string
		policy faultproxy.Policy
	}{
		{"throttling storm", func(r *http.Request, body []byte, n int) faultproxy.Fault {
			// Bursts: 8 of every 10 requests are throttled.
			if filter(r, body) && n%10 < 8 {
				return faultproxy.AWSThrottle()
			}
			return faultproxy.Forward
		}},
		{"http 500s", faultproxy.Random(1, 0.3, filter, faultproxy.Status(http.StatusInternalServerError))},
		{"service unavailable", faultproxy.Random(2, 0.3, filter, faultproxy.AWSError(http.StatusServiceUnavailable, "ServiceUnavailableException", "try later"))},
		{"dropped connections", faultproxy.Random(3, 0.15, filter, faultproxy.Drop(), faultproxy.DropAfter())},
		{"everything at once", faultproxy.Random(4, 0.1, filter, faultproxy.AWSThrottle(), faultproxy.Status(http.StatusBadGateway), faultproxy.Drop(), faultproxy.DropAfter())},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			group := fmt.Sprintf("faults-%d", i)
			createGroup(t, env.client, group, "a", "b")
			proxy := faultproxy.Start(t, env.moto.Endpoint, tt.policy)
			reg := prometheus.NewRegistry()
			opts := testOptions(t, t.TempDir(), reg)
			opts.PageLimit = 25 // many pages, so faults hit mid-query
			col := newCollector()
			cfg := testConfig("now", group)
			s := newSource(t, clientFor(t, proxy.URL), cfg, opts)
			r := start(t, s, col.handle)
			var want []string
			now := time.Now()
			for _, st := range []string{"a", "b"} {
				var evs []event
				for j := range 150 {
					id := fmt.Sprintf("%s-%03d", st, j)
					want = append(want, id)
					// Spread over the last 8 minutes: some only sweeps find.
					evs = append(evs, ct(id, now.Add(-time.Duration(j)*3*time.Second)))
				}
				put(t, env.client, group, st, evs...)
			}
			eventually(t, 40*time.Second, "every record", func() bool { return col.has(want...) })
			faults := func() int {
				return proxy.Count(faultproxy.Respond) + proxy.Count(faultproxy.DropRequest) + proxy.Count(faultproxy.DropResponse)
			}
			if faults() == 0 {
				t.Fatal("the proxy injected no fault")
			}
			// Every fault is retried. Checked while the source runs: a
			// fault whose answer is still on its way when the source
			// stops would never be counted.
			eventually(t, 20*time.Second, "a retry counted for every injected fault", func() bool {
				n := faults()
				return metric(t, reg, "trailwatch_filterlogevents_retries_total", group) >= float64(n)
			})
			if err := r.stop(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if rep := col.repeated(); len(rep) > 0 {
				t.Errorf("%d records handed on more than once, e.g. %s", len(rep), rep[0])
			}
			if got := col.distinct(); got != len(want) {
				t.Errorf("distinct records = %d, want %d", got, len(want))
			}
			if tt.name == "throttling storm" {
				if got := metric(t, reg, "trailwatch_filterlogevents_throttles_total", group); got == 0 {
					t.Error("throttles_total = 0 after a throttling storm")
				}
			}
		})
	}
}

// TestCheck covers the start-up check and fatal errors in Run.
func TestCheck(t *testing.T) {
	env := startMoto(t)
	createGroup(t, env.client, "exists", "a")
	createGroup(t, env.client, "exists-too", "a")
	denied := faultproxy.Start(t, env.moto.Endpoint, func(*http.Request, []byte, int) faultproxy.Fault {
		return faultproxy.AWSError(http.StatusBadRequest, "UnrecognizedClientException", "The security token included in the request is invalid.")
	})
	tests := []struct {
		name     string
		endpoint string
		groups   []string
		wantErr  string
		wantIs   error
	}{
		{name: "existing groups", endpoint: env.moto.Endpoint, groups: []string{"exists", "exists-too"}},
		{name: "group by prefix only", endpoint: env.moto.Endpoint, groups: []string{"exist"}, wantErr: `log group "exist"`, wantIs: ErrLogGroupNotFound},
		{name: "missing group", endpoint: env.moto.Endpoint, groups: []string{"exists", "nope"}, wantErr: `log group "nope"`, wantIs: ErrLogGroupNotFound},
		{name: "bad credentials", endpoint: denied.URL, groups: []string{"exists"}, wantErr: "UnrecognizedClientException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSource(t, clientFor(t, tt.endpoint), testConfig("now", tt.groups...), testOptions(t, t.TempDir(), nil))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := s.Check(ctx)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Check = %v, want an error containing %q", err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Check = %v, want errors.Is %v", err, tt.wantIs)
			}
			// Run fails the same way instead of looping.
			runErr := s.Read(ctx, func(context.Context, []Record) error { return nil })
			if runErr == nil || ctx.Err() != nil {
				t.Errorf("Run = %v, want an error before the deadline", runErr)
			}
		})
	}
}

// TestHandlerError checks that Run returns the handler's error and that the
// refused batch is handed on again by the next Run.
func TestHandlerError(t *testing.T) {
	env := startMoto(t)
	const group = "handler-error"
	createGroup(t, env.client, group, "a")
	dir := t.TempDir()
	cfg := testConfig("now", group)
	refuse := errors.New("outbox full")
	col := newCollector()
	col.fail = func(batch []Record) error {
		for _, r := range batch {
			if strings.Contains(string(r.Message), `"refused"`) {
				return refuse
			}
		}
		return nil
	}
	s := newSource(t, env.client, cfg, testOptions(t, dir, nil))
	r := start(t, s, col.handle)
	put(t, env.client, group, "a", ct("refused", time.Now()))
	if err := r.wait(t); !errors.Is(err, refuse) {
		t.Fatalf("Run = %v, want the handler's error", err)
	}
	col.fail = nil
	s = newSource(t, env.client, cfg, testOptions(t, dir, nil))
	r = start(t, s, col.handle)
	eventually(t, 20*time.Second, "the refused record, on the next run", func() bool { return col.has("refused") })
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
}
