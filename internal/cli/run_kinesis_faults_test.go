package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/trailwatch/trailwatch/internal/faultproxy"
)

// TestRunKinesisSharedStateFaults runs two `trailwatch run` processes on
// one Kinesis stream with shared_state, and puts DynamoDB behind a
// fault-injecting proxy: while records arrive, every request on the
// shared-state table is throttled for a while, then answered with 500s,
// then dropped (before or after DynamoDB acted). Both processes keep
// running and keep their shard leases (the lease table still answers),
// retry in place, count the retries and say so in the log once per
// outage; every alert arrives once.
func TestRunKinesisSharedStateFaults(t *testing.T) {
	rig := newKinesisRig(t)
	proxy := faultproxy.Start(t, os.Getenv("AWS_ENDPOINT_URL"), nil)
	// Only the run processes go through the proxy: the rig's clients were
	// made before.
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", proxy.URL)
	rv := &receiver{}
	srv := httptest.NewServer(rv)
	t.Cleanup(srv.Close)
	rig.notifier = func(name string) string {
		return fmt.Sprintf("  - name: out\n    type: webhook\n    url: %s/%s\n", srv.URL, name)
	}
	a, b := rig.instance("a", "a"), rig.instance("b", "b")
	a.writeFile(rig.rulesPath, runRootLoginRule)
	var logs syncBuffer
	startRunProcess(t, &logs, a)
	startRunProcess(t, &logs, b)
	waitFor(t, &logs, "each process to hold a lease", func() bool {
		m := rig.owners()
		return m["a"] && m["b"]
	})

	var want []string
	n := 0
	// write puts at least count records, until both shards (so both
	// processes) have some.
	write := func(count int) {
		shards := map[string]bool{}
		for i := 0; i < count || len(shards) < 2; i++ {
			if i > 50 {
				t.Fatalf("records went to shards %v only; the test needs both", shards)
			}
			id := fmt.Sprintf("f-%02d", n)
			want = append(want, "e2e-root-login/"+id)
			shards[putKinesis(t, rig.kin, rig.stream, fmt.Sprintf("key-%d", n), rootLogin(id), apiCall(fmt.Sprintf("noise-%02d", n), "ListBuckets"))] = true
			n++
		}
	}
	metric := func(name string) (sum float64, each []float64) {
		for _, e := range []*runEnv{a, b} {
			v := 0.0
			for k, x := range e.scrape() {
				if k == name || strings.HasPrefix(k, name+"{") {
					v += x
				}
			}
			each = append(each, v)
			sum += v
		}
		return sum, each
	}
	const retriesTotal = "trailwatch_shared_state_retries_total"
	takeovers, _ := metric("trailwatch_kinesis_lease_takeovers_total")
	// Before any alert, both series exist at 0: something to alert on.
	for _, e := range []*runEnv{a, b} {
		m := e.scrape()
		for _, series := range []string{`trailwatch_outbox_depth{notifier="out"}`, retriesTotal + `{operation="read"}`} {
			if v, ok := m[series]; !ok || v != 0 {
				t.Errorf("%s = %v (present %v) at start, want 0", series, v, ok)
			}
		}
	}

	write(4)
	waitFor(t, &logs, "the alerts before any fault", func() bool { return len(rv.got()) >= len(want) })

	shared := func(r *http.Request, body []byte) bool { return bytes.Contains(body, []byte(`"`+rig.ledger+`"`)) }
	for _, phase := range []struct {
		name   string
		policy faultproxy.Policy
	}{
		{"throttling", faultproxy.Random(1, 1, shared, faultproxy.AWSError(http.StatusBadRequest,
			"ProvisionedThroughputExceededException", "The level of configured provisioned throughput for the table was exceeded."))},
		{"500s", faultproxy.Random(2, 1, shared, faultproxy.AWSError(http.StatusInternalServerError, "InternalServerError", "Internal server error"))},
		{"dropped connections", faultproxy.Random(3, 0.5, shared, faultproxy.Drop(), faultproxy.DropAfter())},
	} {
		before, _ := metric(retriesTotal)
		proxy.SetPolicy(phase.policy)
		write(4)
		// The SDK has given up on a call at least once, and the store
		// tries again in place.
		waitFor(t, &logs, "a retry of the shared state under "+phase.name, func() bool {
			now, _ := metric(retriesTotal)
			return now > before
		})
		proxy.SetPolicy(nil)
	}
	waitFor(t, &logs, "every alert", func() bool { return len(rv.got()) >= len(want) })
	waitOutboxesEmpty(t, &logs, a, b)
	slices.Sort(want)
	if got := rv.got(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("alerts through DynamoDB faults:\n%s\nwant each once of:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, p := range []struct {
		name string
		e    *runEnv
	}{{"a", a}, {"b", b}} {
		if code := p.e.get("/readyz"); code != http.StatusOK {
			t.Errorf("process %s: /readyz = %d after the faults, want 200 (still running)", p.name, code)
		}
	}
	if m := rig.owners(); !m["a"] || !m["b"] {
		t.Errorf("lease owners after the faults = %v, want both processes still holding theirs", m)
	}
	if now, _ := metric("trailwatch_kinesis_lease_takeovers_total"); now != takeovers {
		t.Errorf("lease takeovers went from %v to %v during the faults; the leases should have been kept", takeovers, now)
	}
	total, each := metric(retriesTotal)
	t.Logf("retries of the shared state: %v (per process %v), faults injected: %d respond, %d dropped before, %d dropped after",
		total, each, proxy.Count(faultproxy.Respond), proxy.Count(faultproxy.DropRequest), proxy.Count(faultproxy.DropResponse))
	for _, line := range []string{"shared state unavailable; retrying in place, leases kept", "shared state answers again"} {
		if !strings.Contains(logs.String(), line) {
			t.Errorf("the log does not say %q", line)
		}
	}
}

// TestRunKinesisLogsSDKWarningsAsJSON runs `run --log-format json` on
// Kinesis with shared_state, behind proxies whose answers carry a Date
// header the AWS SDK cannot parse (it warns about each): the Kinesis
// client's, the lease table's and the shared-state table's warnings are
// all JSON lines of the service's log, and every line of the log is JSON.
func TestRunKinesisLogsSDKWarningsAsJSON(t *testing.T) {
	rig := newKinesisRig(t)
	moto, err := url.Parse(os.Getenv("AWS_ENDPOINT_URL"))
	if err != nil {
		t.Fatal(err)
	}
	badDate := func(name func(body []byte) string) string {
		rp := httputil.NewSingleHostReverseProxy(moto)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			date := name(body)
			rec := httptest.NewRecorder()
			rp.ServeHTTP(rec, r)
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Header().Set("Date", date)
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	t.Setenv("AWS_ENDPOINT_URL_KINESIS", badDate(func([]byte) string { return "kinesis-date" }))
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", badDate(func(body []byte) string {
		for _, table := range []string{rig.leases, rig.ledger} {
			if bytes.Contains(body, []byte(`"`+table+`"`)) {
				return "date-of-" + table
			}
		}
		return "dynamodb-date"
	}))
	a := rig.instance("a", "a")
	a.writeFile(rig.rulesPath, runRootLoginRule)
	r := a.startArgs("--log-format", "json")
	putKinesis(t, rig.kin, rig.stream, "k", rootLogin("json-1"))
	a.eventually(r, "the alert", func() bool { return len(a.readAlerts()) == 1 })
	if code := r.stop(t); code != 0 {
		t.Fatalf("exit %d; log:\n%s", code, r.stderr)
	}
	warned := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(r.stderr.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("a log line is not JSON: %q", line)
		}
		if rec["component"] != "aws-sdk" || rec["level"] != "WARN" {
			continue
		}
		for _, what := range []string{"kinesis-date", "date-of-" + rig.leases, "date-of-" + rig.ledger} {
			if strings.Contains(fmt.Sprint(rec["msg"]), what) {
				warned[what] = true
			}
		}
	}
	for _, what := range []string{"kinesis-date", "date-of-" + rig.leases, "date-of-" + rig.ledger} {
		if !warned[what] {
			t.Errorf("no aws-sdk warning in the JSON log for the answers dated %q", what)
		}
	}
}
