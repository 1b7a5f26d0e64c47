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
// none of it), advises its 2 MiB-aligned interior MADV_HUGEPAGE, drops it
// and collects it. The advice stays with the mapping: the heap's spans are
// then carved from those pages first, and they fault in 2 MiB at a time.
// Heap that grows beyond them is mapped anew, without the advice.
//
// The command is read from os.Args[1], because package initialisation runs
// before main and the advice must come before the heap grows (the rules
// loaded at start-up already take megabytes); trailwatch's root command
// has no flags of its own, so the first argument is the command's name.
// `run`, the long-running service, is left alone, for the reason the
// runtime stopped advising. TRAILWATCH_HUGEPAGES=off (or 0, false) turns
// the advice off for every command. Where Linux lacks transparent huge
// pages, or they are set to "never", the advice does nothing and costs
// the allocation only.
//
// cmd/trailwatch imports this package for its side effect; nothing else
// should (a library's heap is its program's business).
package hugeheap

import "os"

// Size is the part of the heap advised: more than a batch command's heap
// holds at its peak on the inputs measured (docs/performance.md), so that
// its spans come from advised pages.
const Size = 32 << 20

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
	if wanted(os.Args, os.Getenv) {
		_, _, _ = advise(Size)
	}
}
