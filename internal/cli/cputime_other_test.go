//go:build !unix

package cli

import "time"

// processCPU is not measured on this platform: the benchmarks report wall
// time only.
func processCPU() time.Duration { return 0 }
