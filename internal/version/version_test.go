package version

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestReleaseIsPinnedAndTagged is part of issue 15's item 7: the version
// `trailwatch version` reports, the version the rules CI workflow of
// examples/deploy installs, and a git tag of the repository agree.
func TestReleaseIsPinnedAndTagged(t *testing.T) {
	if !regexp.MustCompile(`^v\d+\.\d+\.\d+$`).MatchString(Release) {
		t.Fatalf("Release = %q, want a semantic version tag such as v1.2.3", Release)
	}
	if !strings.HasPrefix(String(), "trailwatch "+Release+" ") {
		t.Errorf("String() = %q, want it to report %s", String(), Release)
	}
	wf, err := os.ReadFile("../../examples/deploy/rules-ci.yml")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*TRAILWATCH_VERSION:\s*(\S+)\s*$`).FindSubmatch(wf)
	if m == nil || string(m[1]) != Release {
		t.Errorf("examples/deploy/rules-ci.yml pins TRAILWATCH_VERSION %q, want %s (internal/version.Release)", m, Release)
	}
	// The tag is in the repository this source came from. A copy without
	// git history (an archive) or without tags cannot show it.
	out, err := exec.Command("git", "tag", "--list").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Logf("no git tags here (%v): not checking that %s is tagged", err, Release)
		return
	}
	if !strings.Contains("\n"+string(out), "\n"+Release+"\n") {
		t.Errorf("the repository has tags but not %s: tag the release commit (git tag -a %s)", Release, Release)
		return
	}
	if err := exec.Command("git", "merge-base", "--is-ancestor", Release, "HEAD").Run(); err != nil {
		t.Errorf("tag %s is not an ancestor of HEAD: %v", Release, err)
	}
}
