package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/engine/dynamostate"
	"github.com/trailwatch/trailwatch/engine/lifecycle"
	"github.com/trailwatch/trailwatch/engine/subscription"
)

const sharedConfig = `rules: [rules.yaml]
notifiers:
  - name: audit-file
    type: file
    path: ${ALERT_FILE}
  - name: hook
    type: webhook
    url: ${WEBHOOK_URL}
routes:
  - notify: [audit-file, hook]
`

const sharedRulesFile = `rules:
  - id: key-created
    title: Access key created
    severity: high
    when: eventName == "CreateAccessKey"
    dedup: {window: 1h}
  - id: deny-burst
    title: Access denied burst
    severity: medium
    when: errorCode == "AccessDenied"
    threshold: {count: 4, window: 10m, group_by: [sourceIPAddress]}
    dedup: {window: 1h}
`

func callRecord(id, name, code string, at time.Time) string {
	rec := map[string]any{
		"eventVersion": "1.08",
		"userIdentity": map[string]any{"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/mallory", "accountId": "111122223333", "userName": "mallory"},
		"eventTime":    at.UTC().Format(time.RFC3339), "eventSource": "iam.amazonaws.com", "eventName": name,
		"awsRegion": "us-east-1", "sourceIPAddress": "203.0.113.66", "eventID": id, "recipientAccountId": "111122223333",
	}
	if code != "" {
		rec["errorCode"] = code
	}
	b, _ := json.Marshal(rec)
	return string(b)
}

// TestSharedLifecycleAcrossEnvironments runs four execution environments
// (four handlers built from the same environment) at once, on batches
// that each hold repeats of the same findings: with the delivery table
// set, dedup windows and thresholds are shared, so one alert per finding
// goes out however the batches are spread. A silence added to the table
// (as `trailwatch silence add` does) then holds a new finding back in
// every environment.
func TestSharedLifecycleAcrossEnvironments(t *testing.T) {
	h := &hook{attempts: map[string]int{}}
	environ, alertFile := lambdaEnv(t, h)
	dir := t.TempDir()
	for name, body := range map[string]string{"config.yaml": sharedConfig, "rules.yaml": sharedRulesFile} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	environ["TRAILWATCH_CONFIG"] = filepath.Join(dir, "config.yaml")
	ctx := context.Background()
	const envs = 4
	handlers := make([]*subscription.Handler, envs)
	for i := range handlers {
		hd, err := newHandler(ctx, env(environ), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		handlers[i] = hd
	}

	base := time.Date(2024, 5, 1, 8, 0, 0, 0, time.UTC)
	var records []string
	for i := range 16 {
		at := base.Add(time.Duration(i) * 10 * time.Second)
		records = append(records,
			callRecord(fmt.Sprintf("key-%02d", i), "CreateAccessKey", "", at),
			callRecord(fmt.Sprintf("deny-%02d", i), "ListUsers", "AccessDenied", at))
	}
	batches := payloads(t, records, 4)
	var wg sync.WaitGroup
	for i, hd := range handlers {
		wg.Go(func() {
			for j := i; j < len(batches); j += envs {
				if _, err := invoke(ctx, hd, batches[j]); err != nil {
					t.Errorf("batch %d: %v", j, err)
				}
			}
		})
	}
	wg.Wait()
	byRule := map[string]int{}
	for _, p := range filePairs(t, alertFile) {
		rule, _, _ := strings.Cut(p, "/")
		byRule[rule]++
	}
	// 16 key creations in 3 minutes: one alert. 16 denials from one
	// address, threshold 4: the group fires four times, and dedup of the
	// group lets the first through.
	if byRule["key-created"] != 1 || byRule["deny-burst"] != 1 {
		t.Fatalf("alerts by rule = %v, want one of each across the %d environments", byRule, envs)
	}
	if got := len(h.got()); got != 2 {
		t.Fatalf("webhook got %d alerts, want 2", got)
	}

	// A silence in the table holds back a new finding everywhere.
	client, err := dynamostate.NewClient(ctx, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	store, err := dynamostate.NewLifecycleStore(client, environ["TRAILWATCH_DELIVERY_TABLE"], dynamostate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lifecycle.AddSharedSilence(ctx, store, lifecycle.Silence{
		Rule: "key-created", Comment: "rotation", StartsAt: base, EndsAt: base.Add(24 * time.Hour),
	}, base); err != nil {
		t.Fatal(err)
	}
	late := payloads(t, []string{callRecord("key-late", "CreateAccessKey", "", base.Add(2*time.Hour))}, 1)[0]
	// Silences are re-read at most every lifecycle.DefaultSilenceRefresh:
	// a fresh environment reads them at its first batch.
	fresh, err := newHandler(ctx, env(environ), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.Handle(ctx, late); err != nil {
		t.Fatal(err)
	}
	if got := len(filePairs(t, alertFile)); got != 2 {
		t.Fatalf("after the silence the file holds %d alerts, want still 2", got)
	}
}
