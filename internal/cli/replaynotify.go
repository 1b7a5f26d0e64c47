package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/trailwatch/trailwatch/engine/lifecycle"
	"github.com/trailwatch/trailwatch/engine/outbox"
	"github.com/trailwatch/trailwatch/internal/config"
	"github.com/trailwatch/trailwatch/notifiers"
	"github.com/trailwatch/trailwatch/rules"
)

// replaySender delivers replayed alerts through a configuration's routes
// and notifiers, from a private outbox (the service's own is locked while
// it runs, and replayed alerts must not mix with live ones), with the same
// retries, Retry-After handling and dead letters as the service.
type replaySender struct {
	cfg     *config.Config
	set     *rules.Set
	dir     string
	ob      *outbox.Outbox
	targets map[string]notifiers.Notifier
	used    map[string]bool
	queued  int
}

func newReplaySender(ctx context.Context, stdio Stdio, cfg *config.Config, set *rules.Set) (*replaySender, error) {
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
	return &replaySender{cfg: cfg, set: set, dir: dir, ob: ob, targets: targets, used: map[string]bool{}}, nil
}

// add queues one alert for every notifier its route names.
func (s *replaySender) add(ctx context.Context, o lifecycle.Output) error {
	var own []string
	if r := s.set.Rule(o.Alert.RuleID); r != nil {
		own = r.Notify
	}
	var items []outbox.Item
	for _, t := range s.cfg.Targets(&o.Alert, own) {
		s.used[t] = true
		items = append(items, outbox.Item{Key: o.Key, Notifier: t, Alert: o.Alert})
	}
	if len(items) == 0 {
		return nil
	}
	n, err := s.ob.Enqueue(ctx, items...)
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
