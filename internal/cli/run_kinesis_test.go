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
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	kds "github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/trailwatch/trailwatch/engine/cwlogs"
	"github.com/trailwatch/trailwatch/engine/dynamostate"
	"github.com/trailwatch/trailwatch/engine/kinesis"
	"github.com/trailwatch/trailwatch/internal/testservers"
)

// fleet is what several `trailwatch run` instances share: a directory for
// their files, one alerts file, one rules file and a shared-state table.
type fleet struct {
	t                      *testing.T
	ledger                 string
	dir, alerts, rulesPath string
	// notifier, if set, gives the notifiers block of instance name
	// (default: one file notifier "out" writing to alerts).
	notifier func(name string) string
	// sharedState is added to the shared_state block (e.g. a lease).
	sharedState string
	// extra is added at the top level (e.g. an outbox block).
	extra string
}

func newFleet(t *testing.T, ledger string) fleet {
	dir := t.TempDir()
	return fleet{t: t, ledger: ledger, dir: dir, alerts: filepath.Join(dir, "alerts.jsonl"), rulesPath: filepath.Join(dir, "rules.yaml")}
}

// instance writes the configuration of one run instance named name: the
// source block given, shared_state on the fleet's table, its own state
// dir and listen address, the fleet's rules and notifiers.
func (f *fleet) instance(name, source string) *runEnv {
	e := &runEnv{
		t: f.t, dir: f.dir, alerts: f.alerts, rules: f.rulesPath,
		cfgPath: filepath.Join(f.dir, name+".yaml"),
		listen:  fmt.Sprintf("127.0.0.1:%d", testservers.FreePort(f.t)),
	}
	notifier := fmt.Sprintf("  - name: out\n    type: file\n    path: %s\n", f.alerts)
	if f.notifier != nil {
		notifier = f.notifier(name)
	}
	e.writeFile(e.cfgPath, fmt.Sprintf(`%s
shared_state:
  dynamodb_table: %s%s
state_dir: %s
listen: %s
rules: [rules.yaml]
%snotifiers:
%s`, strings.TrimRight(source, "\n"), f.ledger, f.sharedState, filepath.Join(f.dir, name+"-state"), e.listen, f.extra, notifier))
	return e
}

// kinesisRig is a moto-backed Kinesis stream of two shards with a lease
// table and a shared-state table, and a directory for instances' files.
type kinesisRig struct {
	fleet
	kin            *kds.Client
	ddb            *dynamodb.Client
	stream, leases string
}

func newKinesisRig(t *testing.T) *kinesisRig {
	t.Helper()
	moto := testservers.StartMoto(t)
	t.Setenv("AWS_ENDPOINT_URL", moto.Endpoint)
	ctx := context.Background()
	kin, ddb, err := kinesis.NewClients(ctx, kinesis.Config{Region: "us-east-1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &kinesisRig{fleet: newFleet(t, "trailwatch-deliveries"), kin: kin, ddb: ddb, stream: "cloudtrail", leases: "trailwatch-leases"}
	if _, err := kin.CreateStream(ctx, &kds.CreateStreamInput{StreamName: aws.String(r.stream), ShardCount: aws.Int32(2)}); err != nil {
		t.Fatal(err)
	}
	if err := kds.NewStreamExistsWaiter(kin).Wait(ctx, &kds.DescribeStreamInput{StreamName: aws.String(r.stream)}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := kinesis.CreateLeaseTable(ctx, ddb, r.leases); err != nil {
		t.Fatal(err)
	}
	if err := dynamostate.CreateTable(ctx, ddb, r.ledger); err != nil {
		t.Fatal(err)
	}
	return r
}

// instance writes the configuration of one run instance named name, with
// its own state dir and listen address, all writing alerts to one file.
// An empty workerID leaves the default (host name and a random suffix).
func (r *kinesisRig) instance(name, workerID string) *runEnv {
	worker := ""
	if workerID != "" {
		worker = "\n    worker_id: " + workerID
	}
	return r.fleet.instance(name, fmt.Sprintf(`source:
  kinesis:
    stream: %s
    lease_table: %s
    region: us-east-1
    start: trim_horizon
    poll_interval: 100ms
    lease_duration: 3s%s`, r.stream, r.leases, worker))
}

// owners returns the worker ids holding a lease.
func (r *kinesisRig) owners() map[string]bool {
	ls, err := kinesis.NewLeases(r.ddb, r.leases, "observer", time.Second, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	all, err := ls.List(context.Background())
	if err != nil {
		return nil
	}
	m := map[string]bool{}
	for _, l := range all {
		if l.Owner != "" {
			m[l.Owner] = true
		}
	}
	return m
}

// TestRunKinesis runs two `trailwatch run` instances, each with its own
// state dir, on one Kinesis stream with a shared lease table and shared
// state, both writing alerts to the same file: every alert is written
// once, and a dedup window holds across instances (repeats read by both
// give one alert).
func TestRunKinesis(t *testing.T) {
	rig := newKinesisRig(t)
	kin, stream, rulesPath := rig.kin, rig.stream, rig.rulesPath
	instance := func(name string) *runEnv { return rig.instance(name, name) }
	a, b := instance("a"), instance("b")
	a.writeFile(rulesPath, runRootLoginRule+`  - id: e2e-describe-once
    title: Instances described
    severity: low
    when: eventName == "DescribeInstances"
    dedup: {window: 1h}
`)

	// Before either starts, so both race for the same shards.
	var recs []record
	for i := range 6 {
		recs = append(recs, rootLogin(fmt.Sprintf("root-%d", i)), apiCall(fmt.Sprintf("noise-%d", i), "ListBuckets"))
	}
	for i := 0; i < len(recs); i += 2 {
		putKinesis(t, kin, stream, fmt.Sprint(i), recs[i:i+2]...)
	}
	ra, rb := a.start(), b.start()

	a.eventually(ra, "six alerts in the shared alert file", func() bool { return len(a.readAlerts()) >= 6 })
	// Both instances hold a share of the two shards.
	a.eventually(ra, "each instance to hold a lease", func() bool {
		m := rig.owners()
		return m["a"] && m["b"]
	})
	// Now that each instance reads one shard, repeats of one finding go to
	// both: the dedup window is shared, so they give one alert.
	shards := map[string]int{}
	const describes = 8
	for i := range describes {
		shards[putKinesis(t, kin, stream, fmt.Sprintf("d%d", i), apiCall(fmt.Sprintf("describe-%d", i), "DescribeInstances"))]++
	}
	if len(shards) != 2 {
		t.Fatalf("the records went to shards %v; the test needs both", shards)
	}
	described := func() (alerts, suppressed int) {
		for _, al := range a.readAlerts() {
			if al.RuleID == "e2e-describe-once" {
				alerts++
			}
		}
		for _, e := range []*runEnv{a, b} {
			suppressed += int(e.scrape()[`trailwatch_alerts_suppressed_total{rule="e2e-describe-once"}`])
		}
		return alerts, suppressed
	}
	a.eventually(ra, "every DescribeInstances record alerted or held back", func() bool {
		n, held := described()
		return n+held >= describes
	})
	// A record read twice (a shard taken over mid-batch) is decided once:
	// the second read finds the recorded decision.
	if n, held := described(); n != 1 || held != describes-1 {
		t.Errorf("%d DescribeInstances records read by both instances gave %d alerts and %d held back, want 1 and %d: the dedup window is not shared",
			describes, n, held, describes-1)
	}
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
		if read < 6+describes {
			t.Errorf("trailwatch_kinesis_records_total summed over instances = %v, want at least the %d records written", read, 6+describes)
		}
	})
	for _, r := range []*running{ra, rb} {
		if code := r.stop(t); code != 0 {
			t.Fatalf("exit code after cancellation = %d, want 0; log:\n%s", code, r.stderr)
		}
	}
	got := alertEventIDs(a.readAlerts())
	if len(got) != 7 {
		t.Errorf("alerts = %s, want each of the six root sign-ins once and one e2e-describe-once", strings.Join(got, ","))
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
// CloudWatch Logs subscription filter writes to Kinesis (gzip'd JSON), and
// returns the shard it went to.
func putKinesis(t *testing.T, kin *kds.Client, stream, key string, recs ...record) string {
	t.Helper()
	d := events.CloudwatchLogsData{MessageType: cwlogs.MessageTypeData, LogGroup: "aws-cloudtrail-logs-111122223333", LogStream: "s"}
	ts := time.Now().Add(-5 * time.Second)
	for i, r := range recs {
		msg := r.msg
		if strings.Contains(msg, "%s") {
			msg = fmt.Sprintf(msg, ts.UTC().Format(time.RFC3339))
		}
		d.LogEvents = append(d.LogEvents, events.CloudwatchLogsLogEvent{ID: fmt.Sprint(i), Timestamp: ts.UnixMilli(), Message: msg})
	}
	enc, err := cwlogs.Encode(d)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		t.Fatal(err)
	}
	out, err := kin.PutRecord(context.Background(), &kds.PutRecordInput{StreamName: aws.String(stream), Data: raw, PartitionKey: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.ShardId)
}
