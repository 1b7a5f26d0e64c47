package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/trailwatch/trailwatch/engine/lifecycle"
	"github.com/trailwatch/trailwatch/engine/s3files"
	"github.com/trailwatch/trailwatch/internal/app"
	"github.com/trailwatch/trailwatch/rules"
	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

func newReplayCmd(stdio Stdio) *cobra.Command {
	var paths []string
	var output, stateDir, cfgPath string
	var quiet, raw, notify bool
	var dedupWindow time.Duration
	var workers int
	cmd := &cobra.Command{
		Use:   "replay [flags] FILE|DIR|- ...",
		Short: "Evaluate recorded CloudTrail events against the rules and print the alerts",
		Long: `replay reads recorded CloudTrail events and prints an alert for every rule match:
JSON Lines (one record a line), CloudTrail's S3 log files ({"Records":[...]}, plain
or .json.gz), directory trees in the AWSLogs/<account>/CloudTrail/<region>/... layout,
standard input ("-"), and the same in S3: s3://bucket/prefix/ reads every log file
under the prefix in key order, as a local copy of it would be read, and
s3://bucket/key one object (AWS credentials from the SDK's standard chain). An input that is not a CloudTrail record is reported on
stderr with its place, counted and skipped; the rest still runs. Records delivered
twice (same eventID) raise one alert.

Alerts go through the alert lifecycle exactly as in the live service, with event
time: threshold rules alert once a group reaches its count, dedup windows fold
repeats into the next alert's count, and (with --state-dir or --config) the live
service's silences hold alerts back. The service's own state is only read, never
changed. --raw prints every rule match instead.

--output json prints one alert per line in trailwatch's public alert form, the same
JSON the file, webhook and SNS notifiers send.

--notify (with --config) also sends the replayed alerts through the configuration's
routes and notifiers, from a private outbox with the same retries as the service, and
waits until each is delivered or dead-lettered. It decides exactly as run does (one
decision function): each notifier's rate_limit (storm control) applies in event time,
so alerts above the rate are folded into digests, and the digests still pending when
the input ends are sent too. The printed alerts are the lifecycle's output, before
routing and storm control: every alert, whichever notifier would get it.`,
		Example: `  trailwatch replay examples/events/
  trailwatch replay --rules builtin:aws --output json AWSLogs/
  trailwatch replay s3://org-trail-bucket/AWSLogs/o-abc123def4/111122223333/CloudTrail/us-east-1/2024/05/01/
  zcat 2024-05-01.json.gz | trailwatch replay -
  trailwatch replay --config config.yaml --notify incident-2024-05-01/`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return usageError{fmt.Errorf("--output must be text or json, not %q", output)}
			}
			if err := checkWorkers(workers); err != nil {
				return usageError{err}
			}
			cfg, set, err := loadConfigAndRules(stdio, cfgPath, paths)
			if err != nil {
				return err
			}
			if stateDir == "" && cfg != nil {
				stateDir = cfg.StateDir
			}
			if cfg != nil && !cmd.Flags().Changed("dedup-window") {
				dedupWindow = cfg.Lifecycle.DedupWindow
			}
			if notify && cfg == nil {
				return usageError{fmt.Errorf("--notify needs --config FILE (its notifiers and routes)")}
			}
			rp, err := app.NewReplay(cmd.Context(), cfg, set, app.ReplayOptions{
				Raw: raw, DedupWindow: dedupWindow, StateDir: stateDir, Notify: notify,
				OnRuleError: func(me rules.MatchError, e *cloudtrail.Event) {
					fmt.Fprintf(stdio.Err, "trailwatch: rule %q failed on event %s: %v\n", me.Rule.ID, e.EventID, me.Err)
				},
				Logger: slog.New(slog.NewTextHandler(stdio.Err, &slog.HandlerOptions{Level: slog.LevelWarn})),
			})
			if err != nil {
				return exitCode(1, err.Error())
			}
			defer rp.Close()
			emitted := 0
			sty, hits := styleFor(stdio.Out), ruleHits{}
			out := bufio.NewWriterSize(stdio.Out, 64*1024)
			defer out.Flush()
			// On a terminal, a line says how far the reading is; not when
			// the alerts go to the same terminal, which it would garble.
			progress := newProgress(stdio.Err, time.Now, replayProgressEvery)
			if _, tty := terminalWidth(stdio.Out); tty {
				progress = nil
			}
			badInputs := 0
			var s3stats s3files.Stats
			in := app.ReplayInput{
				Paths: args, Stdin: interruptible(cmd.Context(), stdio.In), Workers: workers, S3Stats: &s3stats,
				Alerts: func(alerts []lifecycle.Output) error {
					for i := range alerts {
						emitted++
						hits.add(alerts[i].Alert.RuleID)
						if output == "json" {
							if err := writeAlertJSON(out, &alerts[i].Alert); err != nil {
								return err
							}
						} else {
							printAlertText(out, &alerts[i].Alert, sty)
						}
					}
					return nil
				},
				Skipped: func(place string, err error) {
					badInputs++
					if !quiet {
						progress.clear()
						fmt.Fprintf(stdio.Err, "trailwatch: skipped %s: %v\n", place, err)
					}
				},
			}
			if progress != nil {
				in.Progress = func(read int, file string) {
					if !progress.due() {
						return
					}
					line := fmt.Sprintf("read %d records (%s)", read, progress.rate(read))
					if n := s3stats.Objects.Load(); n > 0 {
						line += fmt.Sprintf(" and %d objects (%d MiB) from S3", n, s3stats.Bytes.Load()>>20)
					}
					progress.show(line + ": " + terminalSafe(file))
				}
			}
			err = rp.Read(cmd.Context(), in)
			if ferr := out.Flush(); err == nil {
				err = ferr
			}
			progress.clear()
			printS3Stats(stdio, &s3stats)
			st := rp.Evaluator.Stats()
			fmt.Fprintf(stdio.Err, "trailwatch: %d records evaluated, %d alerts, %d duplicates dropped, %d inputs skipped, %d rule errors\n",
				st.Records, emitted, st.Duplicates, badInputs, st.RuleErrors)
			if !raw && uint64(emitted) != st.Alerts {
				fmt.Fprintf(stdio.Err, "trailwatch: %d rule matches; the others were counted by thresholds, folded by dedup or silenced\n", st.Alerts)
			}
			hits.print(stdio.Err, "alerts by rule:")
			if notify && err == nil {
				if derr := reportDeliveries(cmd.Context(), stdio, rp); derr != nil {
					return derr
				}
			}
			if err != nil {
				if cmd.Context().Err() != nil {
					return exitCode(130, "interrupted")
				}
				return err
			}
			return nil
		},
	}
	rulesFlag(cmd, &paths)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json (one alert per line, the public alert form)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "do not list each skipped input (the count is still printed)")
	cmd.Flags().BoolVar(&raw, "raw", false, "print every rule match: no thresholds, dedup or silences")
	cmd.Flags().DurationVar(&dedupWindow, "dedup-window", 0, "dedup window for rules without a dedup: block (0: only rules that ask for dedup)")
	cmd.Flags().StringVar(&stateDir, "state-dir", "", "apply the silences of this state directory (default: the config's state_dir)")
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "configuration file: its rules, lists and state_dir")
	cmd.Flags().BoolVar(&notify, "notify", false, "send the alerts through the configuration's routes and notifiers (needs --config)")
	cmd.Flags().IntVar(&workers, "workers", 0, "goroutines that decode and evaluate records (0: one per core); the output is the same for any number")
	return cmd
}

// replayProgressEvery is how often replay's progress line is redrawn.
var replayProgressEvery = 250 * time.Millisecond

// printS3Stats says what was read from S3, when anything was.
func printS3Stats(stdio Stdio, st *s3files.Stats) {
	if st.ListCalls.Load() == 0 && st.Objects.Load() == 0 {
		return
	}
	fmt.Fprintf(stdio.Err, "trailwatch: read %d objects (%d bytes) from S3 with %d List calls\n",
		st.Objects.Load(), st.Bytes.Load(), st.ListCalls.Load())
}

// reportDeliveries waits for replay --notify's deliveries and reports them.
func reportDeliveries(ctx context.Context, stdio Stdio, rp *app.Replay) error {
	queued, dead, err := rp.Deliver(ctx)
	if errors.Is(err, app.ErrInterrupted) {
		fmt.Fprintf(stdio.Err, "trailwatch: %v\n", err)
		return exitCode(130, "interrupted")
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdio.Err, "trailwatch: %d deliveries sent, %d refused\n", queued-len(dead), len(dead))
	for _, e := range dead {
		fmt.Fprintf(stdio.Err, "trailwatch: %s refused alert %s (%s): %s\n", e.Notifier, e.Alert.RuleID, e.Alert.EventID, terminalSafe(e.LastError))
	}
	if len(dead) > 0 {
		return exitCode(1, "")
	}
	return nil
}
