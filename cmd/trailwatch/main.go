// Command trailwatch tails AWS CloudTrail records, evaluates them against
// detection rules, and delivers alerts. Run `trailwatch --help`.
package main

import (
	"os"

	"github.com/trailwatch/trailwatch/internal/cli"
	// Batch commands' heap on huge pages: see the package.
	_ "github.com/trailwatch/trailwatch/internal/hugeheap"
)

func main() {
	os.Exit(cli.Exec(os.Args[1:]))
}
