//go:build !race

package decide

// raceEnabled: see race_on_test.go.
const raceEnabled = false
