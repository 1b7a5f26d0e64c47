package cloudtrail

import (
	"bytes"
	"encoding/json"
	"math/bits"
	"unsafe"

	"github.com/trailwatch/trailwatch/internal/jsonscan"
)

// Lazy decoding. DecodeHeader fills every typed field of the record except
// the large free-form parts: the maps (requestParameters,
// responseElements, additionalEventData, serviceEventDetails, addendum,
// edgeDeviceDetails, insightDetails) and the resources list. Of those it
// only checks that each has a type the full decode accepts and notes where
// its value is; Need decodes the ones an expression reads, when it reads
// them. Rules compile with the set of fields they read (FieldsOf), so a
// record that a rule matches costs the decode of what that rule, its
// summary and its dedup key read, and nothing else.
//
// A field decoded lazily is decoded from its own bytes (maps by
// decodeAny, resources by encoding/json), which gives exactly what
// encoding/json's decode of the whole record gives: the header
// scan has already checked that nothing in the record would send the whole
// decode to the lenient path (any type mismatch falls back to it), that no
// key of the record matches one of these fields case-insensitively, and
// that none of them appears twice.

// Fields is a set of the Event fields that DecodeHeader leaves for Need.
type Fields uint16

const (
	fieldRequestParameters Fields = 1 << iota
	fieldResponseElements
	fieldAdditionalEventData
	fieldServiceEventDetails
	fieldAddendum
	fieldEdgeDeviceDetails
	fieldInsightDetails
	fieldResources

	// AllFields is every field that Need can decode.
	AllFields = 1<<iota - 1

	numLazy = iota
)

// lazyNames are the JSON (and expression) names of the lazy fields, in
// bit order.
var lazyNames = [numLazy]string{
	"requestParameters", "responseElements", "additionalEventData", "serviceEventDetails",
	"addendum", "edgeDeviceDetails", "insightDetails", "resources",
}

// FieldsOf returns the lazy field that the top-level expression name
// denotes (requestParameters, resources, ...), or 0 for a name that
// DecodeHeader fills or that is not a field. The name "$env" (expr's whole
// environment) is every field.
func FieldsOf(name string) Fields {
	if name == "$env" {
		return AllFields
	}
	for i, n := range lazyNames {
		if n == name {
			return 1 << i
		}
	}
	return 0
}

// lazyState is where a header-decoded Event's lazy fields are in its
// record, and which of them are still to decode.
type lazyState struct {
	pending Fields
	// partial: pending map fields whose map holds only the members some
	// expression read (NeedMembers); keys: the last key list decoded
	// into each (its first element's address: NeedMembers' keys are an
	// expression's own, which do not change).
	partial Fields
	keys    [numLazy]*string
	spans   [numLazy]struct{ start, end int32 }
	err     error
}

func (ev *Event) setSpan(f Fields, start, end int) {
	i := bits.TrailingZeros16(uint16(f))
	ev.lazy.spans[i].start, ev.lazy.spans[i].end = int32(start), int32(end)
	ev.lazy.pending |= f
}

// Need decodes those of fields that are not decoded yet. Reading an Event
// from DecodeEvent needs no call; one from DecodeHeader holds the zero
// value in a lazy field until Need decodes it (rule expressions, summaries,
// dedup keys and conditions call it for what they read). It returns an
// error only if the record cannot be decoded at all, which DecodeHeader
// would already have reported. An Event is not safe for concurrent use
// while Need may decode.
func (ev *Event) Need(fields Fields) error {
	todo := ev.lazy.pending & fields
	if todo == 0 {
		return ev.lazy.err
	}
	for todo != 0 {
		i := bits.TrailingZeros16(uint16(todo))
		f := Fields(1) << i
		todo &^= f
		sp := ev.lazy.spans[i]
		if ev.lazy.partial&f != 0 {
			// Only some members so far (NeedMembers): decode it whole
			// into a new map (the partial one may be shared by a copy of
			// the Event).
			*ev.lazyMap(f) = nil
			ev.lazy.partial &^= f
		}
		if err := ev.decodeLazy(f, ev.raw.data[sp.start:sp.end]); err != nil {
			// Not expected after the header scan's checks; the whole
			// decode decides, exactly as DecodeEvent would.
			if err := DecodeEventInto(ev, ev.raw.data); err != nil {
				ev.lazy.err = err
			}
			return ev.lazy.err
		}
		ev.lazy.pending &^= f
	}
	return nil
}

// NeedMembers is Need for an expression that reads the lazy map field f
// (one map field, not resources) only through the given top-level
// members, by name (requestParameters.instanceType,
// dig(requestParameters, "instanceType.value")): while f is not decoded
// whole, its map gets just those of keys that the record has, each decoded
// exactly as the whole decode decodes it (a key given twice keeps its
// last value), which for such an expression reads the same as the whole
// map, at the cost of the members it reads. A later Need of f decodes it
// whole. keys must not change once passed (an expression's own list):
// a second call with the same list for the same record does nothing.
func (ev *Event) NeedMembers(f Fields, keys []string) error {
	if ev.lazy.pending&f == 0 {
		return ev.lazy.err
	}
	i := bits.TrailingZeros16(uint16(f))
	if bits.OnesCount16(uint16(f)) != 1 || f == fieldResources || len(keys) == 0 {
		return ev.Need(f)
	}
	if ev.lazy.partial&f != 0 && ev.lazy.keys[i] == &keys[0] {
		return nil
	}
	sp := ev.lazy.spans[i]
	dst := ev.lazyMap(f)
	if !decodeMembersInto(dst, ev.raw.data[sp.start:sp.end], keys) {
		// A key with an escape or bytes outside ASCII (it may decode to
		// one of keys), or anything unexpected: the whole decode decides.
		return ev.Need(f)
	}
	ev.lazy.partial |= f
	ev.lazy.keys[i] = &keys[0]
	return nil
}

// lazyMap returns the map field f (one lazy map field).
func (ev *Event) lazyMap(f Fields) *map[string]any {
	switch f {
	case fieldRequestParameters:
		return &ev.RequestParameters
	case fieldResponseElements:
		return &ev.ResponseElements
	case fieldAdditionalEventData:
		return &ev.AdditionalEventData
	case fieldServiceEventDetails:
		return &ev.ServiceEventDetails
	case fieldAddendum:
		return &ev.Addendum
	case fieldEdgeDeviceDetails:
		return &ev.EdgeDeviceDetails
	case fieldInsightDetails:
		return &ev.InsightDetails
	}
	panic("cloudtrail: not a lazy map field")
}

// MemberKind is what Member found in a lazy map field.
type MemberKind uint8

// What a lazy map holds under a key, as its decode would give it.
const (
	// MemberUndecided: Member cannot tell without the decode (the field
	// is not pending, or a key or the value holds an escape or bytes
	// outside ASCII): call Need and read the map.
	MemberUndecided MemberKind = iota
	MemberMissing              // no such key (or the field is null): nil
	MemberString               // a string, returned as a view of the record
	MemberTrue                 // true
	MemberFalse                // false
	MemberOther                // null, a number, an object or a list
)

// Member reports what the lazy map field f (requestParameters, ...) would
// hold under key once decoded, without decoding it: conditions such as
// requestParameters.attribute == "userData" are decided on most records
// from the bytes, without building the map. A string is returned as a
// view of the record's bytes, valid while the record is unchanged (use it
// at once). When the key occurs more than once the last occurrence counts,
// as in the decode.
func (ev *Event) Member(f Fields, key string) (MemberKind, string) {
	if ev.lazy.pending&f == 0 || bits.OnesCount16(uint16(f)) != 1 || f == fieldResources {
		return MemberUndecided, ""
	}
	sp := ev.lazy.spans[bits.TrailingZeros16(uint16(f))]
	s := jsonscan.Scanner{Data: ev.raw.data[sp.start:sp.end]}
	if s.Lit("null") {
		return MemberMissing, ""
	}
	// The header scan checked the value: one object, valid JSON.
	if !s.Lit("{") {
		return MemberUndecided, ""
	}
	found := -1
	s.WS()
	if s.Lit("}") {
		return MemberMissing, ""
	}
	for {
		s.WS()
		start, end, flags, err := s.Str()
		if err != nil {
			return MemberUndecided, ""
		}
		if flags != 0 {
			// An escape or bytes outside ASCII: the key may decode to
			// key.
			return MemberUndecided, ""
		}
		s.WS()
		if !s.Lit(":") {
			return MemberUndecided, ""
		}
		s.WS()
		if string(s.Data[start:end]) == key {
			found = s.I
		}
		if s.Skip() != nil {
			return MemberUndecided, ""
		}
		done, err := s.Next()
		if err != nil {
			return MemberUndecided, ""
		}
		if done {
			break
		}
	}
	if found < 0 {
		return MemberMissing, ""
	}
	s.I = found
	switch {
	case s.Lit("true"):
		return MemberTrue, ""
	case s.Lit("false"):
		return MemberFalse, ""
	case s.I < len(s.Data) && s.Data[s.I] == '"':
		start, end, flags, err := s.Str()
		if err != nil || flags != 0 {
			return MemberUndecided, ""
		}
		if start == end {
			return MemberString, ""
		}
		return MemberString, unsafe.String(&s.Data[start], end-start)
	}
	return MemberOther, ""
}

// Complete decodes every field DecodeHeader left for later: ev is then
// what DecodeEvent would give.
func (ev *Event) Complete() error { return ev.Need(AllFields) }

func (ev *Event) decodeLazy(f Fields, data []byte) error {
	if f == fieldResources {
		return json.Unmarshal(data, &ev.Resources)
	}
	return decodeMapInto(ev.lazyMap(f), data)
}

// Own makes ev independent of the buffer it was decoded from: DecodeHeader
// leaves strings that are views of the record's bytes (see header.go), and
// Need decodes from those bytes later. Own copies the record once and
// points every view at the copy, so the caller may reuse its buffer. Call
// it before an Event (or a string read from it) outlives the caller's
// buffer; rules.Set.MatchHeader does for every event a rule matched.
func (ev *Event) Own() {
	if ev.raw.owned || len(ev.raw.data) == 0 {
		return
	}
	ev.moveTo(bytes.Clone(ev.raw.data))
	ev.raw.owned = true
}

// MoveTo points ev's views of its record (see Own) at data, which must be
// a copy of the record's bytes and stay unchanged for as long as ev, or a
// string read from it, is used: for a caller that keeps the records it
// reads in a buffer of its own, where Own would copy each again. An Event
// that owns its record (Own) is left as it is.
func (ev *Event) MoveTo(data []byte) {
	if ev.raw.owned || len(ev.raw.data) == 0 {
		return
	}
	if len(data) != len(ev.raw.data) {
		panic("cloudtrail: MoveTo a copy of another length")
	}
	ev.moveTo(data)
}

// moveTo is Own and MoveTo: it moves every view of ev.raw.data onto data,
// a copy of it.
func (ev *Event) moveTo(data []byte) {
	old := ev.raw.data
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(old)))
	hi := lo + uintptr(len(old))
	for _, s := range ev.stringFields() {
		if len(*s) == 0 {
			continue
		}
		p := uintptr(unsafe.Pointer(unsafe.StringData(*s)))
		if p >= lo && p < hi {
			*s = unsafe.String(&data[p-lo], len(*s))
		}
	}
	ev.raw.data = data
}

// stringFields returns every string field that DecodeHeader fills (a loop
// over them costs no call a field, as a callback did).
func (ev *Event) stringFields() [43]*string {
	u := &ev.UserIdentity
	c := &u.SessionContext
	return [...]*string{
		&ev.EventVersion, &ev.EventSource, &ev.EventName, &ev.AWSRegion, &ev.SourceIPAddress,
		&ev.UserAgent, &ev.ErrorCode, &ev.ErrorMessage, &ev.RequestID, &ev.EventID, &ev.EventType,
		&ev.APIVersion, &ev.RecipientAccountID, &ev.SharedEventID, &ev.VPCEndpointID,
		&ev.VPCEndpointAccountID, &ev.EventCategory, &ev.SessionCredentialFromConsole,
		&ev.TLSDetails.TLSVersion, &ev.TLSDetails.CipherSuite, &ev.TLSDetails.ClientProvidedHostHeader,

		&u.Type, &u.PrincipalID, &u.ARN, &u.AccountID, &u.AccessKeyID, &u.UserName, &u.InvokedBy,
		&u.CredentialID, &u.IdentityProvider, &u.OnBehalfOf.UserID, &u.OnBehalfOf.IdentityStoreARN,

		&c.SessionIssuer.Type, &c.SessionIssuer.PrincipalID, &c.SessionIssuer.ARN,
		&c.SessionIssuer.AccountID, &c.SessionIssuer.UserName, &c.WebIDFederationData.FederatedProvider,
		&c.Attributes.CreationDate, &c.Attributes.MFAAuthenticated, &c.SourceIdentity,
		&c.EC2RoleDelivery, &c.AssumedRoot,
	}
}
