package cloudtrail

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
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
// The pass first classifies the record's bytes 64 at a time (jsonscan.Mark:
// AVX2 where the CPU has it, portable Go elsewhere), so that a string's
// end is found without reading the string; then it walks the record once,
// validating as it goes, its position passed from call to call (kept in a
// register, not in a struct in memory).
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

// The scan is driven by one table per object type (objKind), built from
// the Go types' json tags when the package loads, so that it fills exactly
// the fields encoding/json would: a string field takes a string, a bool a
// bool, time.Time eventTime, a struct its object (by its own table), a map
// its object decoded at once, and the Event's free-form fields (see
// lazy.go) are only noted. A key is first compared, as `"name":`, with the
// member that usually comes next (in CloudTrail's own order, or in sorted
// order as tools that sort keys write it: four word compares, no lookup);
// else it finds its member through a small perfect hash (objKind.lookup),
// not a chain of string comparisons.

// action is what the scan does with a member's value.
type action uint8

const (
	actString    action = iota + 1 // fill a string field
	actBool                        // fill a bool field
	actTime                        // fill a time.Time field
	actObject                      // scan a struct field's object by its table
	actMap                         // decode a small map field at once
	actLazy                        // note a free-form field's place (lazy.go)
	actResources                   // check and note the resources list
	actTimestamp                   // note "@timestamp" (records shipped by Logstash)
	actCheck                       // check a string (resources' fields)
)

// member is one JSON name of an object and what its value does.
type member struct {
	// pat is `"name":`, eight bytes a word, and mask its bytes (for
	// matches); what the scan reads of every member comes first.
	pat, mask [4]uint64
	patLen    int
	// next is the index + 1 of the member that usually follows in
	// CloudTrail's own order, alt of the one that follows next most often
	// (see usualAlt), sorted the index + 1 of the next name in sorted
	// order (tools that sort keys); 0: none.
	next, alt, sorted uint8
	act               action
	lazy              Fields   // actLazy: the field
	off               uintptr  // the field's offset in its struct
	sub               *objKind // actObject: the field's table
	name              string
	words             [4]uint64 // name, eight bytes a word, zero-padded (for lookup)
}

// maxName is the longest name a table may hold (`"name":` fits four
// words).
const maxName = 29

// matches reports whether d0..d3, the 32 bytes at a key's opening quote,
// start with `"name":`, the member's key and colon as compact JSON writes
// them; the key is then exactly the name (it holds no quote nor
// backslash, so its string ends right after it).
func (m *member) matches(d0, d1, d2, d3 uint64) bool {
	x := (d0^m.pat[0])&m.mask[0] | (d1^m.pat[1])&m.mask[1]
	if m.patLen > 16 {
		// Most names are 13 bytes or shorter: their pattern fits two
		// words.
		x |= (d2^m.pat[2])&m.mask[2] | (d3^m.pat[3])&m.mask[3]
	}
	return x == 0
}

// usualNext names, per type, the member that usually follows another in
// CloudTrail's records where that is not the next field of the Go type
// (measured on the corpus); the scan checks that member's key first.
var usualNext = map[string]string{
	"Event.userAgent":          "requestParameters",
	"Event.responseElements":   "requestID",
	"Event.readOnly":           "eventType",
	"Event.eventType":          "managementEvent",
	"Event.recipientAccountId": "eventCategory",
	"Event.eventCategory":      "tlsDetails",
	"Event.@timestamp":         "eventID",
	"UserIdentity.userName":    "sessionContext",
}

// usualAlt names, per type, the member that most often follows another
// in CloudTrail's records when the one that usually follows (usualNext,
// or the next field) does not: an optional field left out, or another
// service's order (measured on the corpus; "^" is the object's first
// key). The scan checks it second.
var usualAlt = map[string]string{
	"Event.^":                     "awsRegion",
	"Event.eventVersion":          "managementEvent",
	"Event.awsRegion":             "eventCategory",
	"Event.userAgent":             "errorCode",
	"Event.responseElements":      "additionalEventData",
	"Event.additionalEventData":   "requestID",
	"Event.readOnly":              "resources",
	"Event.recipientAccountId":    "vpcEndpointId",
	"Event.vpcEndpointId":         "eventCategory",
	"Event.eventCategory":         "sessionCredentialFromConsole",
	"UserIdentity.arn":            "principalId",
	"UserIdentity.principalId":    "type",
	"UserIdentity.accountId":      "principalId",
	"UserIdentity.sessionContext": "invokedBy",
	"Resource.^":                  "accountId",
	"Resource.accountId":          "ARN",
	"Resource.type":               "ARN",
}

// objKind is the table of one object type.
type objKind struct {
	members []member
	// folded holds the lower-cased names: a key that is not one of the
	// names but matches one case-insensitively sends the record to the
	// full decode (see folds).
	folded map[string]bool
	// slots maps hash(key) to a member's index + 1 (0: no member).
	slots [256]uint8
	first uint8 // the index + 1 of the first name in sorted order
	alt   uint8 // the index + 1 of the usual first name when not the first field
	mul   [3]uint32
}

// hash mixes a key's length, first byte and last four bytes by k's
// multipliers, which newKind chose so that no two names share a slot.
func (k *objKind) hash(key []byte) uint8 {
	n := len(key)
	var tail uint32
	if n >= 4 {
		tail = binary.LittleEndian.Uint32(key[n-4:])
	} else {
		for _, c := range key {
			tail = tail<<8 | uint32(c)
		}
	}
	return uint8((uint32(n)*k.mul[0] + uint32(key[0])*k.mul[1] + tail*k.mul[2]) >> 24)
}

// lookup returns the member named exactly data[start:end], a key, or nil.
func (k *objKind) lookup(data []byte, start, end int) *member {
	n := end - start
	if n <= 0 || n > maxName {
		return nil
	}
	key := data[start:end]
	j := k.slots[k.hash(key)]
	if j == 0 {
		return nil
	}
	m := &k.members[j-1]
	if len(m.name) != n {
		return nil
	}
	if len(data)-start < 8*len(m.words) {
		if m.name == string(key) {
			return m
		}
		return nil
	}
	// Eight bytes at a time (the record goes on past the key's end; the
	// last word read may end up to 31 bytes after the key's start).
	for w := 0; w*8 < n; w++ {
		x := binary.LittleEndian.Uint64(data[start+8*w:])
		if rest := n - 8*w; rest < 8 {
			x &= 1<<(8*rest) - 1
		}
		if x != m.words[w] {
			return nil
		}
	}
	return m
}

var (
	mapType      = reflect.TypeOf(map[string]any(nil))
	resourceType = reflect.TypeOf(Resource{})
)

// The tables: the record's, and the resources' elements' (whose fields
// are only checked: resources is decoded lazily).
var (
	eventKind    = newKind(eventType, "@timestamp")
	resourceKind = newKind(resourceType)
)

// newKind builds t's table; extra names (of the record only) are
// "@timestamp".
func newKind(t reflect.Type, extra ...string) *objKind {
	k := &objKind{folded: map[string]bool{}}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := strings.Split(f.Tag.Get("json"), ",")[0]
		if name == "" {
			continue
		}
		m := member{name: name, off: f.Offset}
		switch {
		case t == resourceType && f.Type.Kind() == reflect.String:
			m.act = actCheck
		case f.Type.Kind() == reflect.String:
			m.act = actString
		case f.Type.Kind() == reflect.Bool:
			m.act = actBool
		case f.Type == timeType:
			m.act = actTime
		case f.Type == mapType && t == eventType:
			m.act, m.lazy = actLazy, FieldsOf(name)
		case f.Type == mapType:
			m.act = actMap
		case f.Type == reflect.TypeOf([]Resource(nil)) && t == eventType:
			m.act, m.lazy = actResources, fieldResources
		case f.Type.Kind() == reflect.Struct:
			m.act, m.sub = actObject, newKind(f.Type)
		default:
			panic("cloudtrail: the header scan has no way to fill " + t.Name() + "." + f.Name)
		}
		if (m.act == actLazy || m.act == actResources) && m.lazy == 0 {
			panic("cloudtrail: " + name + " is not a lazy field")
		}
		k.members = append(k.members, m)
	}
	for _, e := range extra {
		k.members = append(k.members, member{name: e, act: actTimestamp})
	}
	index := map[string]int{}
	for j, m := range k.members {
		index[m.name] = j
	}
	for j := range k.members {
		m := &k.members[j]
		if len(m.name) > maxName {
			panic("cloudtrail: field name " + m.name + " is too long for the header scan")
		}
		var b, pat, mask [32]byte
		copy(b[:], m.name)
		m.patLen = copy(pat[:], `"`+m.name+`":`)
		for i := range m.patLen {
			mask[i] = 0xff
		}
		for w := range m.words {
			m.words[w] = binary.LittleEndian.Uint64(b[8*w:])
			m.pat[w] = binary.LittleEndian.Uint64(pat[8*w:])
			m.mask[w] = binary.LittleEndian.Uint64(mask[8*w:])
		}
		if name, ok := usualNext[t.Name()+"."+m.name]; ok {
			if _, ok := index[name]; !ok {
				panic("cloudtrail: usualNext names no field " + t.Name() + "." + name)
			}
			m.next = uint8(index[name] + 1)
		} else if j+1 < len(k.members) {
			m.next = uint8(j + 2)
		}
		if name, ok := usualAlt[t.Name()+"."+m.name]; ok {
			if _, ok := index[name]; !ok {
				panic("cloudtrail: usualAlt names no field " + t.Name() + "." + name)
			}
			m.alt = uint8(index[name] + 1)
		}
		k.folded[lowerASCII(m.name)] = true
	}
	if name, ok := usualAlt[t.Name()+".^"]; ok {
		if _, ok := index[name]; !ok {
			panic("cloudtrail: usualAlt names no field " + t.Name() + "." + name)
		}
		k.alt = uint8(index[name] + 1)
	}
	names := slices.Sorted(maps.Keys(index))
	k.first = uint8(index[names[0]] + 1)
	for j, name := range names[:len(names)-1] {
		k.members[index[name]].sorted = uint8(index[names[j+1]] + 1)
	}
	// Multipliers that give every name its own slot: a few random tries
	// find them (a fixed seed: the same table every run).
	r := rand.New(rand.NewPCG(uint64(len(k.members)), 0x7261696c))
search:
	for try := 0; ; try++ {
		if try == 100000 {
			panic("cloudtrail: no perfect hash for the names of " + t.Name())
		}
		for j := range k.mul {
			k.mul[j] = r.Uint32() | 1
		}
		k.slots = [256]uint8{}
		for j, m := range k.members {
			h := k.hash([]byte(m.name))
			if k.slots[h] != 0 {
				continue search
			}
			k.slots[h] = uint8(j + 1)
		}
		return k
	}
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// headerScan is one record's header scan. Its methods take the place to
// read from and return the place after what they read, and take the
// record's marks (jsonscan.Mark; nil for a record too long for the
// caller's buffer) as an argument: kept out of the struct, whose strings
// the Event keeps, a buffer on the caller's stack stays there.
type headerScan struct {
	data []byte
	ev   *Event
	// ts is the place of the last "@timestamp" string (end 0: none);
	// tsOdd is set when a @timestamp value is not a plain string.
	ts    struct{ start, end int }
	tsOdd bool
}

// scanHeader fills ev from data (ev must be zero), all but the lazy fields,
// whose places it notes (see lazy.go), and validates that data is one JSON
// object. It returns jsonscan.ErrSyntax for invalid JSON and errIrregular when the
// record needs the lenient decoder or holds a key that encoding/json would
// match to a field case-insensitively; in both cases the caller falls back
// to the full decode, which reports or coerces exactly as before.
func scanHeader(ev *Event, data []byte) (headerScan, error) {
	var buf jsonscan.MarkBuf
	h := headerScan{data: data, ev: ev}
	err := h.scan(jsonscan.Mark(data, buf[:]))
	return h, err
}

func (h *headerScan) scan(m []uint64) error {
	data := h.data
	i := jsonscan.SkipWS(data, 0)
	if i >= len(data) || data[i] != '{' {
		return jsonscan.ErrSyntax
	}
	i, err := h.object(m, i, eventKind, unsafe.Pointer(h.ev), 0)
	if err != nil {
		return err
	}
	if jsonscan.SkipWS(data, i) != len(data) {
		return jsonscan.ErrSyntax
	}
	return nil
}

// object scans the object at data[i], nested in depth containers, into
// base, a pointer to the struct of k's type, member by member: a known key
// is filled by its action, an unknown one skipped (after checking that it
// does not fold to a known one). A value that is not an object is
// irregular, except null, which leaves the destination as it is (as
// encoding/json does).
func (h *headerScan) object(m []uint64, i int, k *objKind, base unsafe.Pointer, depth int) (int, error) {
	data := h.data
	if i >= len(data) {
		return i, jsonscan.ErrSyntax
	}
	if data[i] != '{' {
		return h.null(i)
	}
	depth++
	i++
	if i < len(data) && data[i] <= ' ' {
		i = jsonscan.SkipWS(data, i)
	}
	if i < len(data) && data[i] == '}' {
		return i + 1, nil
	}
	// The member expected first: the first field, the usual first
	// name, or the first name in sorted order.
	next, alt, sorted := uint8(1), k.alt, k.first
	for {
		var mem *member
		odd := false
		keyStart := i
		// The key: usually the one that follows the last in CloudTrail's
		// order (or the alternative, or the next in sorted order),
		// written compactly, which matches costs no lookup.
		{
			var d0, d1, d2, d3 uint64
			if len(data)-i >= 32 {
				d := data[i : i+32]
				d0, d1 = binary.LittleEndian.Uint64(d), binary.LittleEndian.Uint64(d[8:])
				d2, d3 = binary.LittleEndian.Uint64(d[16:]), binary.LittleEndian.Uint64(d[24:])
			} else {
				// The record's last keys: from a copy padded with zero
				// bytes, which no pattern holds.
				var pad [32]byte
				copy(pad[:], data[i:])
				d0, d1 = binary.LittleEndian.Uint64(pad[:]), binary.LittleEndian.Uint64(pad[8:])
				d2, d3 = binary.LittleEndian.Uint64(pad[16:]), binary.LittleEndian.Uint64(pad[24:])
			}
			if next != 0 {
				if mem = &k.members[next-1]; mem.matches(d0, d1, d2, d3) {
					i += mem.patLen
					goto value
				}
			}
			if alt != 0 {
				if mem = &k.members[alt-1]; mem.matches(d0, d1, d2, d3) {
					i += mem.patLen
					goto value
				}
			}
			if sorted != 0 {
				if mem = &k.members[sorted-1]; mem.matches(d0, d1, d2, d3) {
					i += mem.patLen
					goto value
				}
			}
			mem = nil
		}
		// Else read from the marks (see jsonscan.PlainLen) and found
		// in the table.
		if i < len(data) && data[i] == '"' {
			if n := jsonscan.PlainLen(m, uint(i+1)); n >= 0 {
				mem = k.lookup(data, i+1, i+1+n)
				i += n + 2
				goto colon
			}
		}
		{
			end, flags, err := jsonscan.StrAt(data, m, i)
			if err != nil {
				return i, err
			}
			odd = flags != 0
			key := data[i+1 : end]
			if flags&jsonscan.StrEscaped != 0 {
				var name string
				if json.Unmarshal(data[i:end+1], &name) != nil {
					return i, jsonscan.ErrSyntax
				}
				key = []byte(name)
			}
			mem = k.lookup(key, 0, len(key))
			i = end + 1
		}
	colon:
		if i < len(data) && data[i] <= ' ' {
			i = jsonscan.SkipWS(data, i)
		}
		if i >= len(data) || data[i] != ':' {
			return i, jsonscan.ErrSyntax
		}
		i++
	value:
		if i < len(data) && data[i] <= ' ' {
			i = jsonscan.SkipWS(data, i)
		}
		var err error
		if mem != nil {
			next, alt, sorted = mem.next, mem.alt, mem.sorted
			if mem.act == actString && i < len(data) && data[i] == '"' {
				// The usual string value (see stringInto), here to
				// save two calls.
				if n := jsonscan.PlainLen(m, uint(i+1)); n > 0 {
					*(*string)(unsafe.Add(base, mem.off)) = unsafe.String(&data[i+1], n)
					i += n + 2
					goto after
				}
			}
			i, err = h.member(m, i, mem, base, depth, odd)
		} else if h.folds(m, keyStart, k) {
			return i, errIrregular
		} else {
			i, err = jsonscan.SkipAt(data, m, i, depth, false)
		}
		if err != nil {
			return i, err
		}
	after:
		if i < len(data) && data[i] <= ' ' {
			i = jsonscan.SkipWS(data, i)
		}
		if i >= len(data) {
			return i, jsonscan.ErrSyntax
		}
		switch data[i] {
		case ',':
			i++
			if i < len(data) && data[i] <= ' ' {
				i = jsonscan.SkipWS(data, i)
			}
		case '}':
			return i + 1, nil
		default:
			return i, jsonscan.ErrSyntax
		}
	}
}

// member reads the value at data[i] of mem, a member of the struct at
// base; odd is set when the key held escapes or bytes outside ASCII.
func (h *headerScan) member(m []uint64, i int, mem *member, base unsafe.Pointer, depth int, odd bool) (int, error) {
	switch mem.act {
	case actString:
		return h.stringInto(m, i, (*string)(unsafe.Add(base, mem.off)))
	case actObject:
		return h.object(m, i, mem.sub, unsafe.Add(base, mem.off), depth)
	case actBool:
		return h.boolInto(i, (*bool)(unsafe.Add(base, mem.off)))
	case actTime:
		return h.timeInto(m, i, (*time.Time)(unsafe.Add(base, mem.off)), depth)
	case actLazy:
		return h.lazyMap(m, i, mem.lazy, depth)
	case actResources:
		return h.lazyResources(m, i, depth)
	case actMap:
		return h.mapInto(m, i, (*map[string]any)(unsafe.Add(base, mem.off)), depth)
	case actCheck:
		return h.checkString(m, i)
	case actTimestamp:
		return h.timestamp(m, i, odd, depth)
	}
	panic("cloudtrail: header scan action " + strconv.Itoa(int(mem.act)))
}

// null reads a null, which leaves a field as it is (as encoding/json
// does); any other value is irregular.
func (h *headerScan) null(i int) (int, error) {
	if isNull(h.data, i) {
		return i + 4, nil
	}
	return i, errIrregular
}

func isNull(data []byte, i int) bool {
	return len(data)-i >= 4 && string(data[i:i+4]) == "null"
}

// stringInto reads a string (or null, which leaves dst as it is, as
// encoding/json does) into dst; another type is irregular. A string with
// no escapes and valid UTF-8 becomes a view of the record (see the top of
// this file); any other is decoded by encoding/json, which unescapes it
// and replaces invalid UTF-8.
func (h *headerScan) stringInto(m []uint64, i int, dst *string) (int, error) {
	data := h.data
	if i >= len(data) || data[i] != '"' {
		return h.null(i)
	}
	if n := jsonscan.PlainLen(m, uint(i+1)); n > 0 {
		// The usual string: no escape, all ASCII, not empty.
		*dst = unsafe.String(&data[i+1], n)
		return i + n + 2, nil
	}
	end, flags, err := jsonscan.StrAt(data, m, i)
	if err != nil {
		return i, err
	}
	content := data[i+1 : end]
	if flags&jsonscan.StrEscaped != 0 || (flags&jsonscan.StrNonASCII != 0 && !utf8.Valid(content)) {
		return end + 1, json.Unmarshal(data[i:end+1], dst)
	}
	if len(content) == 0 {
		*dst = ""
	} else {
		*dst = unsafe.String(&content[0], len(content))
	}
	return end + 1, nil
}

// checkString checks that the value is a string or null, as a string
// field needs; another type is irregular.
func (h *headerScan) checkString(m []uint64, i int) (int, error) {
	if i >= len(h.data) || h.data[i] != '"' {
		return h.null(i)
	}
	end, _, err := jsonscan.StrAt(h.data, m, i)
	return end + 1, err
}

func (h *headerScan) boolInto(i int, dst *bool) (int, error) {
	data := h.data
	switch {
	case len(data)-i >= 4 && string(data[i:i+4]) == "true":
		*dst = true
		return i + 4, nil
	case len(data)-i >= 5 && string(data[i:i+5]) == "false":
		*dst = false
		return i + 5, nil
	}
	return h.null(i)
}

// timeInto reads eventTime as time.Time's UnmarshalJSON would: null leaves
// it as it is; CloudTrail's own shape (2024-05-01T08:00:00Z) is parsed
// here without allocating; anything else goes to encoding/json, and a
// value it rejects is irregular (the lenient decoder drops it).
func (h *headerScan) timeInto(m []uint64, i int, dst *time.Time, depth int) (int, error) {
	if isNull(h.data, i) {
		return i + 4, nil
	}
	// CloudTrail's own shape: parseTrailTime checks every byte between
	// the quotes, so this is a plain JSON string and needs no scan.
	if len(h.data)-i >= 22 && h.data[i] == '"' && h.data[i+21] == '"' {
		if t, ok := parseTrailTime(h.data[i : i+22]); ok {
			*dst = t
			return i + 22, nil
		}
	}
	start := i
	i, err := jsonscan.SkipAt(h.data, m, i, depth, false)
	if err != nil {
		return i, err
	}
	raw := h.data[start:i]
	if t, ok := parseTrailTime(raw); ok {
		*dst = t
		return i, nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return i, errIrregular
	}
	return i, nil
}

// mapInto decodes a small, rare map (userIdentity.inScopeOf,
// webIdFederationData.attributes) with encoding/json at once: an object
// merges into dst, null makes it nil, as in the full decode; another type
// is irregular. Its numbers are checked as encoding/json converts them to
// float64 (an out-of-range one would send the whole decode to the
// lenient path).
func (h *headerScan) mapInto(m []uint64, i int, dst *map[string]any, depth int) (int, error) {
	start := i
	i, err := jsonscan.SkipAt(h.data, m, i, depth, true)
	if err != nil {
		return i, err
	}
	if c := h.data[start]; c != '{' && c != 'n' {
		return i, errIrregular
	}
	if err := json.Unmarshal(h.data[start:i], dst); err != nil {
		return i, errIrregular
	}
	return i, nil
}

// lazyMap notes where a map field's value is, for Need. An object or null
// decodes into a map[string]any whatever it holds (its numbers are
// checked as in mapInto); another type is irregular, and so is a field
// given twice (the full decode would merge the two objects).
func (h *headerScan) lazyMap(m []uint64, i int, f Fields, depth int) (int, error) {
	start := i
	i, err := jsonscan.SkipAt(h.data, m, i, depth, true)
	if err != nil {
		return i, err
	}
	if c := h.data[start]; (c != '{' && c != 'n') || h.ev.lazy.pending&f != 0 {
		return i, errIrregular
	}
	h.ev.setSpan(f, start, i)
	return i, nil
}

// lazyResources checks that resources is a list of objects (or null) whose
// known keys hold strings (or null), so that Need's decode cannot fail, and
// notes where it is.
func (h *headerScan) lazyResources(m []uint64, i int, depth int) (int, error) {
	data := h.data
	start := i
	if h.ev.lazy.pending&fieldResources != 0 {
		return i, errIrregular
	}
	if isNull(data, i) {
		h.ev.setSpan(fieldResources, start, i+4)
		return i + 4, nil
	}
	if i >= len(data) || data[i] != '[' {
		return i, errIrregular
	}
	i = jsonscan.SkipWS(data, i+1)
	if i < len(data) && data[i] == ']' {
		i++
	} else {
		for {
			i = jsonscan.SkipWS(data, i)
			if i < len(data) && data[i] != '{' && data[i] != 'n' {
				return i, errIrregular
			}
			var err error
			if i, err = h.object(m, i, resourceKind, nil, depth+1); err != nil {
				return i, err
			}
			i = jsonscan.SkipWS(data, i)
			if i >= len(data) {
				return i, jsonscan.ErrSyntax
			}
			if data[i] == ']' {
				i++
				break
			}
			if data[i] != ',' {
				return i, jsonscan.ErrSyntax
			}
			i++
		}
	}
	h.ev.setSpan(fieldResources, start, i)
	return i, nil
}

// timestamp notes a top-level "@timestamp" string, which records shipped
// through Logstash carry instead of eventTime (see fillTimeFromShipper).
func (h *headerScan) timestamp(m []uint64, i int, escapedKey bool, depth int) (int, error) {
	start := i
	i, err := jsonscan.SkipAt(h.data, m, i, depth, false)
	if err != nil {
		return i, err
	}
	if h.data[start] == '"' && !escapedKey {
		h.ts.start, h.ts.end = start, i
	} else {
		h.tsOdd = true
	}
	return i, nil
}

// folds reports whether encoding/json could match the key whose opening
// quote is data[i], which is not one of k's names exactly, to one of them
// anyway: it compares names case-insensitively, with Unicode folding (K
// and the Kelvin sign), so a key with bytes outside ASCII or escapes is
// taken to fold.
func (h *headerScan) folds(m []uint64, i int, k *objKind) bool {
	end, flags, err := jsonscan.StrAt(h.data, m, i)
	if err != nil || flags != 0 {
		return true
	}
	key := h.data[i+1 : end]
	var buf [maxName]byte
	if len(key) > len(buf) {
		return false
	}
	for i, c := range key {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return k.folded[string(buf[:len(key)])]
}

// parseTrailTime parses exactly `"YYYY-MM-DDTHH:MM:SSZ"` (quotes included),
// with the range checks of RFC 3339; it reports false for anything else,
// which the caller leaves to time.Time's own parser. Every record has one:
// the twenty bytes are read as three words, their separators and digits
// checked a word at a time.
func parseTrailTime(b []byte) (time.Time, bool) {
	if len(b) != 22 || b[0] != '"' || b[21] != '"' {
		return time.Time{}, false
	}
	w0 := binary.LittleEndian.Uint64(b[1:])          // YYYY-MM-
	w1 := binary.LittleEndian.Uint64(b[9:])          // DDTHH:MM
	w2 := uint64(binary.LittleEndian.Uint32(b[17:])) // :SSZ
	const (
		sep0 = '-'<<32 | '-'<<56
		sep1 = 'T'<<16 | ':'<<40
		sep2 = ':' | 'Z'<<24
		dig0 = 0x00ffff00ffffffff // the digits' bytes
		dig1 = 0xffff00ffff00ffff
		dig2 = 0x00ffff00
	)
	if w0&^dig0 != sep0 || w1&^dig1 != sep1 || w2&^dig2 != sep2 {
		return time.Time{}, false
	}
	d0, ok0 := digitBytes(w0, dig0)
	d1, ok1 := digitBytes(w1, dig1)
	d2, ok2 := digitBytes(w2, dig2)
	if !(ok0 && ok1 && ok2) {
		return time.Time{}, false
	}
	two := func(d uint64, k uint) int { return int(d>>(8*k)&0xff)*10 + int(d>>(8*k+8)&0xff) }
	year, month, day := two(d0, 0)*100+two(d0, 2), two(d0, 5), two(d1, 0)
	hour, minute, sec := two(d1, 3), two(d1, 6), two(d2, 1)
	if month < 1 || month > 12 || day < 1 || day > daysIn(time.Month(month), year) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	return time.Unix(unixDays(year, month, day)*86400+int64(hour*3600+minute*60+sec), 0).UTC(), true
}

// digitBytes checks that the bytes of w that mask selects (0xff bytes) are
// ASCII digits and returns them as their values (0-9 a byte, the other
// bytes 0). No byte's test borrows from or carries into its neighbour.
func digitBytes(w, mask uint64) (uint64, bool) {
	const lsb = 0x0101010101010101
	x := w & mask
	hi := mask & (0x80 * lsb)
	if x&hi != 0 {
		return 0, false // a byte >= 0x80
	}
	// (x|0x80)-'0' keeps its top bit iff x >= '0'; x+0x46 gets one iff
	// x > '9' (x < 0x80: no carry out of the byte).
	if ((x|hi)-(mask&('0'*lsb)))&hi != hi || (x+(mask&(0x46*lsb)))&hi != 0 {
		return 0, false
	}
	return x - (mask & ('0' * lsb)), true
}

// unixDays returns the days from 1970-01-01 to the given date of the
// proleptic Gregorian calendar (month 1-12), as time.Date counts them
// (H. Hinnant's days_from_civil).
func unixDays(year, month, day int) int64 {
	y := int64(year)
	if month <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	m := int64(month)
	if m > 2 {
		m -= 3
	} else {
		m += 9
	}
	doy := (153*m+2)/5 + int64(day) - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
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
	h, err := scanHeader(ev, data)
	if err != nil {
		// Invalid JSON or an irregular record: the full decoder reports or
		// coerces it exactly as it always does.
		return true, DecodeEventInto(ev, raw)
	}
	if ev.EventVersion == "" && ev.EventID == "" {
		return true, DecodeEventInto(ev, raw)
	}
	if ev.EventTime.IsZero() {
		switch {
		case h.tsOdd:
			fillTimeFromShipper(ev, data)
		case h.ts.end > 0:
			if t, ok := shipperTime(data[h.ts.start:h.ts.end]); ok {
				ev.EventTime = t
			}
		}
	}
	return false, nil
}

// shipperTime parses a "@timestamp" string (quotes included) as RFC 3339:
// a plain one (no escape, all ASCII: Logstash writes them so) as it is,
// any other once encoding/json has unquoted it.
func shipperTime(quoted []byte) (time.Time, bool) {
	var ts string
	if end, flags, err := jsonscan.StrAt(quoted, nil, 0); err == nil && flags == 0 && end == len(quoted)-1 {
		ts = unsafe.String(unsafe.SliceData(quoted[1:]), len(quoted)-2)
	} else {
		var ok bool
		if ts, ok = unquoteJSON(quoted); !ok {
			return time.Time{}, false
		}
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	return t, err == nil
}

// unquoteJSON is encoding/json's decode of a JSON string (its own variable:
// taking a local's address would move it to the heap on every call of the
// caller).
func unquoteJSON(quoted []byte) (string, bool) {
	var s string
	return s, json.Unmarshal(quoted, &s) == nil
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
