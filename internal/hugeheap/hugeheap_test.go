package hugeheap

import "testing"

func TestWantedForBatchCommandsOnly(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == EnvVar {
				return v
			}
			return ""
		}
	}
	for _, c := range []struct {
		args []string
		env  string
		want bool
	}{
		{[]string{"trailwatch", "replay", "x.jsonl"}, "", true},
		{[]string{"trailwatch", "search", "--user", "root"}, "", true},
		{[]string{"trailwatch", "test", "--rules", "r"}, "", true},
		{[]string{"trailwatch", "validate"}, "", true},
		{[]string{"trailwatch", "replay"}, "on", true},
		{[]string{"trailwatch", "run", "--config", "c.yaml"}, "", false},
		{[]string{"trailwatch", "version"}, "", false},
		{[]string{"trailwatch", "--help"}, "", false},
		{[]string{"trailwatch"}, "", false},
		{nil, "", false},
		{[]string{"trailwatch", "replay"}, "off", false},
		{[]string{"trailwatch", "replay"}, "0", false},
		{[]string{"trailwatch", "search"}, "false", false},
	} {
		if got := wanted(c.args, env(c.env)); got != c.want {
			t.Errorf("wanted(%q, %s=%q) = %v, want %v", c.args, EnvVar, c.env, got, c.want)
		}
	}
}
