package search

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestRenderTableKeepsIDsAndAddressesWhole: on a narrow terminal the
// table shrinks names and then drops columns, but never cuts an event ID
// or a source address, which is what one copies into the next query.
func TestRenderTableKeepsIDsAndAddressesWhole(t *testing.T) {
	const id = "3f0c2a9e-1b7d-4c5e-8a6f-000000d11101"
	const ip = "2001:db8:85a3::8a2e:370:7334"
	rec := strings.Replace(strings.Replace(recRole, `"eventID":"e-2"`, `"eventID":"`+id+`"`, 1), `"eventTime"`, `"sourceIPAddress":"`+ip+`","eventTime"`, 1)
	rs := results(t, rec, recUser)
	for _, width := range []int{200, 120, 100, 80, 70} {
		var b bytes.Buffer
		if err := Render(&b, rs, RenderOptions{Format: FormatTable, Width: width}); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		if !strings.Contains(out, id) {
			t.Errorf("width %d: the event ID is not whole:\n%s", width, out)
		}
		if strings.Contains(out, "SOURCE IP") && !strings.Contains(out, ip) {
			t.Errorf("width %d: the source address is shown cut short:\n%s", width, out)
		}
		for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
			if utf8.RuneCountInString(l) > width {
				t.Errorf("width %d: line of %d characters: %q", width, utf8.RuneCountInString(l), l)
			}
		}
	}
	var b bytes.Buffer
	Render(&b, rs, RenderOptions{Format: FormatTable, Width: 100})
	if !strings.Contains(b.String(), ip) {
		t.Errorf("at 100 columns the address should still fit, with other columns dropped:\n%s", b.String())
	}
}
