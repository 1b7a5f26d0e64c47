package search

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
	"github.com/trailwatch/trailwatch/rules/pattern"
)

// TestPrincipalAndSourceIP covers --principal and --source-ip, the flags
// the built-in runbooks name: each matches what it says, locally and as a
// filter pattern that keeps every local match.
func TestPrincipalAndSourceIP(t *testing.T) {
	recs := map[string]string{"user": recUser, "role": recRole, "root": recRoot}
	tests := []struct {
		name string
		q    Query
		want string // the records that match, sorted
	}{
		{"principal: a user's ARN", Query{Principal: "arn:aws:iam::111122223333:user/ops/alice"}, "user"},
		{"principal: the role behind a session", Query{Principal: "arn:aws:iam::111122223333:role/Deploy"}, "role"},
		{"principal: a session's own ARN", Query{Principal: "arn:aws:sts::111122223333:assumed-role/Deploy/deploy-42"}, "role"},
		{"principal: a principal id", Query{Principal: "111122223333"}, "root"},
		{"principal: a user name is not a principal", Query{Principal: "alice"}, ""},
		{"source ip: an address", Query{SourceIP: "203.0.113.7"}, "user"},
		{"source ip: a block", Query{SourceIP: "203.0.113.0/24"}, "user"},
		{"source ip: another block", Query{SourceIP: "198.51.100.0/24"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, name := range []string{"role", "root", "user"} {
				ev, err := cloudtrail.DecodeEvent([]byte(recs[name]))
				if err != nil {
					t.Fatal(err)
				}
				ok, err := tt.q.Match(ev)
				if err != nil {
					t.Fatal(err)
				}
				if !ok {
					continue
				}
				got = append(got, name)
				if p := tt.q.FilterPattern(); p != "" {
					m, err := pattern.Parse(p)
					if err != nil {
						t.Fatalf("pattern %s: %v", p, err)
					}
					var rec map[string]any
					if err := json.Unmarshal([]byte(recs[name]), &rec); err != nil {
						t.Fatal(err)
					}
					if !m.Match(rec) {
						t.Errorf("filter pattern %s drops a matching record (%s)", p, name)
					}
				}
				if quickReject([]byte(recs[name]), tt.q.literals()) {
					t.Errorf("the literal pre-test rejects a matching record (%s)", name)
				}
			}
			if strings.Join(got, ",") != tt.want {
				t.Errorf("matched %v, want %q", got, tt.want)
			}
		})
	}
}
