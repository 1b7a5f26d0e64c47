package notifiers

import "testing"

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
