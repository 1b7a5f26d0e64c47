package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/trailwatch/trailwatch/engine/decide"
	"github.com/trailwatch/trailwatch/engine/outbox"
	"github.com/trailwatch/trailwatch/internal/config"
	"github.com/trailwatch/trailwatch/notifiers"
)

// replaySender delivers replayed alerts through a configuration's routes
// and notifiers, from a private outbox (the service's own is locked while
// it runs, and replayed alerts must not mix with live ones), with the same
// retries, Retry-After handling and dead letters as the service.
type replaySender struct {
	dir     string
	ob      *outbox.Outbox
	targets map[string]notifiers.Notifier
	used    map[string]bool
	queued  int
}

func newReplaySender(ctx context.Context, stdio Stdio, cfg *config.Config) (*replaySender, error) {
	logger := slog.New(slog.NewTextHandler(stdio.Err, &slog.HandlerOptions{Level: slog.LevelWarn}))
	targets, err := cfg.BuildNotifiers(ctx, config.Deps{Logger: logger})
	if err != nil {
		return nil, exitCode(1, err.Error())
	}
	dir, err := os.MkdirTemp("", "trailwatch-replay-")
	if err != nil {
		return nil, err
	}
	ob, err := outbox.Open(filepath.Join(dir, outbox.FileName), outbox.Options{Logger: logger})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &replaySender{dir: dir, ob: ob, targets: targets, used: map[string]bool{}}, nil
}

// add queues the deliveries the decision function chose.
func (s *replaySender) add(ctx context.Context, items []decide.Item) error {
	if len(items) == 0 {
		return nil
	}
	out := make([]outbox.Item, len(items))
	for i, it := range items {
		s.used[it.Notifier] = true
		out[i] = outbox.Item{Key: it.Key, Notifier: it.Notifier, Alert: it.Alert}
	}
	n, err := s.ob.Enqueue(ctx, out...)
	s.queued += n
	return err
}

// deliver drains the outbox: it returns when every queued alert was
// delivered or dead-lettered, or when ctx ends, and reports what happened.
func (s *replaySender) deliver(ctx context.Context, stdio Stdio) error {
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.ob.Run(runCtx, s.targets) }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for pending := s.pending(); pending > 0; pending = s.pending() {
		select {
		case <-ctx.Done():
			stop()
			<-done
			fmt.Fprintf(stdio.Err, "trailwatch: interrupted with %d deliveries pending\n", pending)
			return exitCode(130, "interrupted")
		case <-tick.C:
		}
	}
	stop()
	<-done
	dead, err := s.ob.List(outbox.Dead)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdio.Err, "trailwatch: %d deliveries sent, %d refused\n", s.queued-len(dead), len(dead))
	for _, e := range dead {
		fmt.Fprintf(stdio.Err, "trailwatch: %s refused alert %s (%s): %s\n", e.Notifier, e.Alert.RuleID, e.Alert.EventID, terminalSafe(e.LastError))
	}
	if len(dead) > 0 {
		return exitCode(1, "")
	}
	return nil
}

func (s *replaySender) pending() int {
	n := 0
	for name := range s.used {
		n += s.ob.Depth(name)
	}
	return n
}

func (s *replaySender) close() {
	for _, nt := range s.targets {
		if c, ok := nt.(interface{ Close() error }); ok {
			c.Close()
		}
	}
	s.ob.Close()
	os.RemoveAll(s.dir)
}
