package notifiers

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestConsoleURL(t *testing.T) {
	tests := []struct{ region, id, want string }{
		{"eu-west-1", "abc-123", "https://eu-west-1.console.aws.amazon.com/cloudtrailv2/home?region=eu-west-1#/events/abc-123"},
		{"us-gov-west-1", "x", "https://us-gov-west-1.console.aws.amazon.com/cloudtrailv2/home?region=us-gov-west-1#/events/x"},
		{"x@evil.example", "abc", ""},
		{"eu-west-2r", "abc", ""},
		{"evil.example/", "abc", ""},
		{"eu-west-1", "", ""},
		{"eu-west-1", "a/../b", "https://eu-west-1.console.aws.amazon.com/cloudtrailv2/home?region=eu-west-1#/events/a%2F..%2Fb"},
	}
	for _, tt := range tests {
		a := Alert{AWSRegion: tt.region, EventID: tt.id}
		if got := a.ConsoleURL(); got != tt.want {
			t.Errorf("ConsoleURL(%q, %q) = %q, want %q", tt.region, tt.id, got, tt.want)
		}
	}
}

func TestRetryAfterIsCapped(t *testing.T) {
	err := fmt.Errorf("post: %w", &RetryAfterError{Err: errors.New("slow down"), After: 99999 * time.Second})
	if got, ok := RetryAfter(err); !ok || got != MaxRetryAfter {
		t.Errorf("RetryAfter = %v, %v; want %v, true", got, ok, MaxRetryAfter)
	}
	if got, _ := RetryAfter(&RetryAfterError{After: 5 * time.Second}); got != 5*time.Second {
		t.Errorf("RetryAfter = %v, want 5s untouched", got)
	}
}

func TestDeliveryID(t *testing.T) {
	a := Alert{RuleID: "r", DedupKey: "k", EventID: "e1", Count: 1}
	b := a
	b.Summary = "decoded again from the outbox"
	if a.DeliveryID() != b.DeliveryID() || len(a.DeliveryID()) != 64 {
		t.Errorf("the same alert has ids %q and %q", a.DeliveryID(), b.DeliveryID())
	}
	for _, other := range []Alert{
		{RuleID: "r", DedupKey: "k", EventID: "e2", Count: 1},
		{RuleID: "r", DedupKey: "k", EventID: "e1", Count: 3},
		{RuleID: "r", DedupKey: "k2", EventID: "e1", Count: 1},
	} {
		if other.DeliveryID() == a.DeliveryID() {
			t.Errorf("%+v shares its id with %+v", other, a)
		}
	}
}
