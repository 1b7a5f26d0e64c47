package cloudtrail

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/trailwatch/trailwatch/internal/jsonscan"
)

// The header is the cheap first tier of decoding: one validating pass over
// the record's JSON that fills every typed field except the large
// free-form ones (the maps and the resources list, see lazy.go), whose
// places it notes, and skips every other value without building anything.
// Most records in a real trail (Decrypt, GetObject, AssumeRole, ...) match
// no candidate rule, and for those the header is all that is ever read.
//
// The pass allocates nothing for a regular record: a string that holds no
// escape is a view of the record's bytes (unsafe.String), not a copy. Such
// a view is valid only while the record's bytes are unchanged, which is
// the same lifetime the Event's raw record already has (filter patterns
// and the lazy fields read it). Event.Own copies the record and moves
// every view onto the copy; rules.Set.MatchHeader calls it for every event
// a rule matched, so nothing that outlives the evaluation (an alert, a log
// line) holds a view of a buffer its reader reuses.
//
// Whenever the scanner is unsure that it would fill a field exactly as
// encoding/json does (a type mismatch anywhere in a typed part, which
// would send the whole decode to the lenient path; a key that differs
// from a field's name only by case; invalid UTF-8; nesting deeper than
// encoding/json accepts), it gives up with errIrregular or jsonscan.ErrSyntax and
// the caller takes the full decode: falling back is always correct, only
// slower.

// errIrregular means a header field holds a JSON type the typed Event does
// not (a number where a string belongs, "True" for a bool), or a key that
// encoding/json's case-insensitive matching would take for a header field:
// such records take the full, lenient decode so that coercion happens in
// one place.
var errIrregular = errors.New("irregular header field")

// foldedNames returns the lower-cased JSON names of t's fields: the keys
// that encoding/json would match, case-insensitively, to one of them.
func foldedNames(t reflect.Type, extra ...string) map[string]bool {
	m := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		if name := strings.Split(t.Field(i).Tag.Get("json"), ",")[0]; name != "" {
			m[lowerASCII(name)] = true
		}
	}
	for _, e := range extra {
		m[lowerASCII(e)] = true
	}
	return m
}

// The names each object's keys are checked against: a key that is not one
// of its object's names exactly, but matches one case-insensitively, sends
// the record to the full decode (see folds).
var (
	foldedTop      = foldedNames(reflect.TypeOf(Event{}), "@timestamp")
	foldedIdentity = foldedNames(reflect.TypeOf(UserIdentity{}))
	foldedSession  = foldedNames(reflect.TypeOf(SessionContext{}))
	foldedIssuer   = foldedNames(reflect.TypeOf(SessionIssuer{}))
	foldedWebID    = foldedNames(reflect.TypeOf(WebIDFederationData{}))
	foldedAttrs    = foldedNames(reflect.TypeOf(SessionAttributes{}))
	foldedBehalf   = foldedNames(reflect.TypeOf(OnBehalfOf{}))
	foldedTLS      = foldedNames(reflect.TypeOf(TLSDetails{}))
	foldedResource = foldedNames(reflect.TypeOf(Resource{}))
)

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// scanHeader fills ev from data (ev must be zero), all but the lazy fields,
// whose places it notes (see lazy.go), and validates that data is one JSON
// object. It returns jsonscan.ErrSyntax for invalid JSON and errIrregular when the
// record needs the lenient decoder or holds a key that encoding/json would
// match to a field case-insensitively; in both cases the caller falls back
// to the full decode, which reports or coerces exactly as before.
func scanHeader(ev *Event, data []byte) error {
	s := scanner{Scanner: jsonscan.Scanner{Data: data}}
	return s.scan(ev)
}

func (s *scanner) scan(ev *Event) error {
	s.WS()
	if s.I >= len(s.Data) || s.Data[s.I] != '{' {
		return jsonscan.ErrSyntax
	}
	if err := s.topObject(ev); err != nil {
		return err
	}
	s.WS()
	if s.I != len(s.Data) {
		return jsonscan.ErrSyntax
	}
	return nil
}

type scanner struct {
	jsonscan.Scanner
	// ts is the place of the last "@timestamp" string (end 0: none);
	// tsOdd is set when a @timestamp value is not a plain string.
	ts    struct{ start, end int }
	tsOdd bool
}

// object scans an object member by member: member handles the value of
// each key (at s.I) and reports whether it knew the key; an unknown key is
// skipped, unless it matches one of folded's names case-insensitively.
// A value that is not an object is irregular, except null, which leaves
// the destination as it is (as encoding/json does).
func (s *scanner) object(folded map[string]bool, member func(key []byte, odd bool) (bool, error)) error {
	if s.I >= len(s.Data) {
		return jsonscan.ErrSyntax
	}
	if s.Data[s.I] != '{' {
		return s.nullOrIrregular()
	}
	if empty, err := s.Open('}'); empty || err != nil {
		return err
	}
	for {
		key, odd, err := s.Member(true)
		if err != nil {
			return err
		}
		known, err := member(key, odd)
		if err != nil {
			return err
		}
		if !known {
			if folds(key, odd, folded) {
				return errIrregular
			}
			if err := s.Skip(); err != nil {
				return err
			}
		}
		if end, err := s.Next(); end || err != nil {
			s.Leave()
			return err
		}
	}
}

// topObject scans the record's object.
func (s *scanner) topObject(ev *Event) error {
	return s.object(foldedTop, func(key []byte, odd bool) (bool, error) {
		var err error
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
			err = s.identityObject(&ev.UserIdentity)
		case "tlsDetails":
			err = s.tlsObject(&ev.TLSDetails)
		case "requestParameters":
			err = s.lazyMap(ev, fieldRequestParameters)
		case "responseElements":
			err = s.lazyMap(ev, fieldResponseElements)
		case "additionalEventData":
			err = s.lazyMap(ev, fieldAdditionalEventData)
		case "serviceEventDetails":
			err = s.lazyMap(ev, fieldServiceEventDetails)
		case "addendum":
			err = s.lazyMap(ev, fieldAddendum)
		case "edgeDeviceDetails":
			err = s.lazyMap(ev, fieldEdgeDeviceDetails)
		case "insightDetails":
			err = s.lazyMap(ev, fieldInsightDetails)
		case "resources":
			err = s.lazyResources(ev)
		case "@timestamp":
			err = s.timestamp(odd)
		default:
			return false, nil
		}
		return true, err
	})
}

// identityObject scans userIdentity's object.
func (s *scanner) identityObject(u *UserIdentity) error {
	return s.object(foldedIdentity, func(key []byte, odd bool) (bool, error) {
		var err error
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
		case "sessionContext":
			err = s.sessionObject(&u.SessionContext)
		case "onBehalfOf":
			err = s.object(foldedBehalf, func(key []byte, odd bool) (bool, error) {
				switch string(key) {
				case "userId":
					return true, s.stringInto(&u.OnBehalfOf.UserID)
				case "identityStoreArn":
					return true, s.stringInto(&u.OnBehalfOf.IdentityStoreARN)
				}
				return false, nil
			})
		case "inScopeOf":
			err = s.mapInto(&u.InScopeOf)
		default:
			return false, nil
		}
		return true, err
	})
}

// sessionObject scans userIdentity.sessionContext.
func (s *scanner) sessionObject(c *SessionContext) error {
	return s.object(foldedSession, func(key []byte, odd bool) (bool, error) {
		var err error
		switch string(key) {
		case "sessionIssuer":
			i := &c.SessionIssuer
			err = s.object(foldedIssuer, func(key []byte, odd bool) (bool, error) {
				switch string(key) {
				case "type":
					return true, s.stringInto(&i.Type)
				case "principalId":
					return true, s.stringInto(&i.PrincipalID)
				case "arn":
					return true, s.stringInto(&i.ARN)
				case "accountId":
					return true, s.stringInto(&i.AccountID)
				case "userName":
					return true, s.stringInto(&i.UserName)
				}
				return false, nil
			})
		case "webIdFederationData":
			w := &c.WebIDFederationData
			err = s.object(foldedWebID, func(key []byte, odd bool) (bool, error) {
				switch string(key) {
				case "federatedProvider":
					return true, s.stringInto(&w.FederatedProvider)
				case "attributes":
					return true, s.mapInto(&w.Attributes)
				}
				return false, nil
			})
		case "attributes":
			a := &c.Attributes
			err = s.object(foldedAttrs, func(key []byte, odd bool) (bool, error) {
				switch string(key) {
				case "creationDate":
					return true, s.stringInto(&a.CreationDate)
				case "mfaAuthenticated":
					return true, s.stringInto(&a.MFAAuthenticated)
				}
				return false, nil
			})
		case "sourceIdentity":
			err = s.stringInto(&c.SourceIdentity)
		case "ec2RoleDelivery":
			err = s.stringInto(&c.EC2RoleDelivery)
		case "assumedRoot":
			err = s.stringInto(&c.AssumedRoot)
		default:
			return false, nil
		}
		return true, err
	})
}

// tlsObject scans tlsDetails.
func (s *scanner) tlsObject(t *TLSDetails) error {
	return s.object(foldedTLS, func(key []byte, odd bool) (bool, error) {
		switch string(key) {
		case "tlsVersion":
			return true, s.stringInto(&t.TLSVersion)
		case "cipherSuite":
			return true, s.stringInto(&t.CipherSuite)
		case "clientProvidedHostHeader":
			return true, s.stringInto(&t.ClientProvidedHostHeader)
		}
		return false, nil
	})
}

// mapInto decodes a small, rare map (userIdentity.inScopeOf,
// webIdFederationData.attributes) with encoding/json at once: an object
// merges into dst, null makes it nil, as in the full decode; another type
// is irregular.
func (s *scanner) mapInto(dst *map[string]any) error {
	start := s.I
	if err := s.skipMap(); err != nil {
		return err
	}
	if c := s.Data[start]; c != '{' && c != 'n' {
		return errIrregular
	}
	if err := json.Unmarshal(s.Data[start:s.I], dst); err != nil {
		return errIrregular
	}
	return nil
}

// lazyMap notes where a map field's value is, for Need. An object or null
// decodes into a map[string]any whatever it holds; another type is
// irregular, and so is a field given twice (the full decode would merge
// the two objects).
func (s *scanner) lazyMap(ev *Event, f Fields) error {
	start := s.I
	if err := s.skipMap(); err != nil {
		return err
	}
	if c := s.Data[start]; (c != '{' && c != 'n') || ev.lazy.pending&f != 0 {
		return errIrregular
	}
	ev.setSpan(f, start, s.I)
	return nil
}

// lazyResources checks that resources is a list of objects (or null) whose
// known keys hold strings (or null), so that Need's decode cannot fail, and
// notes where it is.
func (s *scanner) lazyResources(ev *Event) error {
	start := s.I
	if ev.lazy.pending&fieldResources != 0 {
		return errIrregular
	}
	if s.Lit("null") {
		ev.setSpan(fieldResources, start, s.I)
		return nil
	}
	if s.I >= len(s.Data) || s.Data[s.I] != '[' {
		if err := s.Skip(); err != nil {
			return err
		}
		return errIrregular
	}
	if empty, err := s.Open(']'); err != nil {
		return err
	} else if !empty {
		for {
			s.WS()
			if s.I < len(s.Data) && s.Data[s.I] != '{' && s.Data[s.I] != 'n' {
				if err := s.Skip(); err != nil {
					return err
				}
				return errIrregular
			}
			err := s.object(foldedResource, func(key []byte, odd bool) (bool, error) {
				switch string(key) {
				case "ARN", "accountId", "type":
					return true, s.checkString()
				}
				return false, nil
			})
			if err != nil {
				return err
			}
			s.WS()
			if s.I >= len(s.Data) {
				return jsonscan.ErrSyntax
			}
			if s.Data[s.I] == ']' {
				s.I++
				s.Leave()
				break
			}
			if s.Data[s.I] != ',' {
				return jsonscan.ErrSyntax
			}
			s.I++
		}
	}
	ev.setSpan(fieldResources, start, s.I)
	return nil
}

// timestamp notes a top-level "@timestamp" string, which records shipped
// through Logstash carry instead of eventTime (see fillTimeFromShipper).
func (s *scanner) timestamp(escapedKey bool) error {
	start := s.I
	if err := s.Skip(); err != nil {
		return err
	}
	if s.Data[start] == '"' && !escapedKey {
		s.ts.start, s.ts.end = start, s.I
	} else {
		s.tsOdd = true
	}
	return nil
}

// skipMap skips the value of a map[string]any field, checking its numbers
// as encoding/json converts them to float64 (an out-of-range one would
// send the whole decode to the lenient path).
func (s *scanner) skipMap() error {
	s.CheckFloats = true
	err := s.Skip()
	s.CheckFloats = false
	return err
}

// folds reports whether encoding/json could match key, which is not one
// of its object's names exactly, to one of them anyway: it compares names
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

// stringInto reads a string (or null, which leaves dst as it is, as
// encoding/json does) into dst; another type is irregular. A string with
// no escapes and valid UTF-8 becomes a view of the record (see the top of
// this file); any other is decoded by encoding/json, which unescapes it
// and replaces invalid UTF-8.
func (s *scanner) stringInto(dst *string) error {
	if s.I < len(s.Data) && s.Data[s.I] == '"' {
		start, end, flags, err := s.Str()
		if err != nil {
			return err
		}
		content := s.Data[start:end]
		if flags&jsonscan.StrEscaped != 0 || (flags&jsonscan.StrNonASCII != 0 && !utf8.Valid(content)) {
			return json.Unmarshal(s.Data[start-1:end+1], dst)
		}
		if len(content) == 0 {
			*dst = ""
			return nil
		}
		*dst = unsafe.String(&content[0], len(content))
		return nil
	}
	if s.Lit("null") {
		return nil
	}
	if err := s.Skip(); err != nil {
		return err
	}
	return errIrregular
}

// checkString checks that the value is a string or null, as a string
// field needs; another type is irregular.
func (s *scanner) checkString() error {
	if s.I < len(s.Data) && s.Data[s.I] == '"' {
		_, _, _, err := s.Str()
		return err
	}
	if s.Lit("null") {
		return nil
	}
	if err := s.Skip(); err != nil {
		return err
	}
	return errIrregular
}

func (s *scanner) boolInto(dst *bool) error {
	switch {
	case s.Lit("true"):
		*dst = true
		return nil
	case s.Lit("false"):
		*dst = false
		return nil
	case s.Lit("null"):
		return nil
	}
	if err := s.Skip(); err != nil {
		return err
	}
	return errIrregular
}

// timeInto reads eventTime as time.Time's UnmarshalJSON would: null leaves
// it as it is; CloudTrail's own shape (2024-05-01T08:00:00Z) is parsed
// here without allocating; anything else goes to encoding/json, and a
// value it rejects is irregular (the lenient decoder drops it).
func (s *scanner) timeInto(dst *time.Time) error {
	if s.Lit("null") {
		return nil
	}
	start := s.I
	if err := s.Skip(); err != nil {
		return err
	}
	raw := s.Data[start:s.I]
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
	if s.Lit("null") {
		return nil
	}
	if err := s.Skip(); err != nil {
		return err
	}
	return errIrregular
}

// DecodeHeader is the first, cheap tier of decoding: it validates raw as one
// JSON object and fills every field of ev but the large free-form ones
// (requestParameters, responseElements, resources, ... see lazy.go), which
// Need decodes when an expression reads them. It returns complete=true when
// it had to fall back to the whole decode (the record needs the lenient
// decoder, or is not valid JSON). It returns an error, as DecodeEvent does,
// when raw is not a CloudTrail record. Strings in ev may be views of raw's
// bytes: call Own before ev outlives raw.
func DecodeHeader(ev *Event, raw []byte) (complete bool, err error) {
	*ev = Event{}
	data := trimSpace(raw)
	ev.raw.data = data
	s := scanner{Scanner: jsonscan.Scanner{Data: data}}
	if err := s.scan(ev); err != nil {
		// Invalid JSON or an irregular record: the full decoder reports or
		// coerces it exactly as it always does.
		return true, DecodeEventInto(ev, raw)
	}
	if ev.EventVersion == "" && ev.EventID == "" {
		return true, DecodeEventInto(ev, raw)
	}
	if ev.EventTime.IsZero() {
		switch {
		case s.tsOdd:
			fillTimeFromShipper(ev, data)
		case s.ts.end > 0:
			var ts string
			if json.Unmarshal(data[s.ts.start:s.ts.end], &ts) == nil {
				if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
					ev.EventTime = t
				}
			}
		}
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
