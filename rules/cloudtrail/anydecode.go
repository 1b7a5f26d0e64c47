package cloudtrail

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/trailwatch/trailwatch/internal/jsonscan"
)

// anyScanner decodes the lazy fields' values (see decodeAny).
type anyScanner struct{ jsonscan.Scanner }

// decodeAny decodes one JSON value, which the header scan has already
// validated, into what encoding/json gives for an `any`: map[string]any,
// []any, string, float64, bool or nil. It is the lazy fields' decoder (and
// fills a map field exactly as encoding/json does, see decodeMapInto), and
// is several times faster than encoding/json's reflection on the same
// bytes: it scans once (encoding/json validates first, then decodes) and
// builds values directly. Where its result could differ from encoding/json's
// it leaves the value to encoding/json: a string with escapes or bytes
// outside ASCII that are not valid UTF-8 is unquoted by it.
func (s *anyScanner) decodeAny() (any, error) {
	s.WS()
	if s.I >= len(s.Data) {
		return nil, jsonscan.ErrSyntax
	}
	switch c := s.Data[s.I]; {
	case c == '"':
		return s.decodeString()
	case c == '{':
		m := map[string]any{}
		return m, s.decodeObjectInto(m)
	case c == '[':
		s.I++
		out := []any{}
		s.WS()
		if s.I < len(s.Data) && s.Data[s.I] == ']' {
			s.I++
			return out, nil
		}
		for {
			v, err := s.decodeAny()
			if err != nil {
				return nil, err
			}
			out = append(out, v)
			s.WS()
			if s.I >= len(s.Data) {
				return nil, jsonscan.ErrSyntax
			}
			switch s.Data[s.I] {
			case ',':
				s.I++
			case ']':
				s.I++
				return out, nil
			default:
				return nil, jsonscan.ErrSyntax
			}
		}
	case c == 't':
		if s.Lit("true") {
			return true, nil
		}
	case c == 'f':
		if s.Lit("false") {
			return false, nil
		}
	case c == 'n':
		if s.Lit("null") {
			return nil, nil
		}
	case c == '-' || (c >= '0' && c <= '9'):
		start := s.I
		if err := s.NumberSyntax(); err != nil {
			return nil, err
		}
		f, err := strconv.ParseFloat(string(s.Data[start:s.I]), 64)
		if err != nil {
			return nil, errIrregular
		}
		return f, nil
	}
	return nil, jsonscan.ErrSyntax
}

// decodeObjectInto decodes the object at s.I into m, as encoding/json
// decodes an object into an existing map: every member is set, a key given
// twice keeps its last value.
func (s *anyScanner) decodeObjectInto(m map[string]any) error {
	s.I++
	s.WS()
	if s.I < len(s.Data) && s.Data[s.I] == '}' {
		s.I++
		return nil
	}
	for {
		s.WS()
		k, err := s.decodeString()
		if err != nil {
			return err
		}
		s.WS()
		if s.I >= len(s.Data) || s.Data[s.I] != ':' {
			return jsonscan.ErrSyntax
		}
		s.I++
		v, err := s.decodeAny()
		if err != nil {
			return err
		}
		m[k] = v
		if end, err := s.Next(); end || err != nil {
			return err
		}
	}
}

// decodeString decodes the string at s.I.
func (s *anyScanner) decodeString() (string, error) {
	start, end, flags, err := s.Str()
	if err != nil {
		return "", err
	}
	content := s.Data[start:end]
	if flags&jsonscan.StrEscaped != 0 || (flags&jsonscan.StrNonASCII != 0 && !utf8.Valid(content)) {
		var out string
		if err := json.Unmarshal(s.Data[start-1:end+1], &out); err != nil {
			return "", jsonscan.ErrSyntax
		}
		return out, nil
	}
	return string(content), nil
}

// decodeMapInto decodes data, a map field's value that the header scan
// checked is an object or null, as encoding/json decodes it into *dst: null
// makes the map nil, an object's members are set in the map (made if nil).
func decodeMapInto(dst *map[string]any, data []byte) error {
	s, object := openMap(dst, data)
	if !object {
		if s.I < 0 {
			return errIrregular
		}
		return nil
	}
	if err := s.decodeObjectInto(*dst); err != nil {
		return err
	}
	s.WS()
	if s.I != len(s.Data) {
		return jsonscan.ErrSyntax
	}
	return nil
}

// openMap starts decoding data, a map field's value that the header scan
// checked is an object or null, into *dst: null makes the map nil (object
// false), an object makes it if nil and leaves s at its '{' (object true);
// anything else leaves s.I at -1.
func openMap(dst *map[string]any, data []byte) (s anyScanner, object bool) {
	s = anyScanner{Scanner: jsonscan.Scanner{Data: data}}
	s.WS()
	if s.Lit("null") {
		*dst = nil
		return s, false
	}
	if s.I >= len(s.Data) || s.Data[s.I] != '{' {
		s.I = -1
		return s, false
	}
	if *dst == nil {
		*dst = map[string]any{}
	}
	return s, true
}

// decodeMembersInto is decodeMapInto for the members named keys only
// (Event.NeedMembers): null makes the map nil, an object makes it (if nil)
// and sets those of keys it holds, each to its last value, decoded as
// decodeObjectInto decodes it; the other members are skipped. It reports
// false, having perhaps set some, when a key holds an escape or bytes
// outside ASCII (it could decode to one of keys) or data is not what the
// header scan checked: the caller then decodes the map whole.
func decodeMembersInto(dst *map[string]any, data []byte, keys []string) bool {
	s, object := openMap(dst, data)
	if !object {
		return s.I >= 0
	}
	s.I++
	s.WS()
	if s.I < len(s.Data) && s.Data[s.I] == '}' {
		s.I++
	} else {
		for {
			s.WS()
			start, end, flags, err := s.Str()
			if err != nil || flags != 0 {
				return false
			}
			s.WS()
			if s.I >= len(s.Data) || s.Data[s.I] != ':' {
				return false
			}
			s.I++
			key := -1
			for j, k := range keys {
				if string(s.Data[start:end]) == k {
					key = j
					break
				}
			}
			if key >= 0 {
				v, err := s.decodeAny()
				if err != nil {
					return false
				}
				(*dst)[keys[key]] = v
			} else {
				s.WS()
				if s.Skip() != nil {
					return false
				}
			}
			done, err := s.Next()
			if err != nil {
				return false
			}
			if done {
				break
			}
		}
	}
	s.WS()
	return s.I == len(s.Data)
}
