package cloudtrail

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/bits"
	"time"
	"unicode/utf8"
	"unsafe"
)

// The header is the cheap first tier of decoding: one validating pass over
// the record's JSON that keeps the top-level scalar fields and userIdentity's
// scalar fields, and skips every other value without building anything.
// Most records in a real trail (Decrypt, GetObject, AssumeRole, ...) match
// no candidate rule, and for those the header is all that is ever read.
//
// The pass allocates nothing for a regular record: a header string that
// holds no escape is a view of the record's bytes (unsafe.String), not a
// copy. Such a view is valid only while the record's bytes are unchanged,
// which is the same lifetime the Event's raw record already has (filter
// patterns read it); every record that a rule matches is decoded whole by
// encoding/json before it leaves rules.Set.MatchHeader, which replaces every view
// with a string of its own, so nothing that outlives the evaluation (an
// alert, a log line) can hold one.
//
// Whenever the scanner is unsure that it would fill a field exactly as
// encoding/json does (a type mismatch, a key that differs from a header
// key only by case, invalid UTF-8, nesting deeper than encoding/json
// accepts), it gives up with errIrregular or errSyntax and the caller takes
// the full decode: falling back is always correct, only slower.

// errIrregular means a header field holds a JSON type the typed Event does
// not (a number where a string belongs, "True" for a bool), or a key that
// encoding/json's case-insensitive matching would take for a header field:
// such records take the full, lenient decode so that coercion happens in
// one place.
var errIrregular = errors.New("irregular header field")

// errSyntax means the input is not valid JSON (or is nested deeper than
// encoding/json accepts).
var errSyntax = errors.New("invalid JSON")

// maxDepth is encoding/json's nesting limit; a deeper record is left to it
// to reject.
const maxDepth = 10000

// headerTopKeys and headerIdentityKeys are the JSON names the header fills.
// scanHeader's switches must list the same names.
var (
	headerTopKeys = []string{
		"eventVersion", "eventSource", "eventName", "awsRegion", "sourceIPAddress", "userAgent",
		"errorCode", "errorMessage", "requestID", "eventID", "eventType", "apiVersion",
		"recipientAccountId", "sharedEventID", "vpcEndpointId", "vpcEndpointAccountId",
		"eventCategory", "sessionCredentialFromConsole", "readOnly", "managementEvent", "eventTime",
	}
	headerIdentityKeys = []string{
		"type", "principalId", "arn", "accountId", "accessKeyId", "userName", "invokedBy",
		"credentialId", "identityProvider",
	}
)

// IsHeaderPath reports whether path (an expression path such as
// "eventName" or "userIdentity.arn") is one that DecodeHeader fills exactly
// as the full decode would: a rule that reads only such paths can be
// decided from the header.
func IsHeaderPath(path string) bool { return headerPaths[path] }

// headerPaths are the expression paths the header fills exactly as the
// full decode would: a rule that reads only these can be decided from the
// header.
var headerPaths = func() map[string]bool {
	m := map[string]bool{}
	for _, k := range headerTopKeys {
		m[k] = true
	}
	for _, k := range headerIdentityKeys {
		m["userIdentity."+k] = true
	}
	return m
}()

// foldedTop and foldedIdentity hold the lower-cased names that
// encoding/json would match case-insensitively at the top level and in
// userIdentity (userIdentity itself included at the top level).
var foldedTop, foldedIdentity = func() (map[string]bool, map[string]bool) {
	top, id := map[string]bool{"useridentity": true}, map[string]bool{}
	for _, k := range headerTopKeys {
		top[lowerASCII(k)] = true
	}
	for _, k := range headerIdentityKeys {
		id[lowerASCII(k)] = true
	}
	return top, id
}()

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

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
	if err := s.topObject(ev); err != nil {
		return err
	}
	s.ws()
	if s.i != len(s.data) {
		return errSyntax
	}
	return nil
}

type scanner struct {
	data  []byte
	i     int
	depth int
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

// member reads `"key":` at s.i (after the opening brace or a comma) and
// leaves s.i at the value. It returns the key without its quotes (decoded
// when it holds escapes, which only the rare header-level caller needs) and
// whether the key has bytes outside ASCII.
func (s *scanner) member(decode bool) (key []byte, nonASCII bool, err error) {
	s.ws()
	start, end, flags, err := s.str()
	if err != nil {
		return nil, false, err
	}
	key = s.data[start:end]
	if flags&strEscaped != 0 && decode {
		var k string
		if json.Unmarshal(s.data[start-1:end+1], &k) != nil {
			return nil, false, errSyntax
		}
		key = []byte(k)
	}
	s.ws()
	if s.i >= len(s.data) || s.data[s.i] != ':' {
		return nil, false, errSyntax
	}
	s.i++
	s.ws()
	return key, flags&(strNonASCII|strEscaped) != 0, nil
}

// next consumes the `,` or `}` after a member's value and reports whether
// the object ended.
func (s *scanner) next() (bool, error) {
	s.ws()
	if s.i >= len(s.data) {
		return false, errSyntax
	}
	switch s.data[s.i] {
	case ',':
		s.i++
		return false, nil
	case '}':
		s.i++
		return true, nil
	}
	return false, errSyntax
}

// open consumes a '{' or '[' and reports whether the container is empty
// (and already closed).
func (s *scanner) open(closer byte) (bool, error) {
	s.depth++
	if s.depth > maxDepth-1 {
		return false, errSyntax
	}
	s.i++
	s.ws()
	if s.i < len(s.data) && s.data[s.i] == closer {
		s.i++
		s.depth--
		return true, nil
	}
	return false, nil
}

// topObject scans the record's object, filling the top-level header
// fields.
func (s *scanner) topObject(ev *Event) error {
	if empty, err := s.open('}'); empty || err != nil {
		return err
	}
	for {
		key, odd, err := s.member(true)
		if err != nil {
			return err
		}
		switch string(key) {
		case "eventVersion":
			err = s.stringInto(&ev.EventVersion)
		case "eventSource":
			err = s.stringInto(&ev.EventSource)
		case "eventName":
			err = s.stringInto(&ev.EventName)
		case "awsRegion":
			err = s.stringInto(&ev.AWSRegion)
		case "sourceIPAddress":
			err = s.stringInto(&ev.SourceIPAddress)
		case "userAgent":
			err = s.stringInto(&ev.UserAgent)
		case "errorCode":
			err = s.stringInto(&ev.ErrorCode)
		case "errorMessage":
			err = s.stringInto(&ev.ErrorMessage)
		case "requestID":
			err = s.stringInto(&ev.RequestID)
		case "eventID":
			err = s.stringInto(&ev.EventID)
		case "eventType":
			err = s.stringInto(&ev.EventType)
		case "apiVersion":
			err = s.stringInto(&ev.APIVersion)
		case "recipientAccountId":
			err = s.stringInto(&ev.RecipientAccountID)
		case "sharedEventID":
			err = s.stringInto(&ev.SharedEventID)
		case "vpcEndpointId":
			err = s.stringInto(&ev.VPCEndpointID)
		case "vpcEndpointAccountId":
			err = s.stringInto(&ev.VPCEndpointAccountID)
		case "eventCategory":
			err = s.stringInto(&ev.EventCategory)
		case "sessionCredentialFromConsole":
			err = s.stringInto(&ev.SessionCredentialFromConsole)
		case "readOnly":
			err = s.boolInto(&ev.ReadOnly)
		case "managementEvent":
			err = s.boolInto(&ev.ManagementEvent)
		case "eventTime":
			err = s.timeInto(&ev.EventTime)
		case "userIdentity":
			if s.i < len(s.data) && s.data[s.i] == '{' {
				err = s.identityObject(&ev.UserIdentity)
			} else {
				err = s.nullOrIrregular()
			}
		default:
			if folds(key, odd, foldedTop) {
				return errIrregular
			}
			err = s.skip()
		}
		if err != nil {
			return err
		}
		if end, err := s.next(); end || err != nil {
			s.depth--
			return err
		}
	}
}

// identityObject scans userIdentity's object, filling its header fields.
func (s *scanner) identityObject(u *UserIdentity) error {
	if empty, err := s.open('}'); empty || err != nil {
		return err
	}
	for {
		key, odd, err := s.member(true)
		if err != nil {
			return err
		}
		switch string(key) {
		case "type":
			err = s.stringInto(&u.Type)
		case "principalId":
			err = s.stringInto(&u.PrincipalID)
		case "arn":
			err = s.stringInto(&u.ARN)
		case "accountId":
			err = s.stringInto(&u.AccountID)
		case "accessKeyId":
			err = s.stringInto(&u.AccessKeyID)
		case "userName":
			err = s.stringInto(&u.UserName)
		case "invokedBy":
			err = s.stringInto(&u.InvokedBy)
		case "credentialId":
			err = s.stringInto(&u.CredentialID)
		case "identityProvider":
			err = s.stringInto(&u.IdentityProvider)
		default:
			if folds(key, odd, foldedIdentity) {
				return errIrregular
			}
			err = s.skip()
		}
		if err != nil {
			return err
		}
		if end, err := s.next(); end || err != nil {
			s.depth--
			return err
		}
	}
}

// folds reports whether encoding/json could match key, which is not one
// of the header names exactly, to one of them anyway: it compares names
// case-insensitively, with Unicode folding (K and the Kelvin sign), so a
// key with bytes outside ASCII or escapes is taken to fold.
func folds(key []byte, odd bool, folded map[string]bool) bool {
	if odd {
		return true
	}
	var buf [32]byte
	if len(key) > len(buf) {
		return false
	}
	for i, c := range key {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return folded[string(buf[:len(key)])]
}

// Flags str reports about a string.
const (
	strEscaped  = 1 << iota // holds a backslash escape
	strNonASCII             // holds a byte >= 0x80
)

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// str scans a JSON string at s.i and returns the bounds of its contents
// (without quotes) and flags.
func (s *scanner) str() (start, end, flags int, err error) {
	if s.i >= len(s.data) || s.data[s.i] != '"' {
		return 0, 0, 0, errSyntax
	}
	s.i++
	start = s.i
	data := s.data
	i := s.i
	var high uint64
	for {
		// Eight bytes at a time: find the first quote, backslash or
		// control byte (the lowest flagged byte is exact; the borrow in
		// the subtraction can only flag bytes above it).
		for i+8 <= len(data) {
			x := binary.LittleEndian.Uint64(data[i:])
			q := x ^ (lsb * '"')
			b := x ^ (lsb * '\\')
			m := ((q - lsb) &^ q) | ((b - lsb) &^ b) | (x - lsb*0x20)
			m &^= x
			m &= msb
			if m != 0 {
				n := bits.TrailingZeros64(m) >> 3
				// Bytes below the stop one: note any high bit (a
				// shift by 64 is 0 in Go).
				high |= (x << (8 * (8 - n))) & msb
				i += n
				goto slow
			}
			high |= x
			i += 8
		}
	slow:
		if i >= len(data) {
			return 0, 0, 0, errSyntax
		}
		c := data[i]
		switch {
		case c == '"':
			s.i = i + 1
			if high&msb != 0 {
				flags |= strNonASCII
			}
			return start, i, flags, nil
		case c == '\\':
			flags |= strEscaped
			i++
			if i >= len(data) {
				return 0, 0, 0, errSyntax
			}
			switch data[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if i+4 >= len(data) {
					return 0, 0, 0, errSyntax
				}
				for _, h := range data[i+1 : i+5] {
					if !isHex(h) {
						return 0, 0, 0, errSyntax
					}
				}
				i += 5
			default:
				return 0, 0, 0, errSyntax
			}
		case c < 0x20:
			return 0, 0, 0, errSyntax
		default:
			high |= uint64(c)
			i++
		}
	}
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// stringInto reads a string (or null, which leaves dst as it is, as
// encoding/json does) into dst; another type is irregular. A string with
// no escapes and valid UTF-8 becomes a view of the record (see the top of
// this file); any other is decoded by encoding/json, which unescapes it
// and replaces invalid UTF-8.
func (s *scanner) stringInto(dst *string) error {
	if s.i < len(s.data) && s.data[s.i] == '"' {
		start, end, flags, err := s.str()
		if err != nil {
			return err
		}
		content := s.data[start:end]
		if flags&strEscaped != 0 || (flags&strNonASCII != 0 && !utf8.Valid(content)) {
			return json.Unmarshal(s.data[start-1:end+1], dst)
		}
		if len(content) == 0 {
			*dst = ""
			return nil
		}
		*dst = unsafe.String(&content[0], len(content))
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
	case s.lit("false"):
		*dst = false
		return nil
	case s.lit("null"):
		return nil
	}
	if err := s.skip(); err != nil {
		return err
	}
	return errIrregular
}

// timeInto reads eventTime as time.Time's UnmarshalJSON would: null leaves
// it as it is; CloudTrail's own shape (2024-05-01T08:00:00Z) is parsed
// here without allocating; anything else goes to encoding/json, and a
// value it rejects is irregular (the lenient decoder drops it).
func (s *scanner) timeInto(dst *time.Time) error {
	if s.lit("null") {
		return nil
	}
	start := s.i
	if err := s.skip(); err != nil {
		return err
	}
	raw := s.data[start:s.i]
	if t, ok := parseTrailTime(raw); ok {
		*dst = t
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return errIrregular
	}
	return nil
}

// parseTrailTime parses exactly `"YYYY-MM-DDTHH:MM:SSZ"` (quotes included),
// with the range checks of RFC 3339; it reports false for anything else,
// which the caller leaves to time.Time's own parser.
func parseTrailTime(b []byte) (time.Time, bool) {
	if len(b) != 22 || b[0] != '"' || b[21] != '"' || b[5] != '-' || b[8] != '-' || b[11] != 'T' ||
		b[14] != ':' || b[17] != ':' || b[20] != 'Z' {
		return time.Time{}, false
	}
	num := func(lo, hi int) (int, bool) {
		n := 0
		for _, c := range b[lo:hi] {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	year, ok1 := num(1, 5)
	month, ok2 := num(6, 8)
	day, ok3 := num(9, 11)
	hour, ok4 := num(12, 14)
	minute, ok5 := num(15, 17)
	sec, ok6 := num(18, 20)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || month < 1 || month > 12 || day < 1 ||
		day > daysIn(time.Month(month), year) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, 0, time.UTC), true
}

func daysIn(m time.Month, year int) int {
	switch m {
	case time.February:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case time.April, time.June, time.September, time.November:
		return 30
	}
	return 31
}

// nullOrIrregular skips a non-object userIdentity: null is what the
// full decoder also leaves as it is; anything else is irregular.
func (s *scanner) nullOrIrregular() error {
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
		_, _, _, err := s.str()
		return err
	case c == '{':
		if empty, err := s.open('}'); empty || err != nil {
			return err
		}
		for {
			if _, _, err := s.member(false); err != nil {
				return err
			}
			if err := s.skip(); err != nil {
				return err
			}
			if end, err := s.next(); end || err != nil {
				s.depth--
				return err
			}
		}
	case c == '[':
		if empty, err := s.open(']'); empty || err != nil {
			return err
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
				s.depth--
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
	if s.i < len(s.data) && s.data[s.i] == '0' {
		s.i++
	} else if s.digits() == 0 {
		return errSyntax
	}
	if s.i < len(s.data) && s.data[s.i] == '.' {
		s.i++
		if s.digits() == 0 {
			return errSyntax
		}
	}
	if s.i < len(s.data) && (s.data[s.i] == 'e' || s.data[s.i] == 'E') {
		s.i++
		if s.i < len(s.data) && (s.data[s.i] == '+' || s.data[s.i] == '-') {
			s.i++
		}
		if s.digits() == 0 {
			return errSyntax
		}
	}
	return nil
}

func (s *scanner) digits() int {
	n := 0
	for s.i < len(s.data) && s.data[s.i] >= '0' && s.data[s.i] <= '9' {
		s.i++
		n++
	}
	return n
}

// DecodeHeader is the first, cheap tier of decoding: it validates raw as one
// JSON object and fills only ev's scalar fields (top-level and
// userIdentity's). It returns complete=true when it had to fall back to the
// full decode (a type mismatch in a header field needs the lenient decoder).
// It returns an error, as DecodeEvent does, when raw is not a CloudTrail
// record. Pass ev to rules.Set.MatchHeader, which completes the decode only when a
// rule needs more than the header.
func DecodeHeader(ev *Event, raw []byte) (complete bool, err error) {
	*ev = Event{}
	data := trimSpace(raw)
	ev.raw.data = data
	if err := scanHeader(ev, data); err != nil {
		// Invalid JSON or an irregular header: the full decoder reports or
		// coerces it exactly as it always does.
		return true, DecodeEventInto(ev, raw)
	}
	if ev.EventVersion == "" && ev.EventID == "" {
		return false, DecodeEventInto(ev, raw)
	}
	if ev.EventTime.IsZero() {
		fillTimeFromShipper(ev, data)
	}
	return false, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
