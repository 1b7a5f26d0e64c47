package outbox

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trailwatch/trailwatch/notifiers"
)

// TestEnqueueLogsEachQueuedAlert: what run hands to the outbox is logged
// at info, once per alert with every notifier it waits for, and a repeat
// the outbox already holds is not logged again.
func TestEnqueueLogsEachQueuedAlert(t *testing.T) {
	var logs bytes.Buffer
	o, err := Open(filepath.Join(t.TempDir(), FileName), Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	a := notifiers.Alert{RuleID: "aws-root-console-login", Severity: "critical", EventID: "ev-1"}
	ctx := context.Background()
	if _, err := o.Enqueue(ctx, Item{Key: "k1", Notifier: "page", Alert: a}, Item{Key: "k1", Notifier: "mail", Alert: a}); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Enqueue(ctx, Item{Key: "k1", Notifier: "page", Alert: a}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Count(logs.String(), `msg="alert queued for delivery"`)
	if lines != 1 || !strings.Contains(logs.String(), `level=INFO`) || !strings.Contains(logs.String(), `rule=aws-root-console-login`) ||
		!strings.Contains(logs.String(), `notifiers="[page mail]"`) || !strings.Contains(logs.String(), "event_id=ev-1") {
		t.Errorf("want one info line for the alert with both notifiers, got %d:\n%s", lines, logs.String())
	}
}
