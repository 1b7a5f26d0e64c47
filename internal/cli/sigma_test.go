package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSigmaRulesThroughTheCommands runs validate, test and replay on Sigma
// rule files (trailwatch's own, rules/testdata/sigma), and validate on a
// broken one: the commands take Sigma files exactly as trailwatch rules.
func TestSigmaRulesThroughTheCommands(t *testing.T) {
	const fixtures = "../../rules/testdata/sigma"
	code, out, errs := runArgs(t, "validate", "--rules", fixtures, "--explain")
	if code != 0 || !strings.Contains(out, "0b6f3a52-7c1e-4d2a-9f8e-5a4b3c2d1e01") || !strings.Contains(out, "eventName in [DeleteTrail, StopLogging, UpdateTrail]") {
		t.Errorf("validate: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = runArgs(t, "test", "--rules", fixtures, "--require-tests")
	if code != 0 || !strings.Contains(out, " 0 failed") {
		t.Errorf("test: exit %d\n%s\n%s", code, out, errs)
	}

	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yml")
	os.WriteFile(bad, []byte(`title: Broken
id: 1d2e3f40-0000-4000-8000-000000000001
logsource:
    product: aws
    service: cloudtrail
detection:
    selection:
        eventName|windash: CreateUser
    condition: selection
level: low
`), 0o644)
	code, out, _ = runArgs(t, "validate", "--rules", bad)
	if code != 1 || !strings.Contains(out, bad+`:8:9: rule "1d2e3f40-0000-4000-8000-000000000001": modifier "windash" is not supported`) {
		t.Errorf("validate of a broken Sigma rule: exit %d\n%s", code, out)
	}

	trail := filepath.Join(dir, "trail.jsonl")
	os.WriteFile(trail, []byte(`{"eventVersion":"1.09","eventID":"s-1","eventTime":"2025-01-10T09:00:00Z","eventSource":"cloudtrail.amazonaws.com","eventName":"StopLogging","awsRegion":"eu-west-1","sourceIPAddress":"198.51.100.20","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::210987654321:user/ops","accountId":"210987654321"},"requestParameters":{"name":"main"}}
`), 0o644)
	code, out, errs = runArgs(t, "replay", "--rules", fixtures, "--output", "json", trail)
	if code != 0 {
		t.Fatalf("replay: exit %d\n%s", code, errs)
	}
	var a map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &a); err != nil {
		t.Fatalf("replay output %q: %v", out, err)
	}
	if a["rule_id"] != "0b6f3a52-7c1e-4d2a-9f8e-5a4b3c2d1e01" || a["severity"] != "high" ||
		!strings.Contains(a["summary"].(string), "StopLogging on cloudtrail.amazonaws.com by arn:aws:iam::210987654321:user/ops") {
		t.Errorf("alert = %v", a)
	}
}
