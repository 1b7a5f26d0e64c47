package cloudtrail

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/trailwatch/trailwatch/internal/corpus"
)

// TestMoveToLeavesNothingOnTheOldBuffer decodes every corpus record's
// header from a buffer, moves the event onto a copy (MoveTo, as
// decide.Parallel does into its batch's buffer), overwrites the buffer,
// and wants the event, completed, to be the whole decode's; and MoveTo on
// an event that owns its record to leave it as it is.
func TestMoveToLeavesNothingOnTheOldBuffer(t *testing.T) {
	n := 0
	corpus.ForEachRecord(t, func(place string, raw []byte) {
		full, err := DecodeEvent(raw)
		if err != nil {
			return
		}
		buf := append([]byte(nil), raw...)
		var ev Event
		if _, err := DecodeHeader(&ev, buf); err != nil {
			t.Fatalf("%s: %v", place, err)
		}
		moved := bytes.Clone(ev.Raw())
		ev.MoveTo(moved)
		for i := range buf {
			buf[i] = 'x'
		}
		if err := ev.Complete(); err != nil {
			t.Fatalf("%s: Complete after MoveTo: %v", place, err)
		}
		if got, want := exportedFields(&ev), exportedFields(full); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: after MoveTo and the old buffer overwritten:\n got %#v\nwant %#v", place, got, want)
		}
		if &ev.Raw()[0] != &moved[0] {
			t.Fatalf("%s: Raw is not the copy MoveTo was given", place)
		}
		n++
	})
	if n == 0 {
		t.Fatal("no corpus record decoded")
	}
	var ev Event
	if _, err := DecodeHeader(&ev, []byte(`{"eventVersion":"1.08","eventID":"e1","eventName":"X"}`)); err != nil {
		t.Fatal(err)
	}
	ev.Own()
	owned := ev.Raw()
	ev.MoveTo(bytes.Clone(owned))
	if &ev.Raw()[0] != &owned[0] {
		t.Error("MoveTo moved an event that owns its record")
	}
}
