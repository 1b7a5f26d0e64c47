package cloudtrail

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// decodeAny decodes one JSON value, which the header scan has already
// validated, into what encoding/json gives for an `any`: map[string]any,
// []any, string, float64, bool or nil. It is the lazy fields' decoder (and
// fills a map field exactly as encoding/json does, see decodeMapInto), and
// is several times faster than encoding/json's reflection on the same
// bytes: it scans once (encoding/json validates first, then decodes) and
// builds values directly. Where its result could differ from encoding/json's
// it leaves the value to encoding/json: a string with escapes or bytes
// outside ASCII that are not valid UTF-8 is unquoted by it.
func (s *scanner) decodeAny() (any, error) {
	s.ws()
	if s.i >= len(s.data) {
		return nil, errSyntax
	}
	switch c := s.data[s.i]; {
	case c == '"':
		return s.decodeString()
	case c == '{':
		m := map[string]any{}
		return m, s.decodeObjectInto(m)
	case c == '[':
		s.i++
		out := []any{}
		s.ws()
		if s.i < len(s.data) && s.data[s.i] == ']' {
			s.i++
			return out, nil
		}
		for {
			v, err := s.decodeAny()
			if err != nil {
				return nil, err
			}
			out = append(out, v)
			s.ws()
			if s.i >= len(s.data) {
				return nil, errSyntax
			}
			switch s.data[s.i] {
			case ',':
				s.i++
			case ']':
				s.i++
				return out, nil
			default:
				return nil, errSyntax
			}
		}
	case c == 't':
		if s.lit("true") {
			return true, nil
		}
	case c == 'f':
		if s.lit("false") {
			return false, nil
		}
	case c == 'n':
		if s.lit("null") {
			return nil, nil
		}
	case c == '-' || (c >= '0' && c <= '9'):
		start := s.i
		if err := s.numberSyntax(); err != nil {
			return nil, err
		}
		f, err := strconv.ParseFloat(string(s.data[start:s.i]), 64)
		if err != nil {
			return nil, errIrregular
		}
		return f, nil
	}
	return nil, errSyntax
}

// decodeObjectInto decodes the object at s.i into m, as encoding/json
// decodes an object into an existing map: every member is set, a key given
// twice keeps its last value.
func (s *scanner) decodeObjectInto(m map[string]any) error {
	s.i++
	s.ws()
	if s.i < len(s.data) && s.data[s.i] == '}' {
		s.i++
		return nil
	}
	for {
		s.ws()
		k, err := s.decodeString()
		if err != nil {
			return err
		}
		s.ws()
		if s.i >= len(s.data) || s.data[s.i] != ':' {
			return errSyntax
		}
		s.i++
		v, err := s.decodeAny()
		if err != nil {
			return err
		}
		m[k] = v
		if end, err := s.next(); end || err != nil {
			return err
		}
	}
}

// decodeString decodes the string at s.i.
func (s *scanner) decodeString() (string, error) {
	start, end, flags, err := s.str()
	if err != nil {
		return "", err
	}
	content := s.data[start:end]
	if flags&strEscaped != 0 || (flags&strNonASCII != 0 && !utf8.Valid(content)) {
		var out string
		if err := json.Unmarshal(s.data[start-1:end+1], &out); err != nil {
			return "", errSyntax
		}
		return out, nil
	}
	return string(content), nil
}

// decodeMapInto decodes data, a map field's value that the header scan
// checked is an object or null, as encoding/json decodes it into *dst: null
// makes the map nil, an object's members are set in the map (made if nil).
func decodeMapInto(dst *map[string]any, data []byte) error {
	s := scanner{data: data}
	s.ws()
	if s.lit("null") {
		*dst = nil
		return nil
	}
	if s.i >= len(s.data) || s.data[s.i] != '{' {
		return errIrregular
	}
	if *dst == nil {
		*dst = map[string]any{}
	}
	if err := s.decodeObjectInto(*dst); err != nil {
		return err
	}
	s.ws()
	if s.i != len(s.data) {
		return errSyntax
	}
	return nil
}
