// Package version reports what build of trailwatch is running.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Release is the release this source tree is, or was developed from: the
// git tag of the same name marks it (git tag -l). examples/deploy's
// rules-ci.yml pins it (TRAILWATCH_VERSION); a test keeps the two equal.
// Bump both, and tag, when releasing.
const Release = "v0.1.0"

// Version is what `trailwatch version` reports: Release, unless the build
// sets it, as the Dockerfile does with
// -ldflags "-X github.com/trailwatch/trailwatch/internal/version.Version=v1.2.3"
// (from git describe, say).
var Version = Release

// String describes the build: version, VCS revision and time when the Go
// toolchain recorded them, and the Go version.
func String() string {
	rev, at, dirty := "", "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	out := "trailwatch " + Version
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		out += " (" + rev
		if dirty {
			out += "+dirty"
		}
		if at != "" {
			out += " " + at
		}
		out += ")"
	}
	return fmt.Sprintf("%s %s %s/%s", out, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
