package notifiers

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/trailwatch/trailwatch/internal/jsonscan"
)

// AppendJSON appends a's public JSON form to dst: exactly the bytes
// json.Marshal(a) gives, made without reflection and, for the event,
// without encoding/json's byte-by-byte re-validation (a replay writes one
// of these per alert, and the event is most of each). When json.Marshal
// would fail (an event that is not valid JSON, a time it cannot encode),
// AppendJSON returns json.Marshal's error.
//
// TestAppendJSONAgreesWithMarshal fills every field of Alert: a field added
// to Alert must be added here too, or it fails.
func (a *Alert) AppendJSON(dst []byte) ([]byte, error) {
	out, ok := a.appendJSON(dst)
	if !ok {
		b, err := json.Marshal(a)
		if err != nil {
			return dst, err
		}
		return append(dst, b...), nil
	}
	return out, nil
}

// appendJSON is AppendJSON's fast path; it reports false where it leaves
// the work to json.Marshal.
func (a *Alert) appendJSON(dst []byte) ([]byte, bool) {
	var ok bool
	dst = append(dst, `{"rule_id":`...)
	dst = appendJSONString(dst, a.RuleID)
	dst = append(dst, `,"title":`...)
	dst = appendJSONString(dst, a.Title)
	dst = append(dst, `,"severity":`...)
	dst = appendJSONString(dst, a.Severity)
	dst = append(dst, `,"summary":`...)
	dst = appendJSONString(dst, a.Summary)
	dst = appendOptString(dst, `,"description":`, a.Description)
	dst = appendOptStrings(dst, `,"tags":`, a.Tags)
	dst = appendOptString(dst, `,"runbook":`, a.Runbook)
	dst = appendOptStrings(dst, `,"references":`, a.References)
	dst = append(dst, `,"dedup_key":`...)
	dst = appendJSONString(dst, a.DedupKey)
	dst = append(dst, `,"event_id":`...)
	dst = appendJSONString(dst, a.EventID)
	dst = append(dst, `,"event_time":`...)
	if dst, ok = appendJSONTime(dst, a.EventTime); !ok {
		return dst, false
	}
	dst = appendOptString(dst, `,"event_time_warning":`, a.EventTimeWarning)
	dst = append(dst, `,"event_name":`...)
	dst = appendJSONString(dst, a.EventName)
	dst = append(dst, `,"event_source":`...)
	dst = appendJSONString(dst, a.EventSource)
	dst = append(dst, `,"principal":`...)
	dst = appendJSONString(dst, a.Principal)
	dst = appendOptString(dst, `,"user_name":`, a.UserName)
	dst = appendOptString(dst, `,"access_key_id":`, a.AccessKeyID)
	dst = append(dst, `,"source_ip":`...)
	dst = appendJSONString(dst, a.SourceIP)
	dst = appendOptString(dst, `,"user_agent":`, a.UserAgent)
	dst = append(dst, `,"aws_region":`...)
	dst = appendJSONString(dst, a.AWSRegion)
	dst = append(dst, `,"account_id":`...)
	dst = appendJSONString(dst, a.AccountID)
	dst = appendOptString(dst, `,"error_code":`, a.ErrorCode)
	dst = appendOptString(dst, `,"error_message":`, a.ErrorMessage)
	if a.Count != 0 {
		dst = strconv.AppendInt(append(dst, `,"count":`...), int64(a.Count), 10)
	}
	if a.Suppressed != 0 {
		dst = strconv.AppendInt(append(dst, `,"suppressed":`...), int64(a.Suppressed), 10)
	}
	if !a.FirstTime.IsZero() {
		if dst, ok = appendJSONTime(append(dst, `,"first_time":`...), a.FirstTime); !ok {
			return dst, false
		}
	}
	if !a.LastTime.IsZero() {
		if dst, ok = appendJSONTime(append(dst, `,"last_time":`...), a.LastTime); !ok {
			return dst, false
		}
	}
	dst = appendOptStrings(dst, `,"group":`, a.Group)
	if len(a.Samples) > 0 {
		dst = append(dst, `,"samples":[`...)
		for i := range a.Samples {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, ok = a.Samples[i].appendJSON(dst); !ok {
				return dst, false
			}
		}
		dst = append(dst, ']')
	}
	if a.Test {
		dst = append(dst, `,"test":true`...)
	}
	dst = append(dst, `,"event":`...)
	if dst, ok = appendRawJSON(dst, a.Event); !ok {
		return dst, false
	}
	return append(dst, '}'), true
}

func (s *EventSample) appendJSON(dst []byte) ([]byte, bool) {
	var ok bool
	dst = append(dst, `{"event_id":`...)
	dst = appendJSONString(dst, s.EventID)
	dst = append(dst, `,"event_time":`...)
	if dst, ok = appendJSONTime(dst, s.EventTime); !ok {
		return dst, false
	}
	dst = append(dst, `,"event_name":`...)
	dst = appendJSONString(dst, s.EventName)
	dst = appendOptString(dst, `,"rule_id":`, s.RuleID)
	dst = appendOptString(dst, `,"principal":`, s.Principal)
	dst = appendOptString(dst, `,"source_ip":`, s.SourceIP)
	dst = appendOptString(dst, `,"error_code":`, s.ErrorCode)
	return append(dst, '}'), true
}

// appendOptString appends `key:"s"` unless s is empty (omitempty).
func appendOptString(dst []byte, key, s string) []byte {
	if s == "" {
		return dst
	}
	return appendJSONString(append(dst, key...), s)
}

// appendOptStrings appends `key:["a",...]` unless list is empty
// (omitempty).
func appendOptStrings(dst []byte, key string, list []string) []byte {
	if len(list) == 0 {
		return dst
	}
	dst = append(dst, key...)
	dst = append(dst, '[')
	for i, s := range list {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, s)
	}
	return append(dst, ']')
}

// appendJSONTime appends t as time.Time's MarshalJSON does; it reports
// false for a time that MarshalJSON rejects (a year outside 0-9999).
func appendJSONTime(dst []byte, t time.Time) ([]byte, bool) {
	out, err := t.AppendText(append(dst, '"'))
	if err != nil {
		return dst, false
	}
	return append(out, '"'), true
}

// appendRawJSON appends raw as json.Marshal embeds a json.RawMessage,
// when that is raw itself: "null" for nil, or a valid record with no white
// space to drop and nothing to escape (<, >, &, U+2028, U+2029), which is
// the usual case. It reports false otherwise (json.Marshal compacts,
// escapes or rejects it).
func appendRawJSON(dst []byte, raw json.RawMessage) ([]byte, bool) {
	if raw == nil {
		return append(dst, "null"...), true
	}
	s := jsonscan.Scanner{Data: raw}
	s.WS()
	if s.Skip() != nil {
		return dst, false
	}
	s.WS()
	if s.I != len(raw) || s.Spaced || needsHTMLEscape(raw) {
		return dst, false
	}
	return append(dst, raw...), true
}

// needsHTMLEscape reports whether raw holds a byte that json.Marshal
// escapes in a RawMessage: <, >, & or the start of U+2028 or U+2029.
func needsHTMLEscape(raw []byte) bool {
	if bytes.IndexByte(raw, '<') >= 0 || bytes.IndexByte(raw, '>') >= 0 || bytes.IndexByte(raw, '&') >= 0 {
		return true
	}
	for i := 0; ; {
		j := bytes.IndexByte(raw[i:], 0xE2)
		if j < 0 {
			return false
		}
		i += j
		if i+2 < len(raw) && raw[i+1] == 0x80 && (raw[i+2] == 0xA8 || raw[i+2] == 0xA9) {
			return true
		}
		i++
	}
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as encoding/json encodes a string (with its
// default HTML escaping): quoted; ", \ and control bytes escaped (\b, \f,
// \n, \r, \t by name, others as \u00XX); <, > and & as \u003c, \u003e,
// \u0026; invalid UTF-8 as \ufffd; U+2028 and U+2029 as \u2028, \u2029.
// plainJSON says which ASCII bytes json.Marshal copies into a string as
// they are (one table lookup a byte instead of six comparisons: the
// descriptions and runbooks are most of an alert's text).
var plainJSON = func() (t [utf8.RuneSelf]bool) {
	for b := range t {
		t[b] = b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&'
	}
	return t
}()

func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if plainJSON[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// RecordJSON is a CloudTrail record's JSON as an alert carries it
// (Alert.Event): compact (CompactJSON), with no invalid UTF-8 or lone
// surrogates in any output (CleanJSON). raw is as CompactJSON needs it.
func RecordJSON(raw []byte) json.RawMessage { return CleanJSON(CompactJSON(raw)) }

// CompactJSON returns raw without the white space outside its strings: raw
// itself when it has none (a JSON Lines record usually), else a compact
// copy, the same bytes as json.Compact gives, made in one pass that copies
// whole strings at a time (json.Compact validates again, byte by byte). raw
// must be valid JSON (a record that decoded without a syntax error), and
// must not change while the result is in use (the result may be raw).
func CompactJSON(raw []byte) json.RawMessage {
	var out []byte // nil until the first white space to drop
	copied := 0    // raw[:copied] is in out
	for i := 0; i < len(raw); {
		// Outside strings: drop whitespace up to the next quote.
		j := bytes.IndexByte(raw[i:], '"')
		end := len(raw)
		if j >= 0 {
			end = i + j
		}
		for p := i; p < end; p++ {
			if c := raw[p]; c == ' ' || c == '\t' || c == '\n' || c == '\r' {
				if out == nil {
					out = make([]byte, 0, len(raw))
				}
				out = append(out, raw[copied:p]...)
				copied = p + 1
			}
		}
		if j < 0 {
			break
		}
		// A string: skip it through its closing quote, the first one
		// not escaped by an odd run of backslashes.
		k := end + 1
		for {
			q := bytes.IndexByte(raw[k:], '"')
			if q < 0 {
				return compactStrict(raw)
			}
			k += q
			n := 0
			for p := k - 1; p > end && raw[p] == '\\'; p-- {
				n++
			}
			k++
			if n%2 == 0 {
				break
			}
		}
		i = k
	}
	if out == nil {
		return json.RawMessage(raw)
	}
	return json.RawMessage(append(out, raw[copied:]...))
}

func compactStrict(raw []byte) json.RawMessage {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return json.RawMessage(bytes.TrimSpace(raw))
	}
	return json.RawMessage(b.Bytes())
}
