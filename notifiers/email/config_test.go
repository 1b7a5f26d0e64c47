package email

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestConfigValidate(t *testing.T) {
	valid := func() Config {
		return Config{SMTPHost: "smtp.example.com", From: "tw@example.com", To: []string{"secops@example.com"}}
	}
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr []string // substrings; none means valid
	}{
		{name: "minimal smtp", edit: func(*Config) {}},
		{name: "full smtp", edit: func(c *Config) {
			c.Type, c.Transport, c.SMTPPort, c.TLS = "email", "smtp", 465, "tls"
			c.Username, c.Password, c.AuthMechanism = "tw", "pw", "LOGIN"
			c.From = "Trailwatch <tw@example.com>"
		}},
		{name: "ses", edit: func(c *Config) {
			*c = Config{Transport: "ses", Region: "eu-west-1", From: "tw@example.com", To: []string{"a@example.com"}}
		}},
		{name: "wrong type", edit: func(c *Config) { c.Type = "slack" }, wantErr: []string{"type:"}},
		{name: "unknown transport", edit: func(c *Config) { c.Transport = "pigeon" }, wantErr: []string{"transport:"}},
		{name: "smtp without host", edit: func(c *Config) { c.SMTPHost = "" }, wantErr: []string{"smtp_host: required"}},
		{name: "port out of range", edit: func(c *Config) { c.SMTPPort = 70000 }, wantErr: []string{"smtp_port:"}},
		{name: "unknown tls mode", edit: func(c *Config) { c.TLS = "ssl" }, wantErr: []string{"tls:"}},
		{name: "unknown auth mechanism", edit: func(c *Config) { c.AuthMechanism = "ntlm" }, wantErr: []string{"auth_mechanism:"}},
		{name: "password and password_file", edit: func(c *Config) { c.Username, c.Password, c.PasswordFile = "u", "p", "/f" },
			wantErr: []string{"set one, not both"}},
		{name: "password without username", edit: func(c *Config) { c.Password = "p" }, wantErr: []string{"username: required"}},
		{name: "ses options with smtp", edit: func(c *Config) { c.Region = "eu-west-1" }, wantErr: []string{"only apply to transport ses"}},
		{name: "smtp options with ses", edit: func(c *Config) { c.Transport = "ses" }, wantErr: []string{"only apply to transport smtp"}},
		{name: "no from", edit: func(c *Config) { c.From = "" }, wantErr: []string{"from: required"}},
		{name: "from with CRLF", edit: func(c *Config) { c.From = "tw@example.com\r\nBcc: x@evil.example" }, wantErr: []string{"from:", "control characters"}},
		{name: "from not an address", edit: func(c *Config) { c.From = "trailwatch" }, wantErr: []string{"from:", "not an e-mail address"}},
		{name: "no recipients", edit: func(c *Config) { c.To = nil }, wantErr: []string{"to: at least one"}},
		{name: "recipient with LF", edit: func(c *Config) { c.To = []string{"a@example.com", "b@example.com\nBcc: x@evil.example"} },
			wantErr: []string{"to[1]:", "control characters"}},
		{name: "negative timeout", edit: func(c *Config) { c.Timeout = -time.Second }, wantErr: []string{"timeout:"}},
		{name: "every problem at once", edit: func(c *Config) { c.SMTPHost, c.From, c.To = "", "", nil },
			wantErr: []string{"smtp_host: required", "from: required", "to: at least one"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.edit(&c)
			err := c.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error containing %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to contain %q", err, w)
				}
			}
			if strings.ContainsAny(err.Error(), "\r\x00") || strings.Contains(err.Error(), "\nBcc") {
				t.Errorf("error carries the raw control characters: %q", err)
			}
		})
	}
}

func TestConfigYAML(t *testing.T) {
	src := `
type: email
transport: smtp
smtp_host: smtp.example.com
smtp_port: 587
tls: starttls
username: trailwatch
password: s3cret
from: trailwatch@example.com
to: [secops@example.com]
timeout: 10s
`
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader([]byte(src)))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if c.Timeout != 10*time.Second || c.port() != 587 || c.Password != "s3cret" {
		t.Errorf("decoded %+v", c)
	}
}

func TestNewReadsPasswordFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pw")
	if err := os.WriteFile(path, []byte(testPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{SMTPHost: "127.0.0.1", Username: "u", PasswordFile: path, From: "a@example.com", To: []string{"b@example.com"}}
	n, err := New(testContext(t), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if n.cfg.Password != testPassword {
		t.Errorf("password read from file = %q, want %q without the newline", n.cfg.Password, testPassword)
	}

	cfg.PasswordFile = filepath.Join(dir, "missing")
	if _, err := New(testContext(t), cfg); err == nil || !strings.Contains(err.Error(), "password_file") {
		t.Errorf("New with a missing password_file = %v, want an error naming password_file", err)
	}
}

func TestPortDefaults(t *testing.T) {
	for _, tt := range []struct {
		tls  string
		want int
	}{{"", 587}, {TLSStartTLS, 587}, {TLSImplicit, 465}, {TLSNone, 25}} {
		t.Run("tls "+tt.tls, func(t *testing.T) {
			c := Config{TLS: tt.tls}
			if got := c.port(); got != tt.want {
				t.Errorf("port() = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestConfigPrintingRedactsPassword(t *testing.T) {
	c := Config{SMTPHost: "smtp.example.com", Username: "u", Password: testPassword, From: "a@example.com", To: []string{"b@example.com"}}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "email", c)
	for _, got := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%v", &c), logs.String()} {
		if strings.Contains(got, testPassword) {
			t.Errorf("printed config holds the password: %s", got)
		}
	}
}
