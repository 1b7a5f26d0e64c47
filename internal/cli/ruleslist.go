package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/trailwatch/trailwatch/rules"
)

func newRulesCmd(stdio Stdio) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "List the loaded rules: which are enabled, their severity, pack and tags",
		Long: `rules list shows every rule that would load, built-in packs and your own, after the
configuration's lists and rule_overrides: id, severity, whether it is enabled, the pack
or file it comes from, its tags and title. Disabled rules are listed too (the CIS
variants and aws-instance-launched-outside-regions ship disabled): enable one with

  rule_overrides:
    - rules: [aws-instance-launched-outside-regions]
      enabled: true

in the configuration, without copying it.`,
		Example: `  trailwatch rules list
  trailwatch rules list --config /etc/trailwatch/config.yaml
  trailwatch rules list --rules builtin:cis --output json`,
		Args: cobra.NoArgs,
	}
	var paths []string
	var cfgPath, output string
	list := &cobra.Command{
		Use:   "list",
		Short: "List rules: id, severity, enabled, pack, tags, title (--output json)",
		Example: `  trailwatch rules list --config config.yaml
  trailwatch rules list --rules builtin --output json`,
		Args: cobra.NoArgs,
		PreRunE: func(*cobra.Command, []string) error {
			if output != "table" && output != "json" {
				return usageError{fmt.Errorf("--output must be table or json, not %q", output)}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, set, err := loadConfigAndRules(Stdio{In: stdio.In, Out: stdio.Out, Err: stdio.Err}, cfgPath, paths)
			if err != nil {
				return err
			}
			infos := ruleInfos(set)
			if output == "json" {
				enc := json.NewEncoder(stdio.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(infos)
			}
			tw := tabwriter.NewWriter(stdio.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSEVERITY\tENABLED\tPACK\tTAGS\tTITLE")
			for _, r := range infos {
				fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\n", r.ID, r.Severity, r.Enabled, r.Pack, orDash(strings.Join(r.Tags, ",")), r.Title)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(stdio.Err, "trailwatch: %d rules, %d enabled\n", len(infos), set.Len())
			return nil
		},
	}
	rulesFlag(list, &paths)
	list.Flags().StringVarP(&cfgPath, "config", "c", "", "apply this configuration's rules, lists and rule_overrides")
	list.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	cmd.AddCommand(list)
	return cmd
}

// ruleInfo is one rule as `rules list` shows it.
type ruleInfo struct {
	ID       string   `json:"id"`
	Title    string   `json:"title"`
	Severity string   `json:"severity"`
	Enabled  bool     `json:"enabled"`
	Pack     string   `json:"pack"`
	Tags     []string `json:"tags"`
	Place    string   `json:"place"`
}

func ruleInfos(set *rules.Set) []ruleInfo {
	out := make([]ruleInfo, 0, len(set.Rules()))
	for _, r := range set.Rules() {
		tags := r.Tags
		if tags == nil {
			tags = []string{}
		}
		out = append(out, ruleInfo{
			ID: r.ID, Title: r.Title, Severity: r.Severity, Enabled: r.Enabled,
			Pack: rulePack(r), Tags: tags, Place: r.Pos.String(),
		})
	}
	return out
}

// rulePack names where a rule comes from: builtin:PACK for a built-in
// pack (as --rules names it), else its file.
func rulePack(r *rules.Rule) string {
	if rest, ok := strings.CutPrefix(r.Pos.File, "builtin:"); ok {
		pack, _, _ := strings.Cut(rest, "/")
		return "builtin:" + pack
	}
	return r.Pos.File
}

// nearestRuleID returns the loaded rule id closest to id by edit
// distance, when it is close enough to be a typo, or "".
func nearestRuleID(set *rules.Set, id string) string {
	best, bestD := "", len(id)/3+1
	for _, r := range set.Rules() {
		if d := editDistance(id, r.ID); d < bestD {
			best, bestD = r.ID, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
