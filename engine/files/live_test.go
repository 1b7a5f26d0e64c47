package files

import (
	"context"
	"io"
	"testing"
	"time"
)

// TestStreamIsReadAsItArrives: a stream still being written (standard
// input from a pipe) is read record by record; the first record is handed
// on before the writer sends more or closes, not after 4 KB.
func TestStreamIsReadAsItArrives(t *testing.T) {
	pr, pw := io.Pipe()
	got := make(chan string, 4)
	done := make(chan error, 1)
	go func() {
		done <- ReadStream(context.Background(), "<stdin>", pr, func(r Record) error {
			got <- string(r.Data)
			return nil
		}, nil)
	}()
	go io.WriteString(pw, `{"eventVersion":"1.08","eventID":"a"}`+"\n")
	select {
	case rec := <-got:
		if rec != `{"eventVersion":"1.08","eventID":"a"}` {
			t.Errorf("record = %s", rec)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first record was not handed on while the stream stays open")
	}
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
