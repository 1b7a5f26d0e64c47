// Package hugeheap backs the Go heap of trailwatch's batch commands with
// transparent huge pages, where Linux offers them.
//
// A batch command (replay, search, test, validate) starts, loads the rules,
// reads its input and exits within a fraction of a second to minutes. Most
// of its heap is memory the process touches for the first time, and every
// 4 KiB page of it is a page fault: about 12 µs in the Firecracker VMs it
// was measured in, as much as a record's whole evaluation. One 2 MiB huge
// page replaces 512 of those faults. With Linux's transparent huge pages in
// "madvise" mode (the common default) a range gets them only when asked,
// and the Go runtime no longer asks (golang/go#63334: huge pages made
// long-lived heaps hold memory they had freed).
//
// So, as the package initialises, a batch command allocates a block of
// Size bytes (the runtime maps fresh address space for it and touches
// none of it), advises MADV_HUGEPAGE the 2 MiB pages of the heap mapping
// that holds it, drops it and collects it. The advice stays with the
// mapping: the heap's spans are then carved from those pages, and they
// fault in 2 MiB at a time. Heap that grows beyond the mapping is mapped
// anew, without the advice.
//
// With the advice taken, a batch command also keeps a ballast: Ballast
// bytes of heap that are never touched (so they cost address space, not
// memory) but count as live, so the collector lets the heap grow by about
// Ballast bytes more before each cycle. The ballast is allocated before
// the block, at the top of the heap as it stands: it takes the rest of
// the huge page the heap had begun in 4 KiB pages, so the spans carved
// after the collection start on a fresh huge page. The pages the heap had
// touched before the advice are collapsed into huge pages (MADV_COLLAPSE,
// Linux 6.1; a no-op before), so that the rest of them does not fault in
// 4 KiB at a time either. The collector is off while the two are allocated, so
// this package costs one collection, the one that frees the block; the
// previous setting is restored. Start-up (package initialisation and the
// rules: ~20 MB allocated, ~6 MB kept) then runs without a further
// collection, on a near-empty heap, and so do the corpus ×30 and the mix
// of docs/performance.md (5 and 3 collections without this package). The
// price is resident memory: whole huge pages where 4 KiB pages would do,
// and the huge pages at the ballast's two ends (anonymous memory at the
// end of a replay, without → with this package: one record 7.6 → 13.7
// MB, the mix 23.0 → 28.3 MB, the corpus ×30 26.3 → 38.8 MB). Each cycle
// costs more than marking: it hands every cached span back, and every
// size class's span sets touch fresh off-heap pages.
// Without huge pages a bigger heap faults more 4 KiB pages than the
// cycles it saves, so where the advice fails there is no ballast either.
// A GOGC or GOMEMLIMIT in the environment means the user tunes the
// collector: then there is no ballast, and their setting is the one in
// force once this package has initialised.
//
// The command is read from os.Args[1], because package initialisation runs
// before main and the advice must come before the heap grows (the rules
// loaded at start-up already take megabytes); trailwatch's root command
// has no flags of its own, so the first argument is the command's name.
// `run`, the long-running service, is left alone, for the reason the
// runtime stopped advising. TRAILWATCH_HUGEPAGES=off (or 0, false) turns
// all of this off for every command. Where Linux lacks transparent huge
// pages, or they are set to "never" (system-wide or for the process),
// nothing is done.
//
// cmd/trailwatch imports this package for its side effect; nothing else
// should (a library's heap is its program's business).
package hugeheap

import "os"

// Size is the block whose mapping is advised: more than a batch command's
// heap holds at its peak, ballast aside, on the inputs measured (corpus
// and mix of docs/performance.md), so that its spans come from advised
// pages.
const Size = 64 << 20

// Ballast is the untouched live heap a batch command keeps so that it
// collects less often.
const Ballast = 32 << 20

// ballast holds the ballast for the life of the process.
var ballast []byte

// advisedLo and advisedHi bound the range init advised (for the tests).
var advisedLo, advisedHi uintptr

// EnvVar names the environment variable that turns the advice off.
const EnvVar = "TRAILWATCH_HUGEPAGES"

// batchCommands are the commands advised: they run to completion over
// their input and exit.
var batchCommands = map[string]bool{"replay": true, "search": true, "test": true, "validate": true}

// wanted reports whether a process started with args (os.Args) and the
// environment getenv advises its heap.
func wanted(args []string, getenv func(string) string) bool {
	switch getenv(EnvVar) {
	case "0", "off", "false", "no", "OFF", "FALSE", "NO":
		return false
	}
	return len(args) > 1 && batchCommands[args[1]]
}

func init() {
	if !wanted(os.Args, os.Getenv) || !available() {
		return
	}
	withBallast := os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == ""
	advisedLo, advisedHi, ballast, _ = advise(Size, withBallast)
}
