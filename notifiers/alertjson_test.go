package notifiers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/trailwatch/trailwatch/internal/corpus"
)

// checkAppendJSON compares AppendJSON with json.Marshal on a, byte for
// byte, errors included, also when appending to a non-empty buffer.
func checkAppendJSON(t *testing.T, name string, a *Alert) {
	t.Helper()
	want, werr := json.Marshal(a)
	prefix := []byte("prefix:")
	got, gerr := a.AppendJSON(append([]byte(nil), prefix...))
	if (werr != nil) != (gerr != nil) || (werr != nil && werr.Error() != gerr.Error()) {
		t.Errorf("%s: AppendJSON error %v, json.Marshal error %v", name, gerr, werr)
		return
	}
	if !bytes.HasPrefix(got, prefix) {
		t.Fatalf("%s: AppendJSON dropped what dst held: %q", name, got)
	}
	if got = got[len(prefix):]; werr == nil && !bytes.Equal(got, want) {
		t.Errorf("%s:\n AppendJSON   %s\n json.Marshal %s", name, got, want)
	}
}

// fill sets every field of v (recursively through structs and slices) to
// a non-zero value made from seed, so that a field AppendJSON forgets
// shows up as a difference.
func fill(v reflect.Value, seed string) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(seed + `<&>"\` + "\n\x01é\u2028\xff")
	case reflect.Int:
		v.SetInt(int64(len(seed)) + 3)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			v.Set(reflect.ValueOf(time.Date(2024, 5, 1, 8, 0, len(seed), 123456789, time.FixedZone("x", 3600))))
			return
		}
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), fmt.Sprintf("%s%d", seed, i))
			}
		}
	case reflect.Slice:
		if v.Type() == reflect.TypeOf(json.RawMessage{}) {
			v.SetBytes([]byte(`{"eventVersion":"1.08","eventName":"` + seed + `"}`))
			return
		}
		s := reflect.MakeSlice(v.Type(), 2, 2)
		fill(s.Index(0), seed+"a")
		fill(s.Index(1), seed+"b")
		v.Set(s)
	default:
		panic("fill: add a case for " + v.Kind().String())
	}
}

// TestAppendJSONAgreesWithMarshal checks AppendJSON against json.Marshal
// with every field set (a new Alert field that AppendJSON does not write
// fails here), with none set, and with the events json.Marshal has to
// compact, escape or reject.
func TestAppendJSONAgreesWithMarshal(t *testing.T) {
	var full Alert
	fill(reflect.ValueOf(&full).Elem(), "f")
	checkAppendJSON(t, "every field set", &full)
	checkAppendJSON(t, "no field set", &Alert{})

	events := map[string]string{
		"compact":          `{"a":1,"b":[true,null,"x"]}`,
		"spaced":           " { \"a\" : [ 1 , 2 ] }\n",
		"html":             `{"a":"<script>&"}`,
		"line separator":   "{\"a\":\"\u2028\u2029\"}",
		"e2 not separator": "{\"a\":\"\u20ac\u2030\"}",
		"invalid":          `{"a":`,
		"trailing":         `{"a":1} x`,
		"empty":            ``,
		"scalar":           `"x"`,
		"invalid UTF-8":    "{\"a\":\"\xff\"}",
	}
	for name, ev := range events {
		a := full
		a.Event = json.RawMessage(ev)
		checkAppendJSON(t, "event "+name, &a)
	}
	a := full
	a.Event = nil
	checkAppendJSON(t, "nil event", &a)
	a.EventTime = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	checkAppendJSON(t, "time json.Marshal rejects", &a)
	a = full
	a.Samples[1].EventTime = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)
	checkAppendJSON(t, "sample time json.Marshal rejects", &a)
	a = full
	a.Count, a.Suppressed, a.Tags, a.Group, a.Samples, a.Test = 0, 0, []string{}, nil, []EventSample{}, false
	a.FirstTime, a.LastTime = time.Time{}, time.Time{}
	checkAppendJSON(t, "empty optional fields", &a)
}

// TestAppendJSONOnCorpus checks AppendJSON against json.Marshal on an
// alert for every real record, its strings taken from the record.
func TestAppendJSONOnCorpus(t *testing.T) {
	n := 0
	corpus.ForEachRecord(t, func(place string, line []byte) {
		var rec struct {
			EventID, EventName, EventSource, UserAgent, AWSRegion, ErrorCode, ErrorMessage, SourceIPAddress string
			EventTime                                                                                       time.Time
		}
		_ = json.Unmarshal(line, &rec)
		a := Alert{
			RuleID: "r", Title: "t", Severity: "high", Summary: rec.EventName + " by " + rec.UserAgent,
			DedupKey: rec.EventID, EventID: rec.EventID, EventTime: rec.EventTime, EventName: rec.EventName,
			EventSource: rec.EventSource, Principal: rec.UserAgent, SourceIP: rec.SourceIPAddress,
			UserAgent: rec.UserAgent, AWSRegion: rec.AWSRegion, ErrorCode: rec.ErrorCode,
			ErrorMessage: rec.ErrorMessage, Count: 1, Event: json.RawMessage(line),
		}
		checkAppendJSON(t, place, &a)
		n++
	})
	if n == 0 {
		t.Fatal("no corpus record")
	}
}

// FuzzAppendJSON checks AppendJSON against json.Marshal on arbitrary
// strings and events.
func FuzzAppendJSON(f *testing.F) {
	f.Add("ConsoleLogin", "Mozilla/5.0 <x> & \u2028", []byte(`{"eventVersion":"1.08","a":[1,{"b":null}]}`), 2)
	f.Add("\xff\x00\"\\", "", []byte(" {\"a\" :\t\"<\"} "), 0)
	f.Add("", "a\nb", []byte(`{"a":1}x`), -1)
	f.Fuzz(func(t *testing.T, s1, s2 string, event []byte, n int) {
		a := Alert{
			RuleID: s1, Title: s2, Severity: s1, Summary: s2, Description: s1, Tags: []string{s1, s2},
			DedupKey: s2, EventID: s1, EventTime: time.Unix(int64(n)*7919, int64(n)).UTC(), EventName: s2,
			Principal: s1, UserName: s2, SourceIP: s1, UserAgent: s2, Count: n, Suppressed: n / 2,
			Group: []string{s2}, Samples: []EventSample{{EventID: s1, EventName: s2, RuleID: s1}},
			Event: json.RawMessage(event),
		}
		checkAppendJSON(t, "fuzz", &a)
	})
}

// BenchmarkAlertJSON compares AppendJSON with json.Marshal on an alert
// for a typical corpus-sized record.
func BenchmarkAlertJSON(b *testing.B) {
	var recs [][]byte
	corpus.ForEachRecord(b, func(_ string, line []byte) {
		if len(recs) < 200 {
			recs = append(recs, append([]byte(nil), line...))
		}
	})
	alerts := make([]Alert, len(recs))
	for i, r := range recs {
		fill(reflect.ValueOf(&alerts[i]).Elem(), "x")
		alerts[i].Event = r
	}
	b.Run("AppendJSON", func(b *testing.B) {
		var buf []byte
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			buf, _ = alerts[i%len(alerts)].AppendJSON(buf[:0])
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_, _ = json.Marshal(&alerts[i%len(alerts)])
		}
	})
}

// TestCompactJSONMatchesStdlib checks the one-pass compactor against
// json.Compact on every corpus record, pretty-printed too.
func TestCompactJSONMatchesStdlib(t *testing.T) {
	cases := [][]byte{
		[]byte(` { "a" : "x \" y\\\\" , "b\\\"" : [ 1 , 2 ] , "c" : "\\\\\\\"x" } `),
		[]byte("{\"a\":\"tab\\t \\u0020 \"}\n"),
	}
	for _, r := range corpus.Records(t) {
		cases = append(cases, r)
		var pretty bytes.Buffer
		if json.Indent(&pretty, r, " ", "\t") == nil {
			cases = append(cases, pretty.Bytes())
		}
	}
	for i, c := range cases {
		var want bytes.Buffer
		if err := json.Compact(&want, c); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if got := CompactJSON(c); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("case %d: CompactJSON = %.300s, want %.300s", i, got, want.Bytes())
		}
	}
}

// FuzzCompactJSON checks the compactor against json.Compact on any valid
// JSON.
func FuzzCompactJSON(f *testing.F) {
	f.Add([]byte(`{"a" : "b\\\" c", "d": [1, 2.5e3, null, true]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var want bytes.Buffer
		if json.Compact(&want, data) != nil {
			return
		}
		if got := CompactJSON(data); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("CompactJSON(%q) = %q, want %q", data, got, want.Bytes())
		}
	})
}

// TestAppendJSONStringEveryByteEveryPlace puts each byte value (and the
// first byte of U+2028) at each place of plain strings of several lengths,
// so that appendJSONString's eight-bytes-at-a-time scan meets every byte
// in every lane and in the tail, and wants json.Marshal's bytes.
func TestAppendJSONStringEveryByteEveryPlace(t *testing.T) {
	plain := "abcdefghijklmnopqrstuvwxyz0123456789"
	for n := 1; n <= 20; n++ {
		for at := 0; at < n; at++ {
			for c := 0; c < 256; c++ {
				s := []byte(plain[:n])
				s[at] = byte(c)
				check := func(s string) {
					want, err := json.Marshal(s)
					if err != nil {
						t.Fatal(err)
					}
					if got := appendJSONString(nil, s); string(got) != string(want) {
						t.Fatalf("%q: got %s, want %s", s, got, want)
					}
				}
				check(string(s))
				if at+3 <= n {
					copy(s[at:], "\u2028")
					check(string(s))
				}
			}
		}
	}
}
