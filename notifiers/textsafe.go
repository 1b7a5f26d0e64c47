package notifiers

import (
	"bytes"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// CleanJSON returns raw (a JSON document, such as a CloudTrail record) with
// every byte sequence that is not UTF-8, and every \u escape of a lone
// UTF-16 surrogate, replaced by \ufffd. encoding/json passes both through a
// RawMessage, and strict readers (jq) reject the line: an attacker who can
// write one such record would break a consumer's whole feed. raw itself is
// returned, not copied, when it needs nothing.
func CleanJSON(raw []byte) []byte {
	if utf8.Valid(raw) && !hasSurrogateEscape(raw) {
		return raw
	}
	out := make([]byte, 0, len(raw)+16)
	for i := 0; i < len(raw); {
		c := raw[i]
		switch {
		case c == '\\' && i+1 < len(raw):
			if raw[i+1] != 'u' {
				if raw[i+1] < utf8.RuneSelf {
					out = append(out, raw[i:i+2]...)
					i += 2
				} else {
					out = append(out, c) // the byte after is looked at next
					i++
				}
				continue
			}
			r, ok := hex4(raw, i+2)
			switch {
			case !ok:
				out = append(out, raw[i:i+2]...)
				i += 2
			case r >= 0xD800 && r < 0xDC00:
				if r2, ok2 := hex4(raw, i+8); ok2 && i+7 < len(raw) && raw[i+6] == '\\' && raw[i+7] == 'u' && r2 >= 0xDC00 && r2 < 0xE000 {
					out = append(out, raw[i:i+12]...)
					i += 12
				} else {
					out = append(out, `\ufffd`...)
					i += 6
				}
			case r >= 0xDC00 && r < 0xE000:
				out = append(out, `\ufffd`...)
				i += 6
			default:
				out = append(out, raw[i:i+6]...)
				i += 6
			}
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			r, n := utf8.DecodeRune(raw[i:])
			if r == utf8.RuneError && n <= 1 {
				out = append(out, `\ufffd`...)
				i++
				continue
			}
			out = append(out, raw[i:i+n]...)
			i += n
		}
	}
	return out
}

// hasSurrogateEscape reports whether raw may hold a \u escape of a
// surrogate (\ud800 to \udfff, either case): what CleanJSON must look at.
func hasSurrogateEscape(raw []byte) bool {
	for i := 0; ; {
		j := bytes.Index(raw[i:], []byte(`\u`))
		if j < 0 {
			return false
		}
		i += j + 2
		if i < len(raw) && (raw[i] == 'd' || raw[i] == 'D') && i+1 < len(raw) && strings.IndexByte("89abcdefABCDEF", raw[i+1]) >= 0 {
			return true
		}
	}
}

// hex4 reads four hex digits at raw[i:].
func hex4(raw []byte, i int) (rune, bool) {
	if i+4 > len(raw) {
		return 0, false
	}
	var r rune
	for _, c := range raw[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// Terminal makes s safe to print to a terminal: control characters (escape
// sequences among them) and the invisible format characters — bidi
// overrides and isolates (which reorder what follows: "txt.exe" shown as
// "exe.txt"), zero-width spaces and joiners, the BOM, soft hyphens — are
// written as \x.. or \u{....}, visible rather than acted on. Bytes that are
// not UTF-8 become U+FFFD. Event fields are attacker-controlled: every
// terminal output of them goes through here.
func Terminal(s string) string {
	if strings.IndexFunc(s, unsafeInTerminal) < 0 && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case r < 0x80 && unicode.IsControl(r), r >= 0x80 && r < 0xA0:
			fmt.Fprintf(&b, "\\x%02x", r)
		case unsafeInTerminal(r):
			fmt.Fprintf(&b, "\\u{%04x}", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// unsafeInTerminal reports whether r is a control or format character.
func unsafeInTerminal(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029'
}
