package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestHugeheapInitialisesBeforeTheHeapGrows checks that internal/hugeheap
// initialises before the packages that fill the heap at start-up (the AWS
// SDK's schemas, protobuf, expr): its advice covers only the heap mapped
// up to then and what is carved from it afterwards, so memory taken
// before it faults in 4 KiB pages. Go initialises, among the packages
// whose imports are ready, the first by import path; hugeheap imports
// little so that it is ready early. A new import there can move it last.
func TestHugeheapInitialisesBeforeTheHeapGrows(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, stderr.Bytes())
	}
	// init PKG @T ms, C ms clock, B bytes, A allocs
	before, found := 0, false
	sc := bufio.NewScanner(&stderr)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 9 || f[0] != "init" || f[8] != "bytes," {
			continue
		}
		if f[1] == "github.com/trailwatch/trailwatch/internal/hugeheap" {
			found = true
			break
		}
		n, err := strconv.Atoi(f[7])
		if err != nil {
			t.Fatalf("cannot read %q", sc.Text())
		}
		before += n
	}
	if !found {
		t.Fatalf("no init of internal/hugeheap in GODEBUG=inittrace=1 output:\n%s", stderr.Bytes())
	}
	if before > 512<<10 {
		t.Errorf("packages initialised before internal/hugeheap allocated %d bytes (want under 512 KiB): its advice comes too late", before)
	}
	t.Logf("%d bytes allocated by package initialisation before internal/hugeheap's", before)
}
