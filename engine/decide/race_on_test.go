//go:build race

package decide

// raceEnabled: under the race detector sync.Pool drops a share of what it
// is given, at random, so allocation counts are not the program's.
const raceEnabled = true
