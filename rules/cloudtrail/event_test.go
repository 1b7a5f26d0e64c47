package cloudtrail

import (
	"errors"
	"testing"
	"time"
)

func TestDecodeEventMessyRecords(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		check func(t *testing.T, ev *Event)
	}{
		{
			name: "readOnly as the string True",
			in:   `{"eventVersion":"1.08","eventID":"e1","eventName":"GetObject","readOnly":"True","userIdentity":{"type":"IAMUser","userName":"bob"}}`,
			check: func(t *testing.T, ev *Event) {
				if !ev.ReadOnly {
					t.Error("readOnly = false, want true")
				}
				if ev.UserIdentity.UserName != "bob" || ev.EventName != "GetObject" {
					t.Errorf("other fields lost in the lenient path: %+v", ev)
				}
			},
		},
		{
			name: "requestParameters as a JSON string",
			in:   `{"eventVersion":"1.08","eventID":"e2","requestParameters":"{\"bucketName\":\"b\",\"n\":3}"}`,
			check: func(t *testing.T, ev *Event) {
				if ev.RequestParameters["bucketName"] != "b" || ev.RequestParameters["n"] != float64(3) {
					t.Errorf("requestParameters = %#v", ev.RequestParameters)
				}
			},
		},
		{
			name: "requestParameters as a plain string",
			in:   `{"eventVersion":"1.08","eventID":"e3","requestParameters":"not json"}`,
			check: func(t *testing.T, ev *Event) {
				if ev.RequestParameters["value"] != "not json" {
					t.Errorf("requestParameters = %#v", ev.RequestParameters)
				}
			},
		},
		{
			name: "nulls and absent objects",
			in:   `{"eventVersion":"1.08","eventID":"e4","userIdentity":null,"requestParameters":null,"responseElements":null,"resources":null}`,
			check: func(t *testing.T, ev *Event) {
				if ev.UserIdentity.Type != "" || ev.RequestParameters != nil {
					t.Errorf("got %+v", ev)
				}
			},
		},
		{
			name: "numbers where strings belong",
			in:   `{"eventVersion":"1.08","eventID":"e5","recipientAccountId":123456789012,"userIdentity":{"accountId":123456789012,"type":"Root"}}`,
			check: func(t *testing.T, ev *Event) {
				if ev.RecipientAccountID != "123456789012" || ev.UserIdentity.AccountID != "123456789012" {
					t.Errorf("account ids = %q, %q", ev.RecipientAccountID, ev.UserIdentity.AccountID)
				}
			},
		},
		{
			name: "objects where strings belong",
			in:   `{"eventVersion":"1.08","eventID":"e6","errorMessage":{"a":1}}`,
			check: func(t *testing.T, ev *Event) {
				if ev.ErrorMessage != `{"a":1}` {
					t.Errorf("errorMessage = %q", ev.ErrorMessage)
				}
			},
		},
		{
			name: "a malformed eventTime is dropped, not fatal",
			in:   `{"eventVersion":"1.08","eventID":"e7","eventTime":"yesterday","eventName":"X"}`,
			check: func(t *testing.T, ev *Event) {
				if !ev.EventTime.IsZero() || ev.EventName != "X" {
					t.Errorf("got %+v", ev)
				}
			},
		},
		{
			name: "@timestamp stands in for a missing eventTime",
			in:   `{"eventVersion":"1.08","eventID":"e8","@timestamp":"2021-04-01T10:00:00.000Z"}`,
			check: func(t *testing.T, ev *Event) {
				want := time.Date(2021, 4, 1, 10, 0, 0, 0, time.UTC)
				if !ev.EventTime.Equal(want) {
					t.Errorf("eventTime = %v, want %v", ev.EventTime, want)
				}
			},
		},
		{
			name: "resources as a single object",
			in:   `{"eventVersion":"1.08","eventID":"e9","readOnly":"false","resources":{"ARN":"arn:aws:s3:::b","type":"AWS::S3::Bucket"}}`,
			check: func(t *testing.T, ev *Event) {
				if len(ev.Resources) != 1 || ev.Resources[0].Type != "AWS::S3::Bucket" {
					t.Errorf("resources = %+v", ev.Resources)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := DecodeEvent([]byte(tt.in))
			if err != nil {
				t.Fatalf("DecodeEvent: %v", err)
			}
			tt.check(t, ev)
		})
	}
}

func TestDecodeEventRejects(t *testing.T) {
	for _, in := range []string{``, `[]`, `"x"`, `{"hello":"world"}`, `{"eventVersion":`, `not json`} {
		t.Run(in, func(t *testing.T) {
			if ev, err := DecodeEvent([]byte(in)); err == nil {
				t.Fatalf("DecodeEvent(%q) = %+v, want an error", in, ev)
			}
		})
	}
	_, err := DecodeEvent([]byte(`{"hello":"world"}`))
	if !errors.Is(err, ErrNotCloudTrail) {
		t.Errorf("error %v is not ErrNotCloudTrail", err)
	}
}
