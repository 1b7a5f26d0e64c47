// Command trailwatch tails AWS CloudTrail records, evaluates them against
// detection rules, and delivers alerts. Run `trailwatch --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/trailwatch/trailwatch/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	hup := make(chan os.Signal, 1)
	// `run` subscribes when it starts: SIGHUP then reloads its
	// configuration and rules instead of ending the process. The other
	// commands leave SIGHUP alone.
	ctx = cli.WithReload(ctx, func() <-chan struct{} {
		signal.Notify(hup, syscall.SIGHUP)
		reload := make(chan struct{}, 1)
		go func() {
			for range hup {
				select {
				case reload <- struct{}{}:
				default: // a reload is already pending: one is enough
				}
			}
		}()
		return reload
	})
	code := cli.Main(ctx, os.Args[1:], cli.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	signal.Stop(hup)
	stop()
	os.Exit(code)
}
