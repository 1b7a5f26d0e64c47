package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/trailwatch/trailwatch/engine/dynamostate"
	"github.com/trailwatch/trailwatch/engine/lifecycle"
)

// silenceNow is the clock of the silence commands.
var silenceNow = time.Now

func newSilenceCmd(stdio Stdio) *cobra.Command {
	var stateDir, cfgPath string
	var shared *dynamostate.LifecycleStore
	cmd := &cobra.Command{
		Use:   "silence",
		Short: "Add, list and expire silences: alerts that are recorded, not sent",
		Long: `A silence holds back the alerts of a rule (or of every rule), optionally only those
whose event matches an expression, for a while. The service records each silenced
alert (counted per silence, shown by list, and in trailwatch_alerts_silenced_total)
and sends nothing. Silences live in the state directory (--state-dir, or the
config's state_dir) and the running service picks up changes at its next batch.
With a config that has shared_state, they live in its DynamoDB table instead, where
every instance and the Lambda function read them (within 10s); the SILENCED count
of list is then this host's state_dir's, if any.

A silence covers events by their eventTime: from --lookback before it is added
(CloudTrail delivers events minutes late, and those are usually the ones you
mean) until --for after. replay applies the same silences to recorded logs.`,
		Example: `  trailwatch silence add --config /etc/trailwatch/config.yaml --rule aws-access-denied-burst \
      --match 'userIdentity.arn endsWith "/deployer"' --for 4h --comment "migration, CHG-1234"
  trailwatch silence list --state-dir /var/lib/trailwatch
  trailwatch silence expire --state-dir /var/lib/trailwatch 3f9a1c2b7d4e`,
	}
	cmd.PersistentFlags().StringVar(&stateDir, "state-dir", "", "trailwatch state directory")
	cmd.PersistentFlags().StringVarP(&cfgPath, "config", "c", "", "configuration file (for its state_dir)")
	// dir returns the state directory; with a shared_state config it
	// sets shared instead (and returns the state_dir, possibly empty).
	dir := func(ctx context.Context) (string, error) {
		if stateDir != "" {
			return stateDir, nil
		}
		if cfgPath == "" {
			cfgPath = defaultConfig()
		}
		if cfgPath == "" {
			return "", usageError{errors.New("silence needs --state-dir DIR or --config FILE (or $TRAILWATCH_CONFIG)")}
		}
		cfg, err := loadConfig(stdio, cfgPath)
		if err != nil {
			return "", err
		}
		if ss := cfg.SharedState; ss != nil {
			client, err := dynamostate.NewClient(ctx, cfg.SharedStateRegion(), nil)
			if err != nil {
				return "", exitCode(1, err.Error())
			}
			if shared, err = dynamostate.NewLifecycleStore(client, ss.DynamoDBTable, dynamostate.Options{TTL: ss.TTL}); err != nil {
				return "", exitCode(1, err.Error())
			}
			return cfg.StateDir, nil
		}
		if cfg.StateDir == "" {
			return "", exitCode(1, cfg.File+": state_dir is not set")
		}
		return cfg.StateDir, nil
	}

	var rule, match, comment string
	var rulePaths []string
	var dur, lookback time.Duration
	add := &cobra.Command{
		Use:   "add --rule ID [--match EXPR] --for DURATION --comment TEXT",
		Short: "Add a silence and print its id",
		Example: `  trailwatch silence add --config config.yaml --rule aws-security-group-created \
    --match 'userIdentity.sessionContext.sessionIssuer.userName == "terraform"' --for 4h \
    --comment "CHG-1234: network migration"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := dir(cmd.Context())
			if err != nil {
				return err
			}
			if dur <= 0 {
				return usageError{errors.New("--for must be a positive duration, e.g. 4h")}
			}
			if comment == "" {
				return usageError{errors.New("--comment is required: say why, so the next person knows")}
			}
			if rule != "" {
				if err := checkRuleExists(stdio, cfgPath, rulePaths, rule); err != nil {
					return err
				}
			}
			now := silenceNow().UTC()
			by := ""
			if u, err := user.Current(); err == nil {
				by = u.Username
			}
			silence := lifecycle.Silence{
				Rule: rule, Match: match, Comment: comment, CreatedBy: by,
				CreatedAt: now, StartsAt: now.Add(-lookback), EndsAt: now.Add(dur),
			}
			var s lifecycle.Silence
			if shared != nil {
				s, err = lifecycle.AddSharedSilence(cmd.Context(), shared, silence, now)
			} else {
				s, err = lifecycle.AddSilence(d, silence, now)
			}
			if err != nil {
				return exitCode(1, err.Error())
			}
			fmt.Fprintf(stdio.Out, "%s\n", s.ID)
			fmt.Fprintf(stdio.Err, "trailwatch: silence %s holds back %s until %s\n", s.ID, describeSilence(s), s.EndsAt.Format(time.RFC3339))
			return nil
		},
	}
	add.Flags().StringVar(&rule, "rule", "", "rule id to silence (empty: every rule; then --match is required); it must be a loaded rule's")
	add.Flags().StringArrayVar(&rulePaths, "rules", nil, "the rules --rule must be one of (default: the config's rules, or every built-in pack)")
	add.Flags().StringVar(&match, "match", "", "only events for which this rule-language condition holds")
	add.Flags().DurationVar(&dur, "for", 0, "how long the silence lasts, e.g. 4h")
	add.Flags().StringVar(&comment, "comment", "", "why (required)")
	add.Flags().DurationVar(&lookback, "lookback", 30*time.Minute, "also cover events this long before now (late deliveries)")

	var all bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List active silences (--all: expired ones too) with how many alerts each held back",
		Example: `  trailwatch silence list --config config.yaml
  trailwatch silence list --state-dir /var/lib/trailwatch --all`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := dir(cmd.Context())
			if err != nil {
				return err
			}
			var silences []lifecycle.Silence
			if shared != nil {
				silences, err = lifecycle.LoadSharedSilences(cmd.Context(), shared)
			} else {
				silences, err = lifecycle.LoadSilences(d)
			}
			if err != nil {
				return exitCode(1, err.Error())
			}
			var recs map[string]lifecycle.SilencedRecord
			if d != "" {
				if recs, err = lifecycle.ReadSilenced(d); err != nil {
					fmt.Fprintf(stdio.Err, "trailwatch: %v\n", err)
				}
			}
			now := silenceNow()
			w := tabwriter.NewWriter(stdio.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tSTATE\tENDS\tSILENCED\tRULE\tMATCH\tCOMMENT\tBY")
			for _, s := range silences {
				state := "active"
				if !s.EndsAt.After(now) {
					if !all {
						continue
					}
					state = "expired"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", s.ID, state, s.EndsAt.UTC().Format(time.RFC3339),
					recs[s.ID].Count, orDash(s.Rule), terminalSafe(orDash(s.Match)), terminalSafe(s.Comment), terminalSafe(orDash(s.CreatedBy)))
			}
			return w.Flush()
		},
	}
	list.Flags().BoolVar(&all, "all", false, "include expired silences")

	expire := &cobra.Command{
		Use:     "expire ID",
		Short:   "End a silence now",
		Example: `  trailwatch silence expire --config config.yaml 3f9c2a`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := dir(cmd.Context())
			if err != nil {
				return err
			}
			if shared != nil {
				err = lifecycle.ExpireSharedSilence(cmd.Context(), shared, args[0], silenceNow().UTC())
			} else {
				err = lifecycle.ExpireSilence(d, args[0], silenceNow().UTC())
			}
			if err != nil {
				if errors.Is(err, os.ErrNotExist) {
					return exitCode(1, "no silences in "+d)
				}
				return exitCode(1, err.Error())
			}
			fmt.Fprintf(stdio.Err, "trailwatch: silence %s expired\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(add, list, expire)
	return cmd
}

// checkRuleExists refuses a silence for a rule id that no loaded rule
// has: a typo would otherwise silence nothing, and say nothing.
func checkRuleExists(stdio Stdio, cfgPath string, rulePaths []string, id string) error {
	_, set, err := loadConfigAndRules(stdio, cfgPath, rulePaths)
	if err != nil {
		return err
	}
	if set.Rule(id) != nil {
		return nil
	}
	msg := fmt.Sprintf("--rule %s: no loaded rule has this id", id)
	if near := nearestRuleID(set, id); near != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", near)
	}
	return exitCode(1, msg+"; `trailwatch rules list` lists them")
}

func describeSilence(s lifecycle.Silence) string {
	what := "every rule's alerts"
	if s.Rule != "" {
		what = fmt.Sprintf("rule %s's alerts", s.Rule)
	}
	if s.Match != "" {
		what += " where " + s.Match
	}
	return what
}
