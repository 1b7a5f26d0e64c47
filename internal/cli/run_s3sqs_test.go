package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/trailwatch/trailwatch/engine/dynamostate"
	"github.com/trailwatch/trailwatch/internal/faultproxy"
	"github.com/trailwatch/trailwatch/internal/s3test"
)

// s3sqsRig is a CloudTrail bucket in moto whose notifications go to an SQS
// queue with a dead-letter queue, and a shared-state table, for several
// `trailwatch run` instances on source.s3sqs.
type s3sqsRig struct {
	fleet
	aws        *s3test.Rig
	queue, dlq *s3test.Queue
	files      int
}

func newS3SQSRig(t *testing.T) *s3sqsRig {
	t.Helper()
	rig := s3test.Start(t)
	ctx := context.Background()
	ddb, err := dynamostate.NewClient(ctx, s3test.Region, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &s3sqsRig{fleet: newFleet(t, "trailwatch-deliveries"), aws: rig}
	if err := dynamostate.CreateTable(ctx, ddb, r.ledger); err != nil {
		t.Fatal(err)
	}
	rig.Bucket("trail")
	r.dlq = rig.CreateQueue("trail-dlq", s3test.QueueOptions{})
	r.queue = rig.CreateQueue("trail-events", s3test.QueueOptions{DeadLetter: r.dlq, MaxReceiveCount: 5})
	rig.NotifyQueue("trail", "AWSLogs/", r.queue)
	return r
}

// instance writes the configuration of one instance on the queue.
func (r *s3sqsRig) instance(name string) *runEnv {
	return r.fleet.instance(name, fmt.Sprintf(`source:
  s3sqs:
    queue: %s
    region: us-east-1
    visibility_timeout: 4s
    wait_time: 1s
    batch_records: 25`, r.queue.URL))
}

// logFile is a gzipped CloudTrail log file of recs, stamped now.
func logFile(recs ...record) []byte {
	now := time.Now().UTC().Format(time.RFC3339)
	var msgs []string
	for _, rec := range recs {
		msgs = append(msgs, strings.ReplaceAll(rec.msg, "%s", now))
	}
	return s3test.Gzip([]byte(`{"Records":[` + strings.Join(msgs, ",") + `]}`))
}

// put writes the next log file of the trail and returns its key.
func (r *s3sqsRig) put(body []byte) string {
	r.t.Helper()
	r.files++
	now := time.Now().UTC()
	key := fmt.Sprintf("AWSLogs/111122223333/CloudTrail/us-east-1/%s/111122223333_CloudTrail_us-east-1_%s_f%04d.json.gz",
		now.Format("2006/01/02"), now.Format("20060102T1504Z"), r.files)
	r.aws.Put("trail", key, body)
	return key
}

// sum adds a metric over instances.
func sum(metric string, envs ...*runEnv) float64 {
	var n float64
	for _, e := range envs {
		n += e.scrape()[metric]
	}
	return n
}

// TestRunS3SQS runs two `trailwatch run` instances on one queue that a
// bucket's notifications feed, with shared state, writing alerts to one
// file: every log file written is read by one of them and every alert is
// written once; a digest is left alone, and a corrupt log file is moved
// to the dead-letter queue with the reason and reported, while the rest
// flows.
func TestRunS3SQS(t *testing.T) {
	rig := newS3SQSRig(t)
	a, b := rig.instance("a"), rig.instance("b")
	a.writeFile(rig.rulesPath, runRootLoginRule)
	ra, rb := a.start(), b.start()

	var want []string
	for i := range 6 {
		id := fmt.Sprintf("s3-root-%d", i)
		want = append(want, "e2e-root-login/"+id)
		rig.put(logFile(rootLogin(id), apiCall(fmt.Sprintf("s3-noise-%d", i), "ListBuckets")))
	}
	corrupt := rig.put([]byte("\x1f\x8b\x08\x00 not really gzip"))
	rig.aws.Put("trail", "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2024/05/01/111122223333_CloudTrail-Digest_us-east-1_t_us-east-1_20240501T080000Z.json.gz",
		logFile(rootLogin("in-a-digest")))

	metric := `trailwatch_s3sqs_messages_total{outcome="dead_lettered"}`
	a.eventually(ra, "six alerts and the corrupt file dead-lettered", func() bool {
		return len(a.readAlerts()) >= 6 && sum(metric, a, b) == 1
	})
	dead := rig.aws.Receive(rig.dlq, time.Minute)
	if len(dead) != 1 {
		t.Fatalf("the dead-letter queue holds %d messages, want 1", len(dead))
	}
	if why := aws.ToString(dead[0].MessageAttributes["trailwatch-error"].StringValue); !strings.Contains(why, corrupt+": ") || !strings.Contains(why, "flate: corrupt input") {
		t.Errorf("trailwatch-error = %q, want the object and what is wrong with it", why)
	}
	logs := ra.stderr.String() + rb.stderr.String()
	if !strings.Contains(logs, "moved to the dead-letter queue") || !strings.Contains(logs, corrupt) {
		t.Errorf("no instance reported the corrupt log file at error level; logs:\n%s", logs)
	}
	a.eventually(ra, "the queue to be empty", func() bool {
		v, f := rig.aws.Depth(rig.queue)
		return v+f == 0
	})
	for _, tt := range []struct {
		metric string
		want   float64
	}{
		{`trailwatch_s3sqs_objects_total{outcome="read"}`, 6},
		{`trailwatch_s3sqs_objects_total{outcome="unreadable"}`, 1},
		{`trailwatch_s3sqs_objects_total{outcome="skipped_digest"}`, 1},
		{`trailwatch_s3sqs_records_total`, 12},
	} {
		if got := sum(tt.metric, a, b); got != tt.want {
			t.Errorf("%s summed over the instances = %v, want %v", tt.metric, got, tt.want)
		}
	}
	for _, r := range []*running{ra, rb} {
		if code := r.stop(t); code != 0 {
			t.Fatalf("exit code after cancellation = %d, want 0; log:\n%s", code, r.stderr)
		}
	}
	got := alertEventIDs(a.readAlerts())
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("alerts = %v, want each of %v once", got, want)
	}
}

// TestRunS3SQSKill9 runs two `trailwatch run` processes on one queue and
// kills one with SIGKILL while it is in the middle of a large log file:
// the transfer of that file to it stalls after half its bytes, once it
// has handled the batches of records it could read (their alerts
// delivered). Log files keep arriving before and after the kill. The
// other process reads the large file once the dead one's hold on its
// notification runs out, from the start; the killed one is started again
// on its state dir. Every alert arrives once, none twice.
func TestRunS3SQSKill9(t *testing.T) {
	rig := newS3SQSRig(t)
	rv := &receiver{held: map[string]bool{}}
	srv := httptest.NewServer(rv)
	t.Cleanup(srv.Close)
	rig.notifier = func(name string) string {
		return fmt.Sprintf("  - name: out\n    type: webhook\n    url: %s/%s\n", srv.URL, name)
	}
	// A claim of the dead process holds this long before another may
	// send the delivery: the shortest lease a 1s send allows.
	rig.sharedState = "\n  lease: 11s"
	rig.extra = "outbox:\n  send_timeout: 1s\n"
	a, b := rig.instance("a"), rig.instance("b")
	a.writeFile(rig.rulesPath, runRootLoginRule)

	var want []string
	small := func(n int) {
		for range n {
			id := fmt.Sprintf("k9-%02d", len(want))
			want = append(want, "e2e-root-login/"+id)
			rig.put(logFile(rootLogin(id), apiCall("noise-"+id, "ListBuckets")))
		}
	}
	// 600 records, every twentieth a root sign-in: 24 batches of 25.
	var recs []record
	for i := range 600 {
		id := fmt.Sprintf("big-%03d", i)
		if i%20 == 0 {
			recs = append(recs, rootLogin(id))
			want = append(want, "e2e-root-login/"+id)
		} else {
			recs = append(recs, apiCall(id, "DescribeInstances"))
		}
	}
	big := logFile(recs...)

	// Process a reads S3 through a proxy that stalls the first transfer
	// of the large file half way; moto itself, not its serialising
	// proxy, so that a stalled transfer holds nothing else up.
	var mu sync.Mutex
	bigKey := ""
	stall := faultproxy.Start(t, rig.aws.Moto.Direct, func(r *http.Request, _ []byte, _ int) faultproxy.Fault {
		mu.Lock()
		defer mu.Unlock()
		if bigKey != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, bigKey) && r.Header.Get("Range") == "" {
			bigKey = "" // the first transfer only
			return faultproxy.StallAfter(len(big) / 2)
		}
		return faultproxy.Forward
	})
	a.env = []string{"AWS_ENDPOINT_URL_S3=" + stall.URL}

	var logs syncBuffer
	start := func(e *runEnv) *exec.Cmd { return startRunProcess(t, &logs, e) }
	delivered := func(prefix string) int {
		n := 0
		for _, g := range rv.got() {
			if strings.HasPrefix(g, "e2e-root-login/"+prefix) {
				n++
			}
		}
		return n
	}

	pa := start(a)
	small(4)
	waitFor(t, &logs, "the first log files' alerts", func() bool { return delivered("k9-") == 4 })
	mu.Lock()
	bigKey = rig.put(big)
	mu.Unlock()
	waitFor(t, &logs, "the large file's transfer to stall after some of its alerts went out", func() bool {
		return stall.Count(faultproxy.StallResponse) == 1 && delivered("big-") > 0
	})
	start(b)
	small(4)
	waitFor(t, &logs, "the log files written since", func() bool { return delivered("k9-") == 8 })
	if n := delivered("big-"); n >= 30 {
		t.Fatalf("all %d alerts of the large file went out before the kill: the transfer did not stall", n)
	}
	// Delivery is at least once (README, Reliability): a kill between the
	// receiver's answer and the outbox recording it sends that alert again.
	// This test is about the stalled transfer, so the kill must find no
	// send of a's in flight: wait until a's outbox is empty.
	waitFor(t, &logs, "a's outbox to be empty before the kill", func() bool {
		v, ok := a.scrape()[`trailwatch_outbox_depth{notifier="out"}`]
		return ok && v == 0
	})
	if err := pa.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	pa.Wait()
	small(4)

	// The killed one comes back on its state dir (reading S3 directly)
	// and delivers what its outbox held.
	a2 := rig.instance("a2")
	if err := os.Rename(rig.dir+"/a-state", rig.dir+"/a2-state"); err != nil {
		t.Fatal(err)
	}
	start(a2)
	slices.Sort(want)
	waitFor(t, &logs, "every alert", func() bool { return len(rv.got()) >= len(want) })
	// A duplicate would come from an outbox, or from the queue: wait until
	// both outboxes and the queue are empty.
	waitFor(t, &logs, "both outboxes and the queue to be empty", func() bool {
		for _, e := range []*runEnv{a2, b} {
			if v, ok := e.scrape()[`trailwatch_outbox_depth{notifier="out"}`]; !ok || v != 0 {
				return false
			}
		}
		v, f := rig.aws.Depth(rig.queue)
		return v+f == 0
	})
	if got := rv.got(); !slices.Equal(got, want) {
		t.Errorf("alerts after kill -9 and restart:\n%s\nwant each once of:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if v, _ := rig.aws.Depth(rig.dlq); v != 0 {
		t.Errorf("%d notifications in the dead-letter queue, want none", v)
	}
}
