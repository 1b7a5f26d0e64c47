// Command gencorpus writes the generated inputs of docs/performance.md's
// end-to-end figures from the real corpus (../shared/corpus): the corpus
// repeated with unique eventIDs, or a production-like mix in which few
// records raise an alert with the built-in rules.
//
//	go run ./internal/corpus/gencorpus -copies 30 > x30.jsonl
//	go run ./internal/corpus/gencorpus -mix 100000 -alert-every 200 > mix.jsonl
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/trailwatch/trailwatch/internal/benchdata"
	"github.com/trailwatch/trailwatch/internal/corpus"
	"github.com/trailwatch/trailwatch/rules"
)

func main() {
	dir := flag.String("corpus", corpus.Dir(), "directory of the corpus's *.jsonl files")
	copies := flag.Int("copies", 30, "passes over the corpus, each record with a unique eventID")
	mix := flag.Int("mix", 0, "instead, write this many records of a production-like mix")
	every := flag.Int("alert-every", 200, "in the mix, one record in this many raises an alert")
	flag.Parse()
	if err := run(*dir, *copies, *mix, *every); err != nil {
		fmt.Fprintln(os.Stderr, "gencorpus:", err)
		os.Exit(1)
	}
}

func run(dir string, copies, mix, every int) error {
	recs, err := corpus.Read(dir)
	if err != nil {
		return err
	}
	if mix == 0 {
		return corpus.Copies(os.Stdout, recs, copies)
	}
	set, err := rules.Load("builtin")
	if err != nil {
		return err
	}
	return corpus.Mix(os.Stdout, recs, benchdata.Alerting(set), mix, every)
}
