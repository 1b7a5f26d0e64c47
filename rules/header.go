package rules

import (
	"encoding/json"
	"errors"
	"time"
)

// The header is the cheap first tier of decoding: one validating pass over
// the record's JSON that keeps the top-level scalar fields and userIdentity's
// scalar fields, and skips every other value without building anything.
// Most records in a real trail (Decrypt, GetObject, AssumeRole, ...) match
// no candidate rule, and for those the header is all that is ever read.

// errIrregular means a header field holds a JSON type the typed Event does
// not (a number where a string belongs, "True" for a bool): such records
// take the full, lenient decode so that coercion happens in one place.
var errIrregular = errors.New("irregular header field")

// errSyntax means the input is not valid JSON.
var errSyntax = errors.New("invalid JSON")

// headerField says where a top-level or userIdentity scalar goes.
type headerField struct {
	str  func(e *Event) *string
	bool func(e *Event) *bool
	time bool
}

var topHeader = map[string]headerField{
	"eventVersion":                 {str: func(e *Event) *string { return &e.EventVersion }},
	"eventSource":                  {str: func(e *Event) *string { return &e.EventSource }},
	"eventName":                    {str: func(e *Event) *string { return &e.EventName }},
	"awsRegion":                    {str: func(e *Event) *string { return &e.AWSRegion }},
	"sourceIPAddress":              {str: func(e *Event) *string { return &e.SourceIPAddress }},
	"userAgent":                    {str: func(e *Event) *string { return &e.UserAgent }},
	"errorCode":                    {str: func(e *Event) *string { return &e.ErrorCode }},
	"errorMessage":                 {str: func(e *Event) *string { return &e.ErrorMessage }},
	"requestID":                    {str: func(e *Event) *string { return &e.RequestID }},
	"eventID":                      {str: func(e *Event) *string { return &e.EventID }},
	"eventType":                    {str: func(e *Event) *string { return &e.EventType }},
	"apiVersion":                   {str: func(e *Event) *string { return &e.APIVersion }},
	"recipientAccountId":           {str: func(e *Event) *string { return &e.RecipientAccountID }},
	"sharedEventID":                {str: func(e *Event) *string { return &e.SharedEventID }},
	"vpcEndpointId":                {str: func(e *Event) *string { return &e.VPCEndpointID }},
	"vpcEndpointAccountId":         {str: func(e *Event) *string { return &e.VPCEndpointAccountID }},
	"eventCategory":                {str: func(e *Event) *string { return &e.EventCategory }},
	"sessionCredentialFromConsole": {str: func(e *Event) *string { return &e.SessionCredentialFromConsole }},
	"readOnly":                     {bool: func(e *Event) *bool { return &e.ReadOnly }},
	"managementEvent":              {bool: func(e *Event) *bool { return &e.ManagementEvent }},
	"eventTime":                    {time: true},
}

var identityHeader = map[string]func(u *UserIdentity) *string{
	"type":             func(u *UserIdentity) *string { return &u.Type },
	"principalId":      func(u *UserIdentity) *string { return &u.PrincipalID },
	"arn":              func(u *UserIdentity) *string { return &u.ARN },
	"accountId":        func(u *UserIdentity) *string { return &u.AccountID },
	"accessKeyId":      func(u *UserIdentity) *string { return &u.AccessKeyID },
	"userName":         func(u *UserIdentity) *string { return &u.UserName },
	"invokedBy":        func(u *UserIdentity) *string { return &u.InvokedBy },
	"credentialId":     func(u *UserIdentity) *string { return &u.CredentialID },
	"identityProvider": func(u *UserIdentity) *string { return &u.IdentityProvider },
}

// headerPaths are the expression paths the header fills exactly as the
// full decode would: a rule that reads only these can be decided from the
// header.
var headerPaths = func() map[string]bool {
	m := map[string]bool{}
	for k := range topHeader {
		m[k] = true
	}
	for k := range identityHeader {
		m["userIdentity."+k] = true
	}
	return m
}()

// scanHeader fills ev's header fields from data (ev must be zero) and
// validates that data is one JSON object. It returns errSyntax for invalid
// JSON and errIrregular when a header field needs the lenient decoder; in
// both cases the caller falls back to the full decode, which reports or
// coerces exactly as before.
func scanHeader(ev *Event, data []byte) error {
	s := scanner{data: data}
	s.ws()
	if s.i >= len(s.data) || s.data[s.i] != '{' {
		return errSyntax
	}
	var timeRaw []byte
	err := s.object(func(key []byte) error {
		if string(key) == "userIdentity" {
			s.ws()
			if s.i < len(s.data) && s.data[s.i] == '{' {
				return s.object(func(k []byte) error {
					if f, ok := identityHeader[string(k)]; ok {
						return s.stringInto(f(&ev.UserIdentity))
					}
					return s.skip()
				})
			}
			return s.skipValueExpectNullOr()
		}
		f, ok := topHeader[string(key)]
		switch {
		case !ok:
			return s.skip()
		case f.str != nil:
			return s.stringInto(f.str(ev))
		case f.bool != nil:
			return s.boolInto(f.bool(ev))
		default:
			start := s.i
			if err := s.skip(); err != nil {
				return err
			}
			timeRaw = s.data[start:s.i]
			return nil
		}
	})
	if err != nil {
		return err
	}
	s.ws()
	if s.i != len(s.data) {
		return errSyntax
	}
	if timeRaw != nil && string(timeRaw) != "null" {
		if err := json.Unmarshal(timeRaw, &ev.EventTime); err != nil {
			return errIrregular
		}
	}
	return nil
}

type scanner struct {
	data []byte
	i    int
}

func (s *scanner) ws() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// object parses {"k": v, ...}, calling fn with each key positioned at the
// value; fn must consume the value.
func (s *scanner) object(fn func(key []byte) error) error {
	s.i++ // {
	s.ws()
	if s.i < len(s.data) && s.data[s.i] == '}' {
		s.i++
		return nil
	}
	for {
		s.ws()
		key, escaped, err := s.str()
		if err != nil {
			return err
		}
		if escaped {
			// An escaped key cannot be a header key; decode to compare anyway.
			var k string
			if json.Unmarshal(key, &k) != nil {
				return errSyntax
			}
			key = []byte(k)
		} else {
			key = key[1 : len(key)-1]
		}
		s.ws()
		if s.i >= len(s.data) || s.data[s.i] != ':' {
			return errSyntax
		}
		s.i++
		s.ws()
		if err := fn(key); err != nil {
			return err
		}
		s.ws()
		if s.i >= len(s.data) {
			return errSyntax
		}
		switch s.data[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return errSyntax
		}
	}
}

// str scans a JSON string at s.i and returns it with its quotes, and
// whether it holds escapes.
func (s *scanner) str() ([]byte, bool, error) {
	if s.i >= len(s.data) || s.data[s.i] != '"' {
		return nil, false, errSyntax
	}
	start := s.i
	s.i++
	escaped := false
	for s.i < len(s.data) {
		c := s.data[s.i]
		switch {
		case c == '"':
			s.i++
			return s.data[start:s.i], escaped, nil
		case c == '\\':
			escaped = true
			s.i++
			if s.i >= len(s.data) {
				return nil, false, errSyntax
			}
			switch s.data[s.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i++
			case 'u':
				if s.i+4 >= len(s.data) {
					return nil, false, errSyntax
				}
				for _, h := range s.data[s.i+1 : s.i+5] {
					if !isHex(h) {
						return nil, false, errSyntax
					}
				}
				s.i += 5
			default:
				return nil, false, errSyntax
			}
		case c < 0x20:
			return nil, false, errSyntax
		default:
			s.i++
		}
	}
	return nil, false, errSyntax
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// stringInto reads a string (or null) into dst; another type is irregular.
func (s *scanner) stringInto(dst *string) error {
	if s.i < len(s.data) && s.data[s.i] == '"' {
		raw, escaped, err := s.str()
		if err != nil {
			return err
		}
		if escaped {
			return json.Unmarshal(raw, dst)
		}
		*dst = string(raw[1 : len(raw)-1])
		return nil
	}
	if s.lit("null") {
		return nil
	}
	if err := s.skip(); err != nil {
		return err
	}
	return errIrregular
}

func (s *scanner) boolInto(dst *bool) error {
	switch {
	case s.lit("true"):
		*dst = true
		return nil
	case s.lit("false"), s.lit("null"):
		return nil
	}
	if err := s.skip(); err != nil {
		return err
	}
	return errIrregular
}

// skipValueExpectNullOr skips a non-object userIdentity: null is what the
// full decoder also leaves as zero; anything else is irregular.
func (s *scanner) skipValueExpectNullOr() error {
	if s.lit("null") {
		return nil
	}
	if err := s.skip(); err != nil {
		return err
	}
	return errIrregular
}

func (s *scanner) lit(word string) bool {
	if len(s.data)-s.i >= len(word) && string(s.data[s.i:s.i+len(word)]) == word {
		s.i += len(word)
		return true
	}
	return false
}

// skip validates and skips one JSON value.
func (s *scanner) skip() error {
	if s.i >= len(s.data) {
		return errSyntax
	}
	switch c := s.data[s.i]; {
	case c == '"':
		_, _, err := s.str()
		return err
	case c == '{':
		return s.object(func([]byte) error { s.ws(); return s.skip() })
	case c == '[':
		s.i++
		s.ws()
		if s.i < len(s.data) && s.data[s.i] == ']' {
			s.i++
			return nil
		}
		for {
			s.ws()
			if err := s.skip(); err != nil {
				return err
			}
			s.ws()
			if s.i >= len(s.data) {
				return errSyntax
			}
			switch s.data[s.i] {
			case ',':
				s.i++
			case ']':
				s.i++
				return nil
			default:
				return errSyntax
			}
		}
	case c == 't':
		if s.lit("true") {
			return nil
		}
	case c == 'f':
		if s.lit("false") {
			return nil
		}
	case c == 'n':
		if s.lit("null") {
			return nil
		}
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	}
	return errSyntax
}

// number validates a JSON number (RFC 8259 grammar).
func (s *scanner) number() error {
	if s.data[s.i] == '-' {
		s.i++
	}
	digits := func() int {
		n := 0
		for s.i < len(s.data) && s.data[s.i] >= '0' && s.data[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	if s.i < len(s.data) && s.data[s.i] == '0' {
		s.i++
	} else if digits() == 0 {
		return errSyntax
	}
	if s.i < len(s.data) && s.data[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return errSyntax
		}
	}
	if s.i < len(s.data) && (s.data[s.i] == 'e' || s.data[s.i] == 'E') {
		s.i++
		if s.i < len(s.data) && (s.data[s.i] == '+' || s.data[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return errSyntax
		}
	}
	return nil
}

var _ = time.Time{}
