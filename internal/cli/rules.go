package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/trailwatch/trailwatch/internal/app"
	"github.com/trailwatch/trailwatch/internal/config"
	"github.com/trailwatch/trailwatch/notifiers"
	"github.com/trailwatch/trailwatch/rules"
)

func rulesFlag(cmd *cobra.Command, dst *[]string) {
	cmd.Flags().StringArrayVar(dst, "rules", nil,
		"rule file, directory, or builtin:NAME (builtin = all packs); repeatable; default: all built-in packs")
}

func newValidateCmd(stdio Stdio) *cobra.Command {
	var paths []string
	var cfgPath string
	var explain, checkAWS, lambda bool
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check rule files and report every problem as file:line:col",
		Long: `validate loads rules exactly as the service does — YAML structure, unknown keys,
duplicate ids, expressions compiled and type-checked against the CloudTrail record,
summary templates — and reports every problem at once. It exits 1 if there is any.
With --config it also checks the configuration file: unknown keys, notifiers and their
options, routes, and that every notifier a rule or route names exists; and it warns,
naming each, about enabled rules whose alerts no route would deliver anywhere (run
raises them and sends nothing). The configuration is checked for what run needs of it
without AWS (a source, state_dir; quiet_after only with a source that knows its log
groups) unless --lambda says it has no source on purpose (the Lambda function's),
and every notifier's secret files (url_file, token_file, password_file, ...) are read
as run reads them; with --check-aws, validate runs run's own start-up checks against
AWS, as run does before it says it is running: the log groups or stream can be read,
shared_state's table answers, state_dir can be written, every notifier can be built.
Secrets are never printed.`,
		Example: `  trailwatch validate --rules rules/
  trailwatch validate --config /etc/trailwatch/config.yaml
  AWS_PROFILE=security trailwatch validate --config config.yaml --check-aws
  trailwatch validate --rules builtin --explain`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if lambda && checkAWS {
				return usageError{errors.New("--lambda and --check-aws cannot be combined: --check-aws runs run's start-up checks")}
			}
			out := Stdio{In: stdio.In, Out: stdio.Out, Err: stdio.Out}
			l, err := loadAll(out, cfgPath, paths, true)
			if err != nil {
				return err
			}
			// What run would refuse, in the same pass as the file's own
			// problems: all of it when the configuration itself is sound,
			// else what its partial reading can tell (state_dir, secrets).
			var refused []error
			if cfg := l.cfg; cfg != nil {
				refused = splitJoined(cfg.CheckSecrets())
				switch {
				case lambda:
					fmt.Fprintf(stdio.Out, "%s: note: --lambda: what run needs (a source, state_dir) is not checked\n", cfg.File)
				case l.cfgProblems == 0:
					refused = append(refused, checkLikeRun(cmd.Context(), stdio.Out, cfg, checkAWS)...)
				case cfg.Source.Type != "":
					refused = append(refused, splitJoined(app.RequireRun(cfg))...)
				}
			}
			for _, e := range refused {
				fmt.Fprintln(stdio.Out, e.Error())
			}
			more := ""
			if n := len(refused); n > 0 {
				more = fmt.Sprintf("%d that run would refuse to start with", n)
				if l.cfgProblems+l.ruleProblems == 0 {
					more = fmt.Sprintf("%d problem(s) that run would refuse to start with", n)
				}
			}
			if err := l.problems(more); err != nil {
				return err
			}
			cfg, set := l.cfg, l.set
			if cfg != nil {
				fmt.Fprintf(stdio.Out, "%s OK: %d notifiers, %d routes\n", cfg.File, len(cfg.Notifiers), len(cfg.Routes))
				warnUnrouted(stdio.Out, cfg, set)
			}
			if explain {
				printExplain(stdio.Out, set)
			}
			fmt.Fprintf(stdio.Out, "%d rules OK (%d enabled)\n", len(set.Rules()), set.Len())
			return nil
		},
	}
	rulesFlag(cmd, &paths)
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "also check this configuration file (and use its rules unless --rules is given)")
	cmd.Flags().BoolVar(&checkAWS, "check-aws", false, "also run run's start-up checks against AWS with the SDK's credentials: the source's log groups or stream, shared_state's table, the state directory, the notifiers")
	cmd.Flags().BoolVar(&lambda, "lambda", false, "the configuration has no source on purpose (the Lambda function's, or one used only by replay --notify): do not check what run needs of it")
	cmd.Flags().BoolVar(&explain, "explain", false, "show, for each rule, the eventName values that index it (or that it is evaluated for every event)")
	return cmd
}

// checkLikeRun returns what run would refuse: without AWS, what run
// needs of a configuration that has a source (app.CheckOffline); with
// checkAWS, run's start-up checks themselves (app.Check). A configuration
// without a source is refused as run refuses it, with a note on --lambda.
func checkLikeRun(ctx context.Context, w io.Writer, cfg *config.Config, checkAWS bool) []error {
	if cfg.Source.Type == "" {
		fmt.Fprintf(w, "%s: note: a configuration without a source on purpose (the Lambda function's, or one for replay --notify) is validated with --lambda\n", cfg.File)
	}
	err := app.CheckOffline(ctx, cfg)
	if err == nil && checkAWS {
		err = app.Check(ctx, cfg, app.Options{})
	}
	return splitJoined(err)
}

// splitJoined returns the errors an errors.Join (or a config.ErrorList)
// holds, nested ones too; none for nil.
func splitJoined(err error) []error {
	if err == nil {
		return nil
	}
	if l, ok := err.(rules.ErrorList); ok {
		out := make([]error, len(l))
		for i, e := range l {
			out[i] = e
		}
		return out
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, splitJoined(e)...)
		}
		return out
	}
	return []error{err}
}

// warnUnrouted names the enabled rules whose alerts would go nowhere.
func warnUnrouted(w io.Writer, cfg *config.Config, set *rules.Set) {
	lost := cfg.Unrouted(set)
	if len(lost) == 0 {
		return
	}
	why := "no route matches them and they name no notifier"
	if len(cfg.Notifiers) == 0 {
		why = "the configuration has no notifiers"
	}
	fmt.Fprintf(w, "%s: warning: %d enabled rules would raise alerts that reach no notifier (%s); run delivers none of them:\n", cfg.File, len(lost), why)
	for _, r := range lost {
		fmt.Fprintf(w, "  %s (%s) at %s\n", r.ID, r.Severity, r.Pos)
	}
}

// logUnrouted warns, when run starts, about the enabled rules whose
// alerts would reach no notifier (validate names them the same way).
func logUnrouted(logger *slog.Logger, cfg *config.Config, set *rules.Set) {
	lost := cfg.Unrouted(set)
	if len(lost) == 0 {
		return
	}
	ids := make([]string, len(lost))
	for i, r := range lost {
		ids[i] = r.ID
	}
	logger.Warn("enabled rules whose alerts reach no notifier: no route matches them and they name none; their alerts are raised and not delivered",
		"count", len(ids), "rules", ids)
}

func printExplain(w io.Writer, set *rules.Set) {
	for _, r := range set.Rules() {
		state := ""
		if !r.Enabled {
			state = " (disabled)"
		}
		info := r.Index()
		if info.HeaderOnly {
			state = ", decided from the header" + state
		}
		if len(info.ErrorCodes) > 0 {
			fmt.Fprintf(w, "%-44s errorCode in [%s]%s\n", r.ID, strings.Join(info.ErrorCodes, ", "), state)
			continue
		}
		if len(info.EventNames) == 0 {
			fmt.Fprintf(w, "%-44s every event%s\n", r.ID, state)
			continue
		}
		fmt.Fprintf(w, "%-44s eventName in [%s]%s\n", r.ID, strings.Join(info.EventNames, ", "), state)
	}
}

func newTestCmd(stdio Stdio) *cobra.Command {
	var paths []string
	var cfgPath string
	var verbose, requireTests bool
	cmd := &cobra.Command{
		Use:   "test",
		Short: "Run the tests that rules carry, for CI on a rules repository",
		Long: `test runs every rule's tests: each test gives an event (inline, or event_file:
relative to the rule file) and whether the rule must match it. Events go through the
whole rule set, index included, exactly as in the live service. One line per failure,
then a summary; exit 1 on any failure.`,
		Example: `  trailwatch test --rules rules/
  trailwatch test --rules builtin:aws -v`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := Stdio{In: stdio.In, Out: stdio.Out, Err: stdio.Out}
			cfg, set, err := loadChecked(out, cfgPath, paths, true)
			if err != nil {
				return err
			}
			var opts rules.TestOptions
			if cfg != nil {
				opts.DedupWindow = cfg.Lifecycle.DedupWindow
			}
			passed, failed := 0, 0
			sty, hits := styleFor(stdio.Out), ruleHits{}
			for _, r := range set.RunTestsWith(opts) {
				countTestMatch(hits, r)
				if r.Passed {
					passed++
					if verbose {
						fmt.Fprintf(stdio.Out, "%s   %s: rule %q: test %q\n", sty.ok("ok"), r.Test.Pos, r.Rule.ID, r.Test.Name)
					}
					continue
				}
				failed++
				fmt.Fprintf(stdio.Out, "%s %s: rule %q: test %q: %s\n", sty.fail("FAIL"), r.Test.Pos, r.Rule.ID, r.Test.Name, r.Reason)
			}
			if requireTests {
				for _, r := range set.Rules() {
					if msg := missingTests(r); msg != "" {
						failed++
						fmt.Fprintf(stdio.Out, "FAIL %s: rule %q: %s\n", r.Pos, r.ID, msg)
					}
				}
			}
			hits.print(stdio.Out, "test events each rule matched:")
			fmt.Fprintf(stdio.Out, "%d passed, %d failed\n", passed, failed)
			if failed > 0 {
				return exitCode(1, "")
			}
			return nil
		},
	}
	rulesFlag(cmd, &paths)
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "test the configuration's rules with its lists and lifecycle defaults")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "also list passing tests")
	cmd.Flags().BoolVar(&requireTests, "require-tests", false, "fail rules that lack a matching and a non-matching test")
	return cmd
}

// countTestMatch counts, for the summary, a single-event test whose event
// the rule matched (it passed expecting a match, or failed expecting
// none); every rule with tests is listed, with 0 when it matched none.
func countTestMatch(hits ruleHits, r rules.TestResult) {
	if _, ok := hits[r.Rule.ID]; !ok {
		hits[r.Rule.ID] = 0
	}
	if r.Test.Sequence || strings.Contains(r.Reason, "failed at run time") || strings.Contains(r.Reason, "does not decode") {
		return
	}
	if r.Passed == r.Test.ExpectMatch {
		hits[r.Rule.ID]++
	}
}

// missingTests says what a rule lacks of the minimum test set (one event it
// must match, one it must not), or "".
func missingTests(r *rules.Rule) string {
	match, noMatch := false, false
	for _, t := range r.Tests {
		if t.ExpectMatch {
			match = true
		} else {
			noMatch = true
		}
	}
	switch {
	case !match && !noMatch:
		return "has no tests (needs one event it matches and one it does not)"
	case !match:
		return "has no test with expect: match"
	case !noMatch:
		return "has no test with expect: no-match"
	}
	return ""
}

// printAlertText writes one alert as a line for a person at a terminal.
// Event fields are attacker-controlled: control characters (terminal
// escape sequences among them) are made visible, not passed through.
// Colour (st) marks the severity and dims the details line.
func printAlertText(w io.Writer, a *notifiers.Alert, st style) {
	t := "-"
	if !a.EventTime.IsZero() {
		t = a.EventTime.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(w, "%s  %s  %s  %s\n", t, st.severity(a.Severity, fmt.Sprintf("%-8s", strings.ToUpper(a.Severity))), st.paint(sgrBold, a.RuleID), terminalSafe(a.Summary))
	fmt.Fprintf(w, st.dim("    principal=%s account=%s region=%s source=%s event=%s")+"\n",
		terminalSafe(orDash(a.Principal)), terminalSafe(orDash(a.AccountID)), terminalSafe(orDash(a.AWSRegion)),
		terminalSafe(orDash(a.SourceIP)), terminalSafe(orDash(a.EventID)))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// terminalSafe is notifiers.Terminal: the one rule for event fields
// printed to a terminal.
func terminalSafe(s string) string { return notifiers.Terminal(s) }

// writeAlertJSON writes the alert's public JSON form as one line
// (notifiers.Alert.AppendJSON: json.Marshal's bytes, several times faster).
func writeAlertJSON(w io.Writer, a *notifiers.Alert) error {
	bp := alertBufs.Get().(*[]byte)
	defer alertBufs.Put(bp)
	b, err := a.AppendJSON((*bp)[:0])
	if err != nil {
		return err
	}
	b = append(b, '\n')
	*bp = b
	_, err = w.Write(b)
	return err
}

var alertBufs = sync.Pool{New: func() any { return new([]byte) }}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
