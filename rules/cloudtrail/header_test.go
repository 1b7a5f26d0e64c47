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
)

// headerDiff returns, for a record the header scan took (no fallback),
// every header field whose value differs from encoding/json's full decode,
// compared with reflect.DeepEqual (so a time.Time must match in location
// too).
func headerDiff(raw []byte) (diffs []string, scanned bool, err error) {
	var fast Event
	if scanHeader(&fast, trimSpace(raw)) != nil {
		return nil, false, nil
	}
	var full Event
	if err := json.Unmarshal(raw, &full); err != nil {
		return nil, true, fmt.Errorf("the header scan accepted what encoding/json rejects: %w", err)
	}
	compare := func(prefix string, a, b reflect.Value, keys []string) {
		want := map[string]bool{}
		for _, k := range keys {
			want[k] = true
		}
		for i := 0; i < a.NumField(); i++ {
			name := a.Type().Field(i).Tag.Get("json")
			if !want[name] {
				continue
			}
			if got, exp := a.Field(i).Interface(), b.Field(i).Interface(); !reflect.DeepEqual(got, exp) {
				diffs = append(diffs, fmt.Sprintf("%s%s: header %#v, encoding/json %#v", prefix, name, got, exp))
			}
		}
	}
	compare("", reflect.ValueOf(fast), reflect.ValueOf(full), headerTopKeys)
	compare("userIdentity.", reflect.ValueOf(fast.UserIdentity), reflect.ValueOf(full.UserIdentity), headerIdentityKeys)
	return diffs, true, nil
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
	n := 0
	corpus.ForEachRecord(t, func(place string, line []byte) {
		n++
		checkHeader(t, place, line)
	})
	if n == 0 {
		t.Fatal("no records compared")
	}
}

func TestHeaderEdgeCases(t *testing.T) {
	cases := []struct {
		name string
		rec  string
		// fallback: the scan must give up (the full decoder decides).
		fallback bool
	}{
		{"plain", `{"eventVersion":"1.08","eventName":"ConsoleLogin","eventTime":"2024-02-29T23:59:59Z"}`, false},
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
		{"too deep", `{"eventVersion":"1.08","x":` + strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth) + `}`, true},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			_, scanned, _ := headerDiff([]byte(tt.rec))
			if got, want := !scanned, tt.fallback; got != want {
				t.Errorf("fell back to the full decode: got %v, want %v", got, want)
			}
			checkHeader(t, tt.name, []byte(tt.rec))
		})
	}
}

// TestParseTrailTime checks the allocation-free eventTime parser against
// time.Time's own JSON decoding.
func TestParseTrailTime(t *testing.T) {
	for _, s := range []string{
		`"2024-05-01T08:00:00Z"`, `"2024-02-29T23:59:59Z"`, `"2000-02-29T00:00:00Z"`, `"1900-02-29T00:00:00Z"`,
		`"2024-13-01T00:00:00Z"`, `"2024-04-31T00:00:00Z"`, `"2024-05-01T24:00:00Z"`, `"2024-05-01T08:60:00Z"`,
		`"2024-05-01T08:00:60Z"`, `"2024-05-01t08:00:00Z"`, `"2024-05-01T08:00:00z"`, `"0000-01-01T00:00:00Z"`,
		`"2024-05-00T08:00:00Z"`, `"2024-+5-01T08:00:00Z"`,
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
}

// TestHeaderScanAllocations checks that a regular record's header costs
// no allocation.
func TestHeaderScanAllocations(t *testing.T) {
	rec := []byte(`{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole","principalId":"AROA:x","arn":"arn:aws:sts::1:assumed-role/r/x","accountId":"111122223333","sessionContext":{"attributes":{"mfaAuthenticated":"false"}}},"eventTime":"2024-05-01T08:00:00Z","eventSource":"kms.amazonaws.com","eventName":"Decrypt","awsRegion":"us-east-1","sourceIPAddress":"10.0.0.1","userAgent":"aws-sdk-go/1.0","requestParameters":{"encryptionContext":{"k":"v"}},"responseElements":null,"requestID":"r","eventID":"e","readOnly":true,"resources":[{"ARN":"arn:aws:kms:us-east-1:1:key/k","type":"AWS::KMS::Key"}],"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}`)
	var ev Event
	allocs := testing.AllocsPerRun(100, func() {
		ev = Event{}
		if err := scanHeader(&ev, rec); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("scanHeader allocated %v times per record, want 0", allocs)
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
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkHeader(t, "fuzz", data)
		// Pretty-printed, the same record must scan the same way.
		var pretty bytes.Buffer
		if json.Indent(&pretty, data, "", "\t") == nil {
			checkHeader(t, "fuzz (indented)", pretty.Bytes())
		}
	})
}
