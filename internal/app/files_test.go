package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailwatch/trailwatch/internal/app"
	"github.com/trailwatch/trailwatch/notifiers"
)

// alertsIn reads the file notifier's alerts.
func alertsIn(t *testing.T, path string) []notifiers.Alert {
	t.Helper()
	data, _ := os.ReadFile(path)
	var out []notifiers.Alert
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var a notifiers.Alert
		if json.Unmarshal(line, &a) == nil && a.RuleID != "" {
			out = append(out, a)
		}
	}
	return out
}

// eventually polls cond until it holds, failing after 20 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func counters(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if c := m.GetCounter(); c != nil {
				out[mf.GetName()] += c.GetValue()
			}
		}
	}
	return out
}

// TestFilesSourceRunsAsRun runs `run`'s service with `source.files` (the
// path relative to the configuration file): the records of a directory go
// through the decision function to the outbox and the notifier, a record
// that is not CloudTrail is skipped and counted, readiness follows the
// listings, and a restarted service reads only what was added since.
func TestFilesSourceRunsAsRun(t *testing.T) {
	e := newEnv(t, "source:\n  files:\n    paths: [events]\n    poll_interval: 100ms\n")
	events := filepath.Join(e.dir, "events")
	if err := os.MkdirAll(events, 0o755); err != nil {
		t.Fatal(err)
	}
	trail := filepath.Join(events, "trail.jsonl")
	if err := os.WriteFile(trail, []byte(record("k1", "CreateAccessKey")+"\n"+record("g1", "GetObject")+"\nnot a record\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	start := func() (*app.Service, *prometheus.Registry, func()) {
		t.Helper()
		reg := prometheus.NewRegistry()
		svc, err := app.NewService(context.Background(), e.cfg, e.set, app.Options{Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- svc.Run(ctx) }()
		return svc, reg, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			svc.Close()
		}
	}

	svc, reg, stop := start()
	eventually(t, "the alert of k1", func() bool { return len(alertsIn(t, e.alerts)) > 0 })
	eventually(t, "the file to be read", func() bool { return counters(t, reg)["trailwatch_files_read_total"] == 1 })
	if got := counters(t, reg); got["trailwatch_records_read_total"] != 2 || got["trailwatch_records_skipped_total"] != 1 {
		t.Errorf("records read %v, skipped %v; want 2 and 1", got["trailwatch_records_read_total"], got["trailwatch_records_skipped_total"])
	}
	if err := svc.ReadyChecks()[0].Func(context.Background()); err != nil {
		t.Errorf("source not ready after reading: %v", err)
	}
	stop()

	// A new process: the file is not read again, what is added is.
	f, err := os.OpenFile(trail, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(record("k2", "CreateAccessKey") + "\n")
	f.Close()
	_, reg, stop = start()
	eventually(t, "the alert of k2", func() bool { return len(alertsIn(t, e.alerts)) > 1 })
	eventually(t, "the file to be read", func() bool { return counters(t, reg)["trailwatch_files_read_total"] == 1 })
	stop()
	var ids []string
	for _, a := range alertsIn(t, e.alerts) {
		ids = append(ids, a.RuleID+"/"+a.EventID)
	}
	if len(ids) != 2 || ids[0] != "key-created/k1" || ids[1] != "key-created/k2" {
		t.Errorf("alerts = %v, want key-created on k1, then k2, once each", ids)
	}
	if got := counters(t, reg)["trailwatch_records_read_total"]; got != 1 {
		t.Errorf("the restarted service read %v records, want 1 (k2)", got)
	}
}
