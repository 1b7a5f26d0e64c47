package cli

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/trailwatch/trailwatch/internal/app"
	"github.com/trailwatch/trailwatch/internal/config"
	"github.com/trailwatch/trailwatch/notifiers"
)

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
				cfgPath = defaultConfig()
			}
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
				nt, err := app.NewNotifier(cmd.Context(), cfg, name, nil)
				if err != nil {
					fmt.Fprintf(stdio.Out, "%s (%s): cannot be built: %v\n", name, n.Type, err)
					failed++
					continue
				}
				err = nt.Notify(cmd.Context(), app.TestAlert(time.Now()))
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

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
