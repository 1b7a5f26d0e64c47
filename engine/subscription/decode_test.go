package subscription_test

import (
	"reflect"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/trailwatch/trailwatch/engine/subscription"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   events.CloudwatchLogsData
	}{
		{"control message", events.CloudwatchLogsData{
			MessageType: subscription.MessageTypeControl, Owner: "CloudwatchLogs", LogGroup: "", LogStream: "",
			SubscriptionFilters: []string{}, LogEvents: []events.CloudwatchLogsLogEvent{
				{ID: "", Timestamp: 1714550400000, Message: "CWL CONTROL MESSAGE: Checking health of destination Lambda."},
			},
		}},
		{"data message", events.CloudwatchLogsData{
			MessageType: subscription.MessageTypeData, Owner: "111122223333", LogGroup: "aws-cloudtrail-logs",
			LogStream: "111122223333_CloudTrail_us-east-1", SubscriptionFilters: []string{"trailwatch"},
			LogEvents: []events.CloudwatchLogsLogEvent{
				{ID: "37180000000000000000000000000000000000000000000000000000", Timestamp: 1714550400000, Message: `{"eventID":"e-1"}`},
			},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := subscription.Encode(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := subscription.Decode(data)
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
		{MessageType: subscription.MessageTypeData, LogEvents: []events.CloudwatchLogsLogEvent{{ID: "1", Message: "{}"}}},
		{MessageType: subscription.MessageTypeControl},
	} {
		data, err := subscription.Encode(d)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add("")
	f.Add("H4sIAAAAAAAA/w==")
	f.Fuzz(func(t *testing.T, data string) {
		d, err := subscription.Decode(data)
		if err != nil {
			return
		}
		again, err := subscription.Encode(d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := subscription.Decode(again); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
	})
}
