package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckSecretsReadsSecretFiles: every notifier's *_file secret is read
// as building it would — missing, empty, or holding what the notifier
// refuses — and each problem is reported at the notifier, never with the
// file's content.
func TestCheckSecretsReadsSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	goodURL := write("good-url", "https://hooks.example.com/T000/B000/goodSecret123\n")
	plainURL := write("plain-url", "http://hooks.example.com/T000/B000/plainSecret456\n")
	empty := write("empty", "\n")
	key := write("key", "R0UT1NGKEYSECRET\n")
	cfg := `notifiers:
  - name: hook-ok
    type: webhook
    url_file: ` + goodURL + `
  - name: hook-missing
    type: webhook
    url_file: ` + filepath.Join(dir, "nope") + `
  - name: chat
    type: slack
    webhook_url_file: ` + plainURL + `
  - name: chat-bot
    type: slack
    token_file: ` + empty + `
    channel: "#sec"
  - name: pager
    type: pagerduty
    routing_key_file: ` + key + `
  - name: mail
    type: email
    smtp_host: smtp.example.com
    from: tw@example.com
    to: [sec@example.com]
    username: tw
    password_file: ` + filepath.Join(dir, "no-password") + `
`
	c, err := Parse(filepath.Join(dir, "c.yaml"), []byte(cfg), env(nil))
	if err != nil {
		t.Fatalf("the configuration itself is valid: %v", err)
	}
	err = c.CheckSecrets()
	if err == nil {
		t.Fatal("CheckSecrets found nothing")
	}
	text := err.Error()
	for _, want := range []string{
		`c.yaml:5:5: notifier "hook-missing": webhook: url_file: read secret file: open ` + filepath.Join(dir, "nope"),
		`c.yaml:8:5: notifier "chat": slack: webhook_url_file: must use https`,
		`c.yaml:11:5: notifier "chat-bot": slack: token_file: read secret file ` + empty + `: file is empty`,
		`c.yaml:18:5: notifier "mail": email: read password_file: open ` + filepath.Join(dir, "no-password"),
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q in:\n%s", want, text)
		}
	}
	for _, quiet := range []string{"hook-ok", "pager"} {
		if strings.Contains(text, `"`+quiet+`"`) {
			t.Errorf("%s's readable secret is reported:\n%s", quiet, text)
		}
	}
	for _, secret := range []string{"goodSecret123", "plainSecret456", "R0UT1NGKEYSECRET", "T000"} {
		if strings.Contains(text, secret) {
			t.Errorf("a secret file's content %q is in the report:\n%s", secret, text)
		}
	}
	if n := strings.Count(text, "\n") + 1; n != 4 {
		t.Errorf("%d problems, want 4:\n%s", n, text)
	}
}

// TestEmptyEnvironmentVariable: ${VAR} set to "" is reported as empty, not
// as unset (which sent people looking for a missing export); a default
// (${VAR:-x}) still applies to both.
func TestEmptyEnvironmentVariable(t *testing.T) {
	cfg := `notifiers:
  - name: hook
    type: webhook
    url: ${HOOK_URL}
`
	_, err := Parse("c.yaml", []byte(cfg), env(map[string]string{"HOOK_URL": ""}))
	if err == nil || !strings.Contains(err.Error(), "c.yaml:4:10: environment variable HOOK_URL is set but empty") {
		t.Errorf("empty HOOK_URL: %v", err)
	}
	_, err = Parse("c.yaml", []byte(cfg), env(nil))
	if err == nil || !strings.Contains(err.Error(), "environment variable HOOK_URL is not set") {
		t.Errorf("unset HOOK_URL: %v", err)
	}
	withDefault := strings.Replace(cfg, "${HOOK_URL}", "${HOOK_URL:-https://hooks.example.com/x}", 1)
	if _, err := Parse("c.yaml", []byte(withDefault), env(map[string]string{"HOOK_URL": ""})); err != nil {
		t.Errorf("empty HOOK_URL with a default: %v", err)
	}
}
