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
)

func newOutboxCmd(stdio Stdio) *cobra.Command {
	var cfgPath, stateDir, state string
	var dead, pending, jsonOut, salvage bool
	var requeue []string
	cmd := &cobra.Command{
		Use:   "outbox [--dead|--pending|--state STATE] [--requeue NOTIFIER|KEY/NOTIFIER] [--config FILE | --state-dir DIR]",
		Short: "List the alert outbox (pending and dead-lettered deliveries) and requeue dead letters",
		Long: `outbox lists what the durable alert outbox in state_dir holds: alerts still waiting for
delivery to a notifier (with their attempts, next attempt and last error) and dead letters
(alerts a notifier refused for good, e.g. 4xx). --dead lists the dead letters, --pending
what waits (the default), --state all everything.

--requeue NOTIFIER moves every dead letter of that notifier back to pending (after fixing
its configuration, say); --requeue KEY/NOTIFIER moves one.

--salvage is for a damaged outbox.db (trailwatch run and this command say so): it moves
the file aside (outbox.db.damaged-TIME), copies every entry that can still be read into
a new outbox.db in its state, and reports what could not be read. The pending alerts it
saved are sent when the service starts. The outbox is locked while
trailwatch run is running: stop the service (or wait) to list or requeue.

Without --config or --state-dir, the configuration is $TRAILWATCH_CONFIG, else
/etc/trailwatch/config.yaml when it exists.`,
		Example: `  trailwatch outbox --config /etc/trailwatch/config.yaml --dead
  trailwatch outbox --state-dir /var/lib/trailwatch --requeue secfeed
  trailwatch outbox --state-dir /var/lib/trailwatch --requeue 3f2a.../secfeed`,
		Args: cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			given := 0
			for _, b := range []bool{dead, pending, cmd.Flags().Changed("state")} {
				if b {
					given++
				}
			}
			if given > 1 {
				return usageError{errors.New("give one of --dead, --pending and --state")}
			}
			switch {
			case dead:
				state = "dead"
			case pending:
				state = "pending"
			}
			if _, err := outbox.ParseState(state); err != nil {
				return usageError{fmt.Errorf("--state: %w", err)}
			}
			for _, r := range requeue {
				if i := strings.LastIndexByte(r, '/'); r == "" || i == 0 || i == len(r)-1 {
					return usageError{fmt.Errorf("--requeue takes NOTIFIER or KEY/NOTIFIER, not %q", r)}
				}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfgPath == "" && stateDir == "" {
				cfgPath = defaultConfig()
			}
			if cfgPath != "" && stateDir == "" {
				cfg, err := loadConfig(stdio, cfgPath)
				if err != nil {
					return err
				}
				if stateDir = cfg.StateDir; stateDir == "" {
					return exitCode(1, cfg.File+": state_dir is not set")
				}
			}
			if stateDir == "" {
				return usageError{errors.New("outbox needs --config FILE or --state-dir DIR (or $TRAILWATCH_CONFIG)")}
			}
			if salvage {
				return salvageOutbox(stdio, filepath.Join(stateDir, outbox.FileName))
			}
			filter, _ := outbox.ParseState(state)
			ob, err := outbox.Open(filepath.Join(stateDir, outbox.FileName), outbox.Options{ReadOnly: len(requeue) == 0})
			if err != nil {
				return exitCode(1, err.Error())
			}
			defer ob.Close()
			if len(requeue) > 0 {
				return requeueDead(stdio, ob, requeue)
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
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "configuration file (its state_dir is used; default $TRAILWATCH_CONFIG)")
	cmd.Flags().StringVar(&stateDir, "state-dir", "", "state directory holding outbox.db")
	cmd.Flags().StringVar(&state, "state", "pending", "which entries: pending, dead, delivered or all")
	cmd.Flags().BoolVar(&dead, "dead", false, "list dead letters (as --state dead)")
	cmd.Flags().BoolVar(&pending, "pending", false, "list what waits for delivery (as --state pending, the default)")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "one JSON object per entry")
	cmd.Flags().BoolVar(&salvage, "salvage", false, "move a damaged outbox.db aside and copy what can be read into a new one")
	cmd.Flags().StringArrayVar(&requeue, "requeue", nil, "move dead letters back to pending: NOTIFIER (all of its dead letters) or KEY/NOTIFIER (one); repeatable")
	return cmd
}

// salvageOutbox runs outbox.Salvage on path and says what it saved.
func salvageOutbox(stdio Stdio, path string) error {
	rep, err := outbox.Salvage(path, outbox.Options{})
	if err != nil {
		return exitCode(1, err.Error())
	}
	fmt.Fprintf(stdio.Out, "moved the damaged outbox to %s\n", rep.Damaged)
	fmt.Fprintf(stdio.Out, "saved %d pending, %d delivered and %d dead entries into a new %s\n", rep.Pending, rep.Delivered, rep.Dead, path)
	for _, l := range rep.Lost {
		fmt.Fprintf(stdio.Out, "could not read: %s\n", terminalSafe(l))
	}
	if len(rep.Lost) > 0 {
		fmt.Fprintln(stdio.Out, "alerts in what could not be read are lost; if the read positions are older than them, they may be raised again")
	}
	return nil
}

// requeueDead moves dead letters back to pending: every one of a
// notifier for NOTIFIER, one for KEY/NOTIFIER.
func requeueDead(stdio Stdio, ob *outbox.Outbox, requeue []string) error {
	for _, r := range requeue {
		if i := strings.LastIndexByte(r, '/'); i > 0 {
			if err := ob.Requeue(r[:i], r[i+1:]); err != nil {
				return exitCode(1, err.Error())
			}
			fmt.Fprintf(stdio.Out, "requeued %s\n", r)
			continue
		}
		dead, err := ob.List(outbox.Dead)
		if err != nil {
			return exitCode(1, err.Error())
		}
		n := 0
		for _, e := range dead {
			if e.Notifier != r {
				continue
			}
			if err := ob.Requeue(e.Key, e.Notifier); err != nil {
				return exitCode(1, err.Error())
			}
			n++
		}
		fmt.Fprintf(stdio.Out, "requeued %d dead letters of %s\n", n, r)
	}
	return nil
}
