// Package cli is trailwatch's command line: one cobra command per
// subcommand, each a thin layer that parses flags and calls into rules,
// engine and notifiers. Main runs a whole trailwatch in-process, which is
// how the end-to-end tests drive it.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/trailwatch/trailwatch/internal/version"
)

// Stdio is where a command reads and writes.
type Stdio struct {
	In       io.Reader
	Out, Err io.Writer
}

// exitError carries a process exit code with an optional message.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// exitCode returns an error that makes Main exit with code, printing msg
// (if any) to stderr.
func exitCode(code int, msg string) error { return &exitError{code: code, msg: msg} }

// Main runs trailwatch with args (without the program name) and returns the
// process exit code: 0 success, 1 failure (a failing test, an invalid rule,
// a run-time error), 2 wrong usage.
func Main(ctx context.Context, args []string, stdio Stdio) int {
	root := newRoot(stdio)
	root.SetArgs(args)
	root.SetIn(stdio.In)
	root.SetOut(stdio.Out)
	root.SetErr(stdio.Err)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(stdio.Err, "trailwatch: "+ee.msg)
		}
		return ee.code
	}
	fmt.Fprintln(stdio.Err, "trailwatch: "+err.Error())
	var ue usageError
	if errors.As(err, &ue) || isUsageError(err) {
		return 2
	}
	return 1
}

// Exec runs trailwatch as the process: args (without the program name) on
// the standard streams, SIGINT and SIGTERM ending the command (run
// persists its work first; replay and search print what they found and
// exit 130), and SIGHUP reloading `run`. It returns the exit code.
// cmd/trailwatch's main is os.Exit(cli.Exec(os.Args[1:])), and the tests
// run their own binary through it, so that they run the real program.
func Exec(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	hup := make(chan os.Signal, 1)
	// `run` subscribes when it starts: SIGHUP then reloads its
	// configuration and rules instead of ending the process. The other
	// commands leave SIGHUP alone.
	ctx = WithReload(ctx, func() <-chan struct{} {
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
	code := Main(ctx, args, Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	signal.Stop(hup)
	stop()
	return code
}

type usageError struct{ error }

// isUsageError recognises cobra's own flag and argument errors.
func isUsageError(err error) bool {
	s := err.Error()
	for _, p := range []string{"unknown flag", "unknown shorthand", "unknown command", "flag needs an argument", "invalid argument", "accepts ", "requires at least", "required flag"} {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

func newRoot(stdio Stdio) *cobra.Command {
	root := &cobra.Command{
		Use:   "trailwatch",
		Short: "Detect what matters in AWS CloudTrail, and tell the people who need to know",
		Long: `trailwatch tails AWS CloudTrail records from a CloudWatch Logs log group (or reads
recorded ones from files), evaluates them against detection rules written in YAML,
and delivers every match to Slack, email, SNS, PagerDuty or a webhook.

Rules live in git with their own tests: ` + "`trailwatch test`" + ` runs them in CI.`,
		Example: `  # Replay the bundled sample events through the built-in rules
  trailwatch replay examples/events/

  # Check a rules repository, then run its tests
  trailwatch validate --rules rules/
  trailwatch test --rules rules/`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.String(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.AddCommand(
		newRunCmd(stdio),
		newNotifyTestCmd(stdio),
		newOutboxCmd(stdio),
		newReplayCmd(stdio),
		newSearchCmd(stdio),
		newTestCmd(stdio),
		newValidateCmd(stdio),
		newVersionCmd(stdio),
		newSilenceCmd(stdio),
		newRulesCmd(stdio),
	)
	return root
}

func newVersionCmd(stdio Stdio) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print trailwatch's version and build",
		Example: "  trailwatch version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(stdio.Out, version.String())
			return nil
		},
	}
}

// checkWorkers refuses a --workers below zero, for every command that
// takes the flag (0 means one per core).
func checkWorkers(n int) error {
	if n < 0 {
		return fmt.Errorf("--workers must be 0 (one per core) or more, not %d", n)
	}
	return nil
}
