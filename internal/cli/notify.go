package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/trailwatch/trailwatch/engine/outbox"
	"github.com/trailwatch/trailwatch/internal/config"
	"github.com/trailwatch/trailwatch/notifiers"
)

// testAlert is the clearly marked alert notify-test sends.
func testAlert(now time.Time) notifiers.Alert {
	raw, _ := json.Marshal(map[string]any{
		"eventVersion": "1.09", "eventID": "trailwatch-notify-test", "eventTime": now.UTC().Format(time.RFC3339),
		"eventSource": "trailwatch.test", "eventName": "NotifyTest", "awsRegion": "us-east-1",
		"sourceIPAddress": "192.0.2.1", "userAgent": "trailwatch notify-test",
		"userIdentity": map[string]any{"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/trailwatch-test", "userName": "trailwatch-test"},
	})
	return notifiers.Alert{
		RuleID:      "trailwatch-notify-test",
		Title:       "TEST: trailwatch notification check",
		Severity:    "info",
		Summary:     "This is a test alert from `trailwatch notify-test`: no action is needed.",
		Description: "Sent by an operator to check that this notifier delivers. It is not about any real event.",
		DedupKey:    fmt.Sprintf("notify-test-%d", now.UnixNano()),
		EventID:     "trailwatch-notify-test",
		EventTime:   now.UTC(),
		EventName:   "NotifyTest",
		EventSource: "trailwatch.test",
		Principal:   "arn:aws:iam::111122223333:user/trailwatch-test",
		UserName:    "trailwatch-test",
		SourceIP:    "192.0.2.1",
		UserAgent:   "trailwatch notify-test",
		AWSRegion:   "us-east-1",
		AccountID:   "111122223333",
		Count:       1,
		Test:        true,
		Event:       raw,
	}
}

func newNotifyTestCmd(stdio Stdio) *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "notify-test --config FILE NAME...",
		Short: "Send a clearly marked test alert through one or more notifiers",
		Long: `notify-test builds the named notifiers from the configuration and sends each one test
alert (title "TEST: ...", test: true in the JSON form), directly rather than through the
outbox, and reports for each whether it was delivered and, if not, whether the error
is one a retry could fix. Secrets never appear in its output.`,
		Example: `  trailwatch notify-test --config /etc/trailwatch/config.yaml secfeed
  trailwatch notify-test --config config.yaml secfeed mail page`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, names []string) error {
			if cfgPath == "" {
				return usageError{errors.New("notify-test needs --config FILE")}
			}
			cfg, err := loadConfig(stdio, cfgPath)
			if err != nil {
				return err
			}
			byName := map[string]*config.Notifier{}
			for i := range cfg.Notifiers {
				byName[cfg.Notifiers[i].Name] = &cfg.Notifiers[i]
			}
			failed := 0
			for _, name := range names {
				n, ok := byName[name]
				if !ok {
					fmt.Fprintf(stdio.Out, "%s: not defined in %s (have %s)\n", name, cfg.File, strings.Join(sortedKeys(byName), ", "))
					failed++
					continue
				}
				nt, err := n.Build(cmd.Context(), config.Deps{})
				if err != nil {
					fmt.Fprintf(stdio.Out, "%s (%s): cannot be built: %v\n", name, n.Type, err)
					failed++
					continue
				}
				err = nt.Notify(cmd.Context(), testAlert(time.Now()))
				if c, ok := nt.(interface{ Close() error }); ok {
					c.Close()
				}
				switch {
				case err == nil:
					fmt.Fprintf(stdio.Out, "%s (%s): delivered\n", name, n.Type)
				case notifiers.IsPermanent(err):
					failed++
					fmt.Fprintf(stdio.Out, "%s (%s): refused, a retry will not help: %v\n", name, n.Type, err)
				default:
					failed++
					fmt.Fprintf(stdio.Out, "%s (%s): failed, the outbox would retry: %v\n", name, n.Type, err)
				}
			}
			if failed > 0 {
				return exitCode(1, "")
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "configuration file (YAML)")
	return cmd
}

func newOutboxCmd(stdio Stdio) *cobra.Command {
	var cfgPath, stateDir, state string
	var jsonOut bool
	var requeue []string
	cmd := &cobra.Command{
		Use:   "outbox [--dead|--pending] (--config FILE | --state-dir DIR)",
		Short: "List the alert outbox (pending and dead-lettered deliveries) and requeue dead letters",
		Long: `outbox lists what the durable alert outbox in state_dir holds: alerts still waiting for
delivery to a notifier (with their attempts, next attempt and last error) and dead letters
(alerts a notifier refused for good, e.g. 4xx). --requeue KEY/NOTIFIER moves a dead letter
back to pending. The outbox is locked while trailwatch run is running: stop the service
(or wait) to list or requeue.`,
		Example: `  trailwatch outbox --config /etc/trailwatch/config.yaml --state dead
  trailwatch outbox --state-dir /var/lib/trailwatch --requeue 3f2a.../secfeed`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfgPath != "" {
				cfg, err := loadConfig(stdio, cfgPath)
				if err != nil {
					return err
				}
				stateDir = cfg.StateDir
			}
			if stateDir == "" {
				return usageError{errors.New("outbox needs --config FILE or --state-dir DIR")}
			}
			filter, err := outbox.ParseState(state)
			if err != nil {
				return usageError{fmt.Errorf("--state: %w", err)}
			}
			ob, err := outbox.Open(filepath.Join(stateDir, outbox.FileName), outbox.Options{ReadOnly: len(requeue) == 0})
			if err != nil {
				return exitCode(1, err.Error())
			}
			defer ob.Close()
			for _, kn := range requeue {
				i := strings.LastIndexByte(kn, '/')
				if i <= 0 {
					return usageError{fmt.Errorf("--requeue takes KEY/NOTIFIER, not %q", kn)}
				}
				if err := ob.Requeue(kn[:i], kn[i+1:]); err != nil {
					return exitCode(1, err.Error())
				}
				fmt.Fprintf(stdio.Out, "requeued %s\n", kn)
			}
			if len(requeue) > 0 {
				return nil
			}
			entries, err := ob.List(filter)
			if err != nil {
				return exitCode(1, err.Error())
			}
			if jsonOut {
				for i := range entries {
					b, _ := json.Marshal(&entries[i])
					fmt.Fprintln(stdio.Out, string(b))
				}
				return nil
			}
			tw := tabwriter.NewWriter(stdio.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "STATE\tNOTIFIER\tRULE\tEVENT TIME\tATTEMPTS\tKEY\tLAST ERROR")
			for _, e := range entries {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", e.State, e.Notifier, e.Alert.RuleID,
					e.Alert.EventTime.UTC().Format(time.RFC3339), e.Attempts, e.Key, terminalSafe(truncate(e.LastError, 120)))
			}
			tw.Flush()
			fmt.Fprintf(stdio.Out, "%d entries\n", len(entries))
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "configuration file (its state_dir is used)")
	cmd.Flags().StringVar(&stateDir, "state-dir", "", "state directory holding outbox.db")
	cmd.Flags().StringVar(&state, "state", "pending", "which entries: pending, dead, delivered or all")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "one JSON object per entry")
	cmd.Flags().StringArrayVar(&requeue, "requeue", nil, "move a dead letter back to pending (KEY/NOTIFIER); repeatable")
	return cmd
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
