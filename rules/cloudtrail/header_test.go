package cloudtrail

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/internal/corpus"
	"github.com/trailwatch/trailwatch/internal/jsonscan"
)

// headerDiff decodes raw both ways, DecodeHeader (then Own, with raw
// overwritten, then Complete) and DecodeEvent, the encoding/json reference,
// and returns every difference: in the outcome, in any field the header
// fills (before Need), in a lazy field that is not left zero before Need,
// and in the whole Event after Complete, compared with reflect.DeepEqual
// (so a time.Time must match in location too). scanned reports whether
// the header scan took the record (no fall back to the whole decode).
func headerDiff(raw []byte) (diffs []string, scanned bool, err error) {
	buf := append([]byte(nil), raw...)
	var fast Event
	complete, ferr := DecodeHeader(&fast, buf)
	full, serr := DecodeEvent(raw)
	if (ferr != nil) != (serr != nil) {
		return nil, !complete, fmt.Errorf("DecodeHeader error %v, DecodeEvent error %v", ferr, serr)
	}
	if serr != nil {
		return nil, !complete, nil
	}
	// Before Need: the header's fields as the full decode's, the lazy ones
	// zero.
	lazy := map[string]bool{}
	for _, n := range lazyNames {
		lazy[n] = true
	}
	fv, rv := reflect.ValueOf(fast), reflect.ValueOf(*full)
	for i := 0; i < fv.NumField(); i++ {
		f := fv.Type().Field(i)
		if !f.IsExported() {
			continue
		}
		name := f.Tag.Get("json")
		got, want := fv.Field(i).Interface(), rv.Field(i).Interface()
		if complete || !lazy[name] {
			if !reflect.DeepEqual(got, want) {
				diffs = append(diffs, fmt.Sprintf("%s: header %#v, encoding/json %#v", name, got, want))
			}
		} else if !fv.Field(i).IsZero() {
			diffs = append(diffs, fmt.Sprintf("%s: %#v before Need, want it left zero", name, got))
		}
	}
	if !complete {
		diffs = append(diffs, memberDiff(&fast, full)...)
	}
	// After Own the caller's buffer may change; after Complete the event
	// is the whole decode's.
	fast.Own()
	for i := range buf {
		buf[i] = 'x'
	}
	if err := fast.Complete(); err != nil {
		return diffs, !complete, fmt.Errorf("Complete: %v", err)
	}
	if got, want := exportedFields(&fast), exportedFields(full); !reflect.DeepEqual(got, want) {
		diffs = append(diffs, fmt.Sprintf("after Complete:\n header %#v\n encoding/json %#v", got, want))
	}
	return diffs, !complete, nil
}

// memberDiff checks Member, on fast (from DecodeHeader, before Need), for
// every key of every lazy map of full (the whole decode), and a key that
// none holds, against what the decoded map holds.
func memberDiff(fast, full *Event) (diffs []string) {
	fv := reflect.ValueOf(full).Elem()
	for i := 0; i < fv.NumField(); i++ {
		name := fv.Type().Field(i).Tag.Get("json")
		f := FieldsOf(name)
		if f == 0 || f == fieldResources || !fv.Type().Field(i).IsExported() {
			continue
		}
		m := fv.Field(i).Interface().(map[string]any)
		keys := []string{"no such key \u00e9"}
		for k := range m {
			keys = append(keys, k)
		}
		for _, k := range keys {
			kind, str := fast.Member(f, k)
			v, ok := m[k]
			var want MemberKind
			switch x := v.(type) {
			case string:
				want = MemberString
				if kind == MemberString && str != x {
					diffs = append(diffs, fmt.Sprintf("Member(%s, %q) = %q, decoded %q", name, k, str, x))
				}
			case bool:
				want = MemberFalse
				if x {
					want = MemberTrue
				}
			default:
				want = MemberOther
				if !ok {
					want = MemberMissing
				}
			}
			if kind != MemberUndecided && kind != want {
				diffs = append(diffs, fmt.Sprintf("Member(%s, %q) is kind %d, decoded %#v (kind %d)", name, k, kind, v, want))
			}
		}
	}
	return diffs
}

// exportedFields is ev without its unexported state.
func exportedFields(ev *Event) Event {
	e := *ev
	e.raw, e.lazy = rawRecord{}, lazyState{}
	return e
}

func checkHeader(t *testing.T, place string, raw []byte) {
	t.Helper()
	diffs, _, err := headerDiff(raw)
	if err != nil {
		t.Errorf("%s: %v", place, err)
	}
	for _, d := range diffs {
		t.Errorf("%s: %s", place, d)
	}
}

// TestHeaderFieldsAgreeOnCorpus checks, field by field, that the header
// scan fills every header field of every real record exactly as
// encoding/json does.
func TestHeaderFieldsAgreeOnCorpus(t *testing.T) {
	forEachClassifier(t, func(t *testing.T) {
		n := 0
		corpus.ForEachRecord(t, func(place string, line []byte) {
			n++
			checkHeader(t, place, line)
		})
		if n == 0 {
			t.Fatal("no records compared")
		}
	})
}

// forEachClassifier runs f once per way jsonscan.Mark classifies bytes on
// this machine (AVX2 where the CPU has it, and the portable Go that other
// CPUs run), so that every test of the header checks both.
func forEachClassifier(t *testing.T, f func(t *testing.T)) {
	for _, name := range jsonscan.Classifiers() {
		prev := jsonscan.UseClassifier(name)
		t.Run(name, f)
		jsonscan.UseClassifier(prev)
	}
}

// TestHeaderStringPlaces checks strings that end at every place around a
// 64-byte block's edge (where the marks of two blocks meet), with and
// without escapes, control and non-ASCII bytes, against encoding/json.
func TestHeaderStringPlaces(t *testing.T) {
	forEachClassifier(t, func(t *testing.T) {
		for pad := 0; pad < 70; pad++ {
			for _, v := range []string{
				strings.Repeat("u", 62), strings.Repeat("u", 63), strings.Repeat("u", 64), strings.Repeat("u", 65),
				strings.Repeat("u", 61) + "\u00e9", strings.Repeat("u", 60) + "\"", strings.Repeat("u", 61) + "\u00e9z",
				strings.Repeat("u", 59) + "\\\\", "", "é", strings.Repeat("é", 40), "a\tb", "\u0041",
			} {
				for _, bad := range []string{"", "\x01", "\xff"} {
					rec := fmt.Sprintf(`{"eventVersion":"1.08","x":"%s","userAgent":"%s%s","eventName":"%s","readOnly":true}`,
						strings.Repeat("p", pad), v, bad, v)
					checkHeader(t, fmt.Sprintf("pad %d value %q%q", pad, v, bad), []byte(rec))
				}
			}
		}
	})
}

func TestHeaderEdgeCases(t *testing.T) {
	cases := []struct {
		name string
		rec  string
		// fallback: the scan must give up (the full decoder decides).
		fallback bool
	}{
		{"plain", `{"eventVersion":"1.08","eventName":"ConsoleLogin","eventTime":"2024-02-29T23:59:59Z"}`, false},
		// Member (memberDiff) on lazy maps: the last of duplicate keys,
		// escaped keys and values, bytes outside ASCII, white space.
		{"map members", `{"eventVersion":"1.08","requestParameters": { "a" : "x" , "b":true,"a":"y","c":{"a":"z"},"d":[1],"e":null,"f":false,"g":""},"responseElements":{"\u0061":"q","k\u00e9":1,"a":"r","v":"caf\u00e9","w":"é","x":"\n","y":"ÿ"}}`, false},
		{"map member last wins over a string", `{"eventVersion":"1.08","requestParameters":{"a":"x","a":false},"additionalEventData":null,"addendum":{}}`, false},
		{"escaped value", `{"eventVersion":"1.08","eventName":"Console\u004cogin\n"}`, false},
		{"invalid UTF-8 is replaced", "{\"eventVersion\":\"1.08\",\"eventName\":\"Console\xffLogin\"}", false},
		{"valid UTF-8 kept", `{"eventVersion":"1.08","userAgent":"café ☕ 𝄞"}`, false},
		{"long strings cross words", `{"eventVersion":"1.08","userAgent":"` + strings.Repeat("abcdefg\\\"", 9) + `"}`, false},
		{"null keeps an earlier value", `{"eventVersion":"1.08","eventName":"A","eventName":null}`, false},
		{"false after true", `{"eventVersion":"1.08","readOnly":true,"readOnly":false}`, false},
		{"null time keeps an earlier time", `{"eventVersion":"1.08","eventTime":"2024-05-01T08:00:00Z","eventTime":null}`, false},
		{"fractional time", `{"eventVersion":"1.08","eventTime":"2024-05-01T08:00:00.123+02:00"}`, false},
		{"userIdentity twice merges", `{"eventVersion":"1.08","userIdentity":{"type":"Root"},"userIdentity":{"arn":"a"}}`, false},
		{"deep nesting", `{"eventVersion":"1.08","x":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`, false},
		{"key in another case", `{"eventVersion":"1.08","EventName":"ConsoleLogin"}`, true},
		{"identity key in another case", `{"eventVersion":"1.08","userIdentity":{"TYPE":"Root"}}`, true},
		{"userIdentity in another case", `{"eventVersion":"1.08","UserIdentity":{"type":"Root"}}`, true},
		{"Kelvin sign key", "{\"eventVersion\":\"1.08\",\"userIdentity\":{\"accessKeyId\":\"a\",\"access\u212aeyId\":\"b\"}}", true},
		{"escaped key", `{"eventVersion":"1.08","event\u004eame":"ConsoleLogin"}`, false},
		{"number for a string", `{"eventVersion":"1.08","errorCode":5}`, true},
		{"day out of range", `{"eventVersion":"1.08","eventTime":"2023-02-29T00:00:00Z"}`, true},
		{"too deep", `{"eventVersion":"1.08","x":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`, true},
		// Lazy fields: noted by the scan, decoded by Need.
		{"lazy maps", `{"eventVersion":"1.08","requestParameters":{"a":[1,2.5,{"b":null}],"c":"\u00e9"},"responseElements":null,"additionalEventData":{},"serviceEventDetails":{"x":true},"addendum":{"y":1},"edgeDeviceDetails":{"z":"w"},"insightDetails":{"q":[]}}`, false},
		{"resources", `{"eventVersion":"1.08","resources":[{"ARN":"a","accountId":"1","type":"t"},null,{"other":5}]}`, false},
		{"resources null", `{"eventVersion":"1.08","resources":null}`, false},
		{"resources empty", `{"eventVersion":"1.08","resources":[]}`, false},
		{"resources not a list", `{"eventVersion":"1.08","resources":{"ARN":"a"}}`, true},
		{"resource with a number", `{"eventVersion":"1.08","resources":[{"ARN":5}]}`, true},
		{"resource element a string", `{"eventVersion":"1.08","resources":["a"]}`, true},
		{"resource key in another case", `{"eventVersion":"1.08","resources":[{"arn":"a"}]}`, true},
		{"map as a string", `{"eventVersion":"1.08","requestParameters":"{\"a\":1}"}`, true},
		{"map twice", `{"eventVersion":"1.08","requestParameters":{"a":1},"requestParameters":{"b":2}}`, true},
		{"map in another case", `{"eventVersion":"1.08","RequestParameters":{"a":1}}`, true},
		{"number out of range in a map", `{"eventVersion":"1.08","eventID":"e","requestParameters":{"a":1e400}}`, true},
		{"long integer in a map", `{"eventVersion":"1.08","requestParameters":{"a":` + strings.Repeat("9", 310) + `}}`, true},
		{"number out of range elsewhere", `{"eventVersion":"1.08","x":{"a":1e400}}`, false},
		{"small exponent in a map", `{"eventVersion":"1.08","requestParameters":{"a":1e300,"b":-2E-5}}`, false},
		// The rest of userIdentity and tlsDetails are scanned whole.
		{"session context", `{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"p","arn":"a","accountId":"1","userName":"u"},"webIdFederationData":{"federatedProvider":"f","attributes":{"k":"v"}},"attributes":{"creationDate":"d","mfaAuthenticated":"false"},"sourceIdentity":"s","ec2RoleDelivery":"2.0","assumedRoot":"true"},"onBehalfOf":{"userId":"u","identityStoreArn":"i"},"inScopeOf":{"a":1}},"tlsDetails":{"tlsVersion":"TLSv1.2","cipherSuite":"c","clientProvidedHostHeader":"h"}}`, false},
		{"session context twice merges", `{"eventVersion":"1.08","userIdentity":{"sessionContext":{"sourceIdentity":"a"},"sessionContext":{"attributes":{"mfaAuthenticated":"true"}}}}`, false},
		{"inScopeOf twice merges", `{"eventVersion":"1.08","userIdentity":{"inScopeOf":{"a":1},"inScopeOf":{"b":2}}}`, false},
		{"inScopeOf null", `{"eventVersion":"1.08","userIdentity":{"inScopeOf":{"a":1},"inScopeOf":null}}`, false},
		{"mfaAuthenticated as a bool", `{"eventVersion":"1.08","userIdentity":{"sessionContext":{"attributes":{"mfaAuthenticated":false}}}}`, true},
		{"sessionContext as a string", `{"eventVersion":"1.08","userIdentity":{"sessionContext":"x"}}`, true},
		{"issuer key in another case", `{"eventVersion":"1.08","userIdentity":{"sessionContext":{"sessionIssuer":{"ARN":"a"}}}}`, true},
		{"tlsDetails null", `{"eventVersion":"1.08","tlsDetails":null}`, false},
		{"tlsDetails a list", `{"eventVersion":"1.08","tlsDetails":[]}`, true},
		// Records shipped through Logstash.
		{"@timestamp", `{"eventVersion":"1.08","@timestamp":"2024-05-01T08:00:00.123Z"}`, false},
		{"@timestamp escaped", `{"eventVersion":"1.08","@timestamp":"2024-05-01T08:00:00\u002E5Z"}`, false},
		{"@timestamp key escaped", `{"eventVersion":"1.08","\u0040timestamp":"2024-05-01T08:00:00Z"}`, false},
		{"@timestamp a number", `{"eventVersion":"1.08","@timestamp":5,"@timestamp":"2024-05-01T08:00:00Z"}`, false},
		{"@timestamp with eventTime", `{"eventVersion":"1.08","eventTime":"2024-05-01T08:00:00Z","@timestamp":"2025-01-01T00:00:00Z"}`, false},
		{"@timestamp in another case", `{"eventVersion":"1.08","@Timestamp":"2024-05-01T08:00:00Z"}`, true},
		{"no eventVersion nor eventID", `{"eventName":"x","requestParameters":{"a":1}}`, true},
		// Keys in CloudTrail's order, in sorted order, in neither; keys
		// that start like the expected one; white space around colons;
		// the record's end within 32 bytes of a key.
		{"CloudTrail order", `{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","principalId":"P","arn":"a","accountId":"1","accessKeyId":"K","userName":"u"},"eventTime":"2024-05-01T08:00:00Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","sourceIPAddress":"1.2.3.4","userAgent":"ua","requestParameters":{"bucketName":"b"},"responseElements":null,"requestID":"r","eventID":"e","readOnly":true,"eventType":"AwsApiCall","managementEvent":false,"recipientAccountId":"1","eventCategory":"Data","tlsDetails":{"tlsVersion":"TLSv1.3","cipherSuite":"c","clientProvidedHostHeader":"h"}}`, false},
		{"sorted order", `{"awsRegion":"us-east-1","errorCode":"AccessDenied","errorMessage":"no","eventCategory":"Management","eventID":"e","eventName":"n","eventSource":"s","eventTime":"2024-05-01T08:00:00Z","eventType":"AwsApiCall","eventVersion":"1.08","managementEvent":true,"readOnly":false,"recipientAccountId":"1","requestID":"r","requestParameters":{"a":1},"responseElements":null,"sourceIPAddress":"1.2.3.4","userAgent":"ua","userIdentity":{"accessKeyId":"K","accountId":"1","arn":"a","principalId":"P","type":"IAMUser","userName":"u"}}`, false},
		{"keys that start like the expected", `{"eventVersion":"1.08","userIdentity":{"typeX":"a","type":"Root","principalIdentity":"b"},"eventTimes":"x","eventTime":"2024-05-01T08:00:00Z","eventSourceX":1}`, false},
		{"spaces around colons", `{"eventVersion" : "1.08", "userIdentity" :{"type"	:"Root"} , "eventTime":` + "\n" + `"2024-05-01T08:00:00Z" }`, false},
		{"short record", `{"eventVersion":"1"}`, false},
		{"long key at the end", `{"eventVersion":"1","sessionCredentialFromConsole"`, true},
		{"long key near the end", `{"eventVersion":"1","sessionCredentialFromConsole":1`, true},
		{"long key at the end, sorted", `{"eventID":"e","sessionCredentialFromConsole"`, true},
		{"record ends after keys", `{"eventID":"e","eventVersion":"1.08","readOnly":true}`, false},
		{"long record scanned byte by byte", `{"eventVersion":"1.08","eventName":"x","requestParameters":{"a":"` + strings.Repeat("b", 5000) + `"},"userAgent":"` + strings.Repeat("c", 70) + `é"}`, false},
		{"long invalid record", `{"eventVersion":"1.08","requestParameters":{"a":"` + strings.Repeat("b", 5000) + "\x01" + `"}}`, true},
	}
	forEachClassifier(t, func(t *testing.T) {
		for _, tt := range cases {
			t.Run(tt.name, func(t *testing.T) {
				_, scanned, _ := headerDiff([]byte(tt.rec))
				if got, want := !scanned, tt.fallback; got != want {
					t.Errorf("fell back to the full decode: got %v, want %v", got, want)
				}
				checkHeader(t, tt.name, []byte(tt.rec))
			})
		}
	})
}

// TestParseTrailTime checks the allocation-free eventTime parser against
// time.Time's own JSON decoding.
func TestParseTrailTime(t *testing.T) {
	for _, s := range []string{
		`"2024-05-01T08:00:00Z"`, `"2024-02-29T23:59:59Z"`, `"2000-02-29T00:00:00Z"`, `"1900-02-29T00:00:00Z"`,
		`"2024-13-01T00:00:00Z"`, `"2024-04-31T00:00:00Z"`, `"2024-05-01T24:00:00Z"`, `"2024-05-01T08:60:00Z"`,
		`"2024-05-01T08:00:60Z"`, `"2024-05-01t08:00:00Z"`, `"2024-05-01T08:00:00z"`, `"0000-01-01T00:00:00Z"`,
		`"2024-05-00T08:00:00Z"`, `"2024-+5-01T08:00:00Z"`, `"1970-01-01T00:00:00Z"`, `"1969-12-31T23:59:59Z"`,
		`"0001-01-01T00:00:00Z"`, `"1600-03-01T00:00:00Z"`, `"2038-01-19T03:14:08Z"`, `"2100-02-28T12:00:00Z"`,
		`"2400-02-29T23:59:59Z"`, `"9999-12-31T23:59:59Z"`, `"2023-12-31T23:59:59Z"`, `"2024-03-01T00:00:00Z"`,
	} {
		t.Run(s, func(t *testing.T) {
			var want time.Time
			werr := json.Unmarshal([]byte(s), &want)
			got, ok := parseTrailTime([]byte(s))
			if !ok {
				return // left to time.Time's parser: nothing to compare
			}
			if werr != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("parseTrailTime(%s) = %v, time.Time gives %v (err %v)", s, got, want, werr)
			}
		})
	}
	// Every byte of a valid time replaced by every byte value, and every
	// day of four centuries at a few times of day: the same verdict and
	// time as the byte-by-byte definition (parseTrailTimeRef).
	base := []byte(`"2024-05-01T08:09:59Z"`)
	for i := range base {
		for c := range 256 {
			b := append([]byte(nil), base...)
			b[i] = byte(c)
			checkTrailTime(t, b)
		}
	}
	for d := time.Date(1599, 1, 1, 0, 0, 0, 0, time.UTC); d.Year() < 2401; d = d.AddDate(0, 0, 1) {
		for _, hms := range []string{"00:00:00", "23:59:59", "12:34:56", "24:00:00", "23:60:00", "23:59:60"} {
			checkTrailTime(t, []byte(`"`+d.Format(time.DateOnly)+"T"+hms+`Z"`))
		}
	}
	for _, day := range []string{"2023-02-29", "2024-02-29", "2024-02-30", "2024-04-31", "2024-06-31", "2024-00-10", "2024-10-00", "2024-10-32"} {
		checkTrailTime(t, []byte(`"`+day+`T00:00:00Z"`))
	}
	// unixDays against time.Date on every day of four centuries.
	for d := time.Date(1599, 1, 1, 0, 0, 0, 0, time.UTC); d.Year() < 2401; d = d.AddDate(0, 0, 1) {
		if got, want := unixDays(d.Year(), int(d.Month()), d.Day()), d.Unix()/86400; got != want {
			t.Fatalf("unixDays(%v) = %d, want %d", d.Format(time.DateOnly), got, want)
		}
	}
}

func checkTrailTime(t *testing.T, b []byte) {
	t.Helper()
	got, ok := parseTrailTime(b)
	want, wok := parseTrailTimeRef(b)
	if ok != wok || got != want {
		t.Fatalf("parseTrailTime(%q) = %v, %v; the definition gives %v, %v", b, got, ok, want, wok)
	}
}

// parseTrailTimeRef is parseTrailTime byte by byte, as it was first
// written: the definition the word-at-a-time parse is held to.
func parseTrailTimeRef(b []byte) (time.Time, bool) {
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

// TestHeaderScanAllocations checks that a regular record's header costs
// no allocation.
func TestHeaderScanAllocations(t *testing.T) {
	rec := []byte(`{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole","principalId":"AROA:x","arn":"arn:aws:sts::1:assumed-role/r/x","accountId":"111122223333","sessionContext":{"attributes":{"mfaAuthenticated":"false"}}},"eventTime":"2024-05-01T08:00:00Z","eventSource":"kms.amazonaws.com","eventName":"Decrypt","awsRegion":"us-east-1","sourceIPAddress":"10.0.0.1","userAgent":"aws-sdk-go/1.0","requestParameters":{"encryptionContext":{"k":"v"}},"responseElements":null,"requestID":"r","eventID":"e","readOnly":true,"resources":[{"ARN":"arn:aws:kms:us-east-1:1:key/k","type":"AWS::KMS::Key"}],"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}`)
	var ev Event
	allocs := testing.AllocsPerRun(100, func() {
		ev = Event{}
		if _, err := scanHeader(&ev, rec); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("scanHeader allocated %v times per record, want 0", allocs)
	}
	// A record shipped through Logstash, its time in "@timestamp" (3% of
	// the corpus): DecodeHeader reads that time without allocating too.
	shipped := []byte(`{"eventVersion":"1.08","eventID":"e","@timestamp":"2020-09-14T00:44:23.000Z","eventName":"Decrypt"}`)
	allocs = testing.AllocsPerRun(100, func() {
		if _, err := DecodeHeader(&ev, shipped); err != nil || ev.EventTime.IsZero() {
			t.Fatal(err, ev.EventTime)
		}
	})
	if allocs != 0 {
		t.Errorf("DecodeHeader allocated %v times per record with @timestamp, want 0", allocs)
	}
}

// FuzzHeader checks the header scan against encoding/json field by field
// on arbitrary input: where the scan does not fall back, every header
// field must equal the full decode's.
func FuzzHeader(f *testing.F) {
	for _, s := range []string{
		`{"eventVersion":"1.08","eventName":"ConsoleLogin","userIdentity":{"type":"Root"},"eventTime":"2024-05-01T08:00:00Z"}`,
		`{"eventVersion":"1.08","readOnly":true,"readOnly":null,"eventName":"a\u00e9\"b"}`,
		"{\"eventVersion\":\"1\",\"userAgent\":\"\xc3\x28 abcdefgh\"}",
		`{"eventVersion":"1","eventTime":"2024-05-01T08:00:00.5-07:00","x":[1,{"a":[]}]}`,
		`{"eventVersion":"1.08","eventID":"e","requestParameters":{"a":[1,2.5e3,{"b":null}],"c":"\u00e9"},"responseElements":null,"resources":[{"ARN":"a","type":"t"},null],"tlsDetails":{"tlsVersion":"TLSv1.3"}}`,
		`{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole","sessionContext":{"sessionIssuer":{"arn":"a","userName":"u"},"webIdFederationData":{"attributes":{"k":1}},"attributes":{"mfaAuthenticated":"true"}},"onBehalfOf":{"userId":"u"},"inScopeOf":{"x":[]}}}`,
		`{"eventVersion":"1.08","@timestamp":"2024-05-01T08:00:00.5Z","additionalEventData":{"n":1e999},"addendum":{},"insightDetails":{"i":{}}}`,
		`{"awsRegion":"us-east-1","eventID":"e","eventName":"n","eventVersion":"1.08","userIdentity":{"accountId":"1","arn":"a","type":"Root"}}`,
		`{"eventVersion":"1.08","userAgent":"` + strings.Repeat("a", 40) + `\u00e9` + strings.Repeat("b", 30) + `","eventName":"` + strings.Repeat("c", 70) + `"}`,
	} {
		f.Add([]byte(s))
	}
	// A record in CloudTrail's order and one in sorted order, cut short
	// at every few bytes (keys and strings that the record's end cuts).
	for _, rec := range []string{
		`{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole","principalId":"P","arn":"a","accountId":"1","accessKeyId":"K","sessionContext":{"sessionIssuer":{"type":"Role"},"attributes":{"creationDate":"d","mfaAuthenticated":"false"}}},"eventTime":"2024-05-01T08:00:00Z","eventSource":"kms.amazonaws.com","eventName":"Decrypt","awsRegion":"us-east-1","sourceIPAddress":"10.0.0.1","userAgent":"ua","requestParameters":{"k":[1,"v",{}]},"responseElements":null,"requestID":"r","eventID":"e","readOnly":true,"resources":[{"ARN":"a","type":"t"}],"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"1","eventCategory":"Management","sessionCredentialFromConsole":"true","tlsDetails":{"tlsVersion":"TLSv1.3"}}`,
		`{"awsRegion":"us-east-1","eventID":"e","eventName":"n","eventVersion":"1.08","sessionCredentialFromConsole":"true","userIdentity":{"accountId":"1","arn":"a","type":"Root"}}`,
	} {
		for n := 1; n < len(rec); n += 5 {
			f.Add([]byte(rec[:n]))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// With each way of classifying bytes (AVX2, portable Go).
		for _, name := range jsonscan.Classifiers() {
			prev := jsonscan.UseClassifier(name)
			checkHeader(t, "fuzz "+name, data)
			checkMembers(t, "fuzz members "+name, data, "a", "k", "c")
			// Pretty-printed, the same record must scan the same way.
			var pretty bytes.Buffer
			if json.Indent(&pretty, data, "", "\t") == nil {
				checkHeader(t, "fuzz (indented) "+name, pretty.Bytes())
			}
			jsonscan.UseClassifier(prev)
		}
	})
}
