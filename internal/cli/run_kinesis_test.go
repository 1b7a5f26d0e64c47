package cli

import (
	"context"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	kds "github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/trailwatch/trailwatch/engine/dynamostate"
	"github.com/trailwatch/trailwatch/engine/kinesis"
	"github.com/trailwatch/trailwatch/engine/subscription"
	"github.com/trailwatch/trailwatch/internal/testservers"
)

// TestRunKinesis runs two `trailwatch run` instances, each with its own
// state dir, on one Kinesis stream with a shared lease table and delivery
// ledger, both writing alerts to the same file: every alert is written
// once.
func TestRunKinesis(t *testing.T) {
	moto := testservers.StartMoto(t)
	t.Setenv("AWS_ENDPOINT_URL", moto.Endpoint)
	ctx := context.Background()
	kin, ddb, err := kinesis.NewClients(ctx, kinesis.Config{Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	const stream, leases, ledger = "cloudtrail", "trailwatch-leases", "trailwatch-deliveries"
	if _, err := kin.CreateStream(ctx, &kds.CreateStreamInput{StreamName: aws.String(stream), ShardCount: aws.Int32(2)}); err != nil {
		t.Fatal(err)
	}
	if err := kds.NewStreamExistsWaiter(kin).Wait(ctx, &kds.DescribeStreamInput{StreamName: aws.String(stream)}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := kinesis.CreateLeaseTable(ctx, ddb, leases); err != nil {
		t.Fatal(err)
	}
	if err := dynamostate.CreateTable(ctx, ddb, ledger); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	alerts := filepath.Join(dir, "alerts.jsonl")
	rulesPath := filepath.Join(dir, "rules.yaml")
	instance := func(name string) *runEnv {
		e := &runEnv{
			t: t, dir: dir, alerts: alerts, rules: rulesPath,
			cfgPath: filepath.Join(dir, name+".yaml"),
			listen:  fmt.Sprintf("127.0.0.1:%d", testservers.FreePort(t)),
		}
		e.writeFile(e.cfgPath, fmt.Sprintf(`source:
  kinesis:
    stream: %s
    lease_table: %s
    region: us-east-1
    start: trim_horizon
    poll_interval: 100ms
    lease_duration: 3s
    worker_id: %s
shared_state:
  dynamodb_table: %s
state_dir: %s
listen: %s
rules: [rules.yaml]
notifiers:
  - name: out
    type: file
    path: %s
`, stream, leases, name, ledger, filepath.Join(dir, name+"-state"), e.listen, alerts))
		return e
	}
	a, b := instance("a"), instance("b")
	a.writeFile(rulesPath, runRootLoginRule)

	// Before either starts, so both race for the same shards.
	var recs []record
	for i := range 6 {
		recs = append(recs, rootLogin(fmt.Sprintf("root-%d", i)), apiCall(fmt.Sprintf("noise-%d", i), "DescribeInstances"))
	}
	for i := 0; i < len(recs); i += 2 {
		putKinesis(t, kin, stream, fmt.Sprint(i), recs[i:i+2]...)
	}
	ra, rb := a.start(), b.start()

	a.eventually(ra, "six alerts in the shared alert file", func() bool { return len(a.readAlerts()) >= 6 })
	// Both instances hold a share of the two shards.
	a.eventually(ra, "each instance to hold a lease", func() bool {
		m := map[string]bool{}
		ls, err := kinesis.NewLeases(ddb, leases, "observer", time.Second, nil)
		if err != nil {
			t.Fatal(err)
		}
		all, err := ls.List(ctx)
		if err != nil {
			return false
		}
		for _, l := range all {
			m[l.Owner] = true
		}
		return m["a"] && m["b"]
	})
	t.Run("metrics show one lease each and the records read", func(t *testing.T) {
		for _, inst := range []struct {
			e *runEnv
			r *running
		}{{a, ra}, {b, rb}} {
			inst.e.eventually(inst.r, "one lease held", func() bool {
				return inst.e.scrape()["trailwatch_kinesis_leases_held"] == 1
			})
		}
		var read float64
		for _, e := range []*runEnv{a, b} {
			for k, v := range e.scrape() {
				if strings.HasPrefix(k, "trailwatch_kinesis_records_total{") {
					read += v
				}
			}
		}
		if read < 6 {
			t.Errorf("trailwatch_kinesis_records_total summed over instances = %v, want at least the 6 records written", read)
		}
	})
	for _, r := range []*running{ra, rb} {
		if code := r.stop(t); code != 0 {
			t.Fatalf("exit code after cancellation = %d, want 0; log:\n%s", code, r.stderr)
		}
	}
	got := alertEventIDs(a.readAlerts())
	if len(got) != 6 {
		t.Errorf("alerts = %s, want each of the six root sign-ins once", strings.Join(got, ","))
	}
	seen := map[string]bool{}
	for _, id := range got {
		if seen[id] {
			t.Errorf("alert %s written twice", id)
		}
		seen[id] = true
	}
}

// putKinesis writes recs as one subscription payload, the way a
// CloudWatch Logs subscription filter writes to Kinesis (gzip'd JSON).
func putKinesis(t *testing.T, kin *kds.Client, stream, key string, recs ...record) {
	t.Helper()
	d := events.CloudwatchLogsData{MessageType: subscription.MessageTypeData, LogGroup: "aws-cloudtrail-logs-111122223333", LogStream: "s"}
	ts := time.Now().Add(-5 * time.Second)
	for i, r := range recs {
		msg := r.msg
		if strings.Contains(msg, "%s") {
			msg = fmt.Sprintf(msg, ts.UTC().Format(time.RFC3339))
		}
		d.LogEvents = append(d.LogEvents, events.CloudwatchLogsLogEvent{ID: fmt.Sprint(i), Timestamp: ts.UnixMilli(), Message: msg})
	}
	enc, err := subscription.Encode(d)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kin.PutRecord(context.Background(), &kds.PutRecordInput{StreamName: aws.String(stream), Data: raw, PartitionKey: aws.String(key)}); err != nil {
		t.Fatal(err)
	}
}
