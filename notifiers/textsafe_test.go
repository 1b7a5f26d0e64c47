package notifiers

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCleanJSON(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"clean", `{"a":"héllo \ud83d\ude00"}`, `{"a":"héllo \ud83d\ude00"}`},
		{"invalid byte", "{\"a\":\"x\xffy\"}", `{"a":"x\ufffdy"}`},
		{"truncated rune", "{\"a\":\"x\xe2\x82\"}", `{"a":"x\ufffd\ufffd"}`},
		{"lone high surrogate", `{"a":"x\ud800y"}`, `{"a":"x\ufffdy"}`},
		{"lone low surrogate", `{"a":"\uDC00"}`, `{"a":"\ufffd"}`},
		{"high then not low", `{"a":"\ud800\u0041"}`, `{"a":"\ufffd\u0041"}`},
		{"escaped backslash then u", `{"a":"\\ud800"}`, `{"a":"\\ud800"}`},
		{"surrogate at the end", `{"a":"\ud83d`, `{"a":"\ufffd`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(CleanJSON([]byte(tt.in))); got != tt.want {
				t.Errorf("CleanJSON(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	clean := []byte(`{"a":"b"}`)
	if got := CleanJSON(clean); &got[0] != &clean[0] {
		t.Error("a clean document was copied")
	}
}

// FuzzCleanJSON: whatever goes in, what comes out is UTF-8 with no lone
// surrogate escape; valid JSON stays valid, and a document that needed
// nothing is returned as it is.
func FuzzCleanJSON(f *testing.F) {
	for _, s := range []string{`{"a":"\ud800"}`, "{\"a\":\"\xff\"}", `{"a":"\\u"}`, `"\ud83d\ude00"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out := CleanJSON(in)
		if !utf8.Valid(out) {
			t.Fatalf("CleanJSON(%q) = %q: not UTF-8", in, out)
		}
		if again := CleanJSON(out); string(again) != string(out) {
			t.Fatalf("CleanJSON is not idempotent on %q: %q then %q", in, out, again)
		}
		if json.Valid(in) && !json.Valid(out) {
			t.Fatalf("CleanJSON(%q) = %q is not JSON", in, out)
		}
		if utf8.Valid(in) && !hasSurrogateEscape(in) && string(out) != string(in) {
			t.Fatalf("CleanJSON changed %q to %q", in, out)
		}
	})
}

func TestTerminal(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "Root sign-in from 203.0.113.9", "Root sign-in from 203.0.113.9"},
		{"escape sequence", "x\x1b[2Jy", `x\x1b[2Jy`},
		{"C1 control", "x\u009bOy", `x\x9bOy`},
		{"bidi override", "invoice\u202Efdp.exe", `invoice\u{202e}fdp.exe`},
		{"bidi isolate", "a\u2066b\u2069", `a\u{2066}b\u{2069}`},
		{"zero-width space and joiner", "ro\u200Bot\u200D", `ro\u{200b}ot\u{200d}`},
		{"BOM", "\uFEFFx", `\u{feff}x`},
		{"invalid UTF-8", "a\xffb", "a\uFFFDb"},
		{"line separator", "a\u2028b", `a\u{2028}b`},
		{"non-ASCII text stays", "Zürich 東京", "Zürich 東京"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Terminal(tt.in); got != tt.want {
				t.Errorf("Terminal(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if strings.ContainsRune(Terminal(tt.in), '\u202E') {
				t.Error("a bidi override survived")
			}
		})
	}
}
