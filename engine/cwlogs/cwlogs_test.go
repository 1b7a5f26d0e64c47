package cwlogs_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/trailwatch/trailwatch/engine/cwlogs"
	"github.com/trailwatch/trailwatch/engine/source"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   events.CloudwatchLogsData
	}{
		{"control message", events.CloudwatchLogsData{
			MessageType: cwlogs.MessageTypeControl, Owner: "CloudwatchLogs", LogGroup: "", LogStream: "",
			SubscriptionFilters: []string{}, LogEvents: []events.CloudwatchLogsLogEvent{
				{ID: "", Timestamp: 1714550400000, Message: "CWL CONTROL MESSAGE: Checking health of destination Lambda."},
			},
		}},
		{"data message", events.CloudwatchLogsData{
			MessageType: cwlogs.MessageTypeData, Owner: "111122223333", LogGroup: "aws-cloudtrail-logs",
			LogStream: "111122223333_CloudTrail_us-east-1", SubscriptionFilters: []string{"trailwatch"},
			LogEvents: []events.CloudwatchLogsLogEvent{
				{ID: "37180000000000000000000000000000000000000000000000000000", Timestamp: 1714550400000, Message: `{"eventID":"e-1"}`},
			},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := cwlogs.Encode(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := cwlogs.Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.in) {
				t.Errorf("Decode(Encode(x)) = %+v, want %+v", got, tt.in)
			}
			// aws-lambda-go's own parser agrees with ours.
			theirs, err := events.CloudwatchLogsRawData{Data: data}.Parse()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, theirs) {
				t.Errorf("Decode = %+v, events.Parse = %+v", got, theirs)
			}
		})
	}
}

// FuzzDecode checks that no payload makes Decode panic, and that what it
// accepts survives a round trip.
func FuzzDecode(f *testing.F) {
	for _, d := range []events.CloudwatchLogsData{
		{MessageType: cwlogs.MessageTypeData, LogEvents: []events.CloudwatchLogsLogEvent{{ID: "1", Message: "{}"}}},
		{MessageType: cwlogs.MessageTypeControl},
	} {
		data, err := cwlogs.Encode(d)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add("")
	f.Add("H4sIAAAAAAAA/w==")
	f.Fuzz(func(t *testing.T, data string) {
		d, err := cwlogs.Decode(data)
		if err != nil {
			return
		}
		again, err := cwlogs.Encode(d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cwlogs.Decode(again); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
	})
}

func TestAppendRecords(t *testing.T) {
	d := events.CloudwatchLogsData{
		MessageType: cwlogs.MessageTypeData, LogGroup: "trail", LogStream: "111122223333_CloudTrail_us-east-1",
		LogEvents: []events.CloudwatchLogsLogEvent{
			{ID: "e-2", Timestamp: 1714550460000, Message: `{"eventID":"b"}`},
			{ID: "e-1", Timestamp: 1714550400000, Message: `{"eventID":"a"}`},
		},
	}
	var b source.Batch
	cwlogs.AppendRecords(&b, d)
	cwlogs.AppendRecords(&b, events.CloudwatchLogsData{LogGroup: "other", LogEvents: []events.CloudwatchLogsLogEvent{{ID: "e-3", Timestamp: 1714550300000, Message: "x"}}})
	if b.Origin != "trail" || len(b.Records) != 3 || !b.Newest.Equal(time.UnixMilli(1714550460000)) {
		t.Fatalf("batch = %+v, want origin trail, 3 records, the newest timestamp", b)
	}
	want := source.Place{LogGroup: "trail", LogStream: "111122223333_CloudTrail_us-east-1", EventID: "e-1"}
	if got := b.Records[1]; string(got.Data) != `{"eventID":"a"}` || got.Place != want {
		t.Errorf("record 1 = %s at %+v, want its message at %+v", got.Data, got.Place, want)
	}
	if got := b.Records[2].Place.LogGroup; got != "other" {
		t.Errorf("record 2's log group = %q, want its own", got)
	}
}
