package files

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
)

// The readers below never hold more of the input than one record (at most
// MaxRecordSize) plus a fixed buffer, whatever the input: a gzip bomb that
// inflates to gigabytes inside one record, one key, one string or a deep
// nest of brackets is scanned through and reported, not accumulated. That
// is why they scan the JSON structure themselves rather than use
// encoding/json's Decoder, which holds a whole value before decoding it.

// bufSize is the scanner's read buffer, and bigBufSize what it grows to
// once an input has filled it bigFills times: a large input is read 256
// KiB a system call (a call costs ~1.7 us on the VMs measured: 4 KiB reads
// of a file take twice as long as 64 KiB ones), still small enough to stay
// in a core's L2 cache while the records in it are scanned, while a small
// file (a one-record replay, a directory of CloudTrail's small log files)
// costs no more memory to touch than before.
const (
	bufSize    = 64 << 10
	bigBufSize = 256 << 10
	bigFills   = 4
)

// errTooLong marks a record longer than MaxRecordSize.
var errTooLong = fmt.Errorf("record longer than %d bytes", MaxRecordSize)

// scanner reads an input a buffer at a time and walks its JSON structure.
type scanner struct {
	r        io.Reader
	buf      []byte
	pos, end int
	err      error // the reader's error once the buffer is drained (io.EOF at the end)
	lines    int   // newlines consumed, for JSON Lines numbering
	full     int   // reads that filled the buffer (see bigBufSize)

	// capture, while set, receives every byte consumed, up to limit; past
	// it, over is set and nothing more is kept.
	capture bool
	rec     []byte
	over    bool
}

func newScanner(r io.Reader) *scanner {
	return &scanner{r: r, buf: make([]byte, bufSize)}
}

// fill reads more input when the buffer is drained. It reports false at
// the end of the input or on a read error (s.err).
func (s *scanner) fill() bool {
	if s.pos < s.end {
		return true
	}
	if s.err != nil {
		return false
	}
	if s.full == bigFills && len(s.buf) < bigBufSize {
		// The buffer is drained: nothing refers to it any more.
		s.buf = make([]byte, bigBufSize)
	}
	for {
		n, err := s.r.Read(s.buf)
		if n == len(s.buf) {
			s.full++
		}
		s.pos, s.end = 0, n
		if err != nil {
			s.err = err
		}
		if n > 0 {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// readErr is the error that ended the input early: nil at a clean end.
func (s *scanner) readErr() error {
	if s.err == nil || s.err == io.EOF {
		return nil
	}
	return s.err
}

// keep appends b to the captured record, within the limit.
func (s *scanner) keep(b []byte) {
	if !s.capture || s.over {
		return
	}
	if len(s.rec)+len(b) > MaxRecordSize {
		s.over = true
		return
	}
	s.rec = append(s.rec, b...)
}

// consume advances over n buffered bytes, capturing and counting them.
func (s *scanner) consume(n int) {
	chunk := s.buf[s.pos : s.pos+n]
	s.lines += bytes.Count(chunk, newline)
	s.keep(chunk)
	s.pos += n
}

var newline = []byte{'\n'}

// peekNonSpace skips white space and returns the next byte without
// consuming it; ok is false at the end of the input.
func (s *scanner) peekNonSpace() (c byte, ok bool) {
	for s.fill() {
		i := s.pos
		for i < s.end && isSpace(s.buf[i]) {
			i++
		}
		s.consume(i - s.pos)
		if s.pos < s.end {
			return s.buf[s.pos], true
		}
	}
	return 0, false
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// next consumes and returns the next non-space byte.
func (s *scanner) next() (byte, bool) {
	c, ok := s.peekNonSpace()
	if ok {
		s.consume(1)
	}
	return c, ok
}

// skipBOM drops a UTF-8 byte order mark at the start of the input.
func (s *scanner) skipBOM() {
	const bom = "\xef\xbb\xbf"
	for s.end-s.pos < len(bom) && s.err == nil {
		// Make sure three bytes are buffered, if the input has them.
		n, err := s.r.Read(s.buf[s.end:])
		s.end += n
		if err != nil {
			s.err = err
		}
	}
	if bytes.HasPrefix(s.buf[s.pos:s.end], []byte(bom)) {
		s.pos += len(bom)
	}
}

// errSyntax is a structural error in a document, with what was expected.
type errSyntax string

func (e errSyntax) Error() string { return string(e) }

// stringBody consumes a JSON string whose opening quote is already
// consumed, through its closing quote. If key is non-nil, up to cap(*key)
// bytes of the raw string content are kept there (for comparing a member
// name).
func (s *scanner) stringBody(key *[]byte) error {
	escaped := false
	for s.fill() {
		i := s.pos
		for ; i < s.end; i++ {
			c := s.buf[i]
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				if key != nil {
					*key = appendCapped(*key, s.buf[s.pos:i])
				}
				s.consume(i + 1 - s.pos)
				return nil
			}
		}
		if key != nil {
			*key = appendCapped(*key, s.buf[s.pos:i])
		}
		s.consume(i - s.pos)
	}
	return s.endErr("a string")
}

func appendCapped(dst, b []byte) []byte {
	room := cap(dst) - len(dst)
	if len(b) > room {
		b = b[:room]
	}
	return append(dst, b...)
}

// endErr is the error for an input that ended (or failed) inside what.
func (s *scanner) endErr(what string) error {
	if err := s.readErr(); err != nil {
		return err
	}
	return errSyntax("the input ends inside " + what + " (truncated?)")
}

// value consumes one JSON value (structurally: brackets and strings are
// matched, scalars are not checked) whose first byte is the next non-space
// byte. Nesting depth is a counter, so a deep nest costs no memory.
func (s *scanner) value() error {
	c, ok := s.peekNonSpace()
	if !ok {
		return s.endErr("a value")
	}
	switch c {
	case '{', '[':
		return s.container()
	case '"':
		s.consume(1)
		return s.stringBody(nil)
	case ']', '}', ',', ':':
		return errSyntax(fmt.Sprintf("unexpected %q where a value belongs", c))
	}
	// A scalar runs until a delimiter or white space.
	for s.fill() {
		i := s.pos
		for i < s.end && !isDelim(s.buf[i]) {
			i++
		}
		s.consume(i - s.pos)
		if s.pos < s.end {
			return nil
		}
	}
	return s.readErr()
}

func isDelim(c byte) bool {
	return isSpace(c) || c == ',' || c == ']' || c == '}' || c == ':' || c == '[' || c == '{' || c == '"'
}

// container consumes an object or array starting at the next byte.
func (s *scanner) container() error {
	depth := 0
scan:
	for s.fill() {
		i := s.pos
		for ; i < s.end; i++ {
			switch s.buf[i] {
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.consume(i + 1 - s.pos)
					return nil
				}
			case '"':
				s.consume(i + 1 - s.pos)
				if err := s.stringBody(nil); err != nil {
					return err
				}
				continue scan
			}
		}
		s.consume(i - s.pos)
	}
	return s.endErr("an object or a list")
}

// readInput reads one input, already unzipped, choosing between a
// CloudTrail log file ({"Records": [...]}), a list of records and JSON
// Lines by its structure.
func readInput(ctx context.Context, name string, s *scanner, fn func(Record) error, bad func(*BadInput)) error {
	s.skipBOM()
	c, ok := s.peekNonSpace()
	switch {
	case !ok:
		if err := s.readErr(); err != nil {
			bad(&BadInput{Place: name, Err: err})
		}
		return nil
	case c == '[':
		s.consume(1)
		return readList(ctx, name, s, fn, bad, false)
	case c == '{':
		return readObject(ctx, name, s, fn, bad)
	}
	return readLinesFrom(ctx, name, s, nil, false, fn, bad)
}

// readObject reads an input that starts with an object: a CloudTrail log
// file ({"Records": [...]}, whatever other members come first) or the first
// record of JSON Lines. The object is kept (up to MaxRecordSize) while it
// is read, in case it turns out to be a record.
func readObject(ctx context.Context, name string, s *scanner, fn func(Record) error, bad func(*BadInput)) error {
	s.capture, s.rec, s.over = true, s.rec[:0], false
	stop := func() { s.capture, s.rec = false, nil }
	s.consume(1) // {
	key := make([]byte, 0, 16)
	for first := true; ; first = false {
		c, ok := s.next()
		if !ok {
			stop()
			bad(&BadInput{Place: name, Err: s.endErr("the first object")})
			return nil
		}
		if c == '}' && first {
			break
		}
		if !first {
			if c == '}' {
				break
			}
			if c != ',' {
				stop()
				return fail(name, 1, errSyntax(fmt.Sprintf("unexpected %q after a member of the first object", c)), bad)
			}
			if c, ok = s.next(); !ok {
				stop()
				bad(&BadInput{Place: name, Err: s.endErr("the first object")})
				return nil
			}
		}
		if c != '"' {
			// Not JSON: leave it to the record decoder, line by line.
			return linesAfterObject(ctx, name, s, fn, bad)
		}
		key = key[:0]
		if err := s.stringBody(&key); err != nil {
			stop()
			bad(&BadInput{Place: name, Err: err})
			return nil
		}
		if c, ok = s.next(); !ok || c != ':' {
			return linesAfterObject(ctx, name, s, fn, bad)
		}
		if string(key) == "Records" {
			if c, ok = s.peekNonSpace(); ok && c == '[' {
				// A log file: what was kept is not a record.
				stop()
				s.consume(1)
				return readList(ctx, name, s, fn, bad, true)
			}
			stop()
			return fail(name, 1, errors.New(`"Records" is not a list`), bad)
		}
		if err := s.value(); err != nil {
			stop()
			bad(&BadInput{Place: name, Err: err})
			return nil
		}
	}
	// An object without "Records": the first line of JSON Lines.
	return linesAfterObject(ctx, name, s, fn, bad)
}

// linesAfterObject hands the object read so far (the first record of JSON
// Lines, or what of it was read before it stopped looking like JSON), with
// the rest of its line, to the JSON Lines reader.
func linesAfterObject(ctx context.Context, name string, s *scanner, fn func(Record) error, bad func(*BadInput)) error {
	head, over := s.rec, s.over
	s.capture, s.rec, s.over = false, nil, false
	return readLinesFrom(ctx, name, s, head, over, fn, bad)
}

// fail reports a malformed log file at record i; the rest is skipped.
func fail(name string, i int, err error, bad func(*BadInput)) error {
	bad(&BadInput{Place: fmt.Sprintf("%s: record %d", name, i), Err: fmt.Errorf("malformed log file, rest of file skipped: %w", err)})
	return nil
}

// readList reads the records of a list whose '[' is consumed; inObject
// says it is the value of a log file's "Records", whose other members and
// closing brace follow. A record longer than MaxRecordSize is reported and
// skipped; so is the rest of the file after a structural error. The file
// must end properly: a list that is not closed (a file cut short at a
// record boundary) and a failed gzip checksum are reported.
func readList(ctx context.Context, name string, s *scanner, fn func(Record) error, bad func(*BadInput), inObject bool) error {
	i := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		c, ok := s.peekNonSpace()
		if !ok {
			return truncated(name, s, i, bad)
		}
		if c == ']' {
			s.consume(1)
			break
		}
		if i > 0 {
			if c != ',' {
				return fail(name, i+1, errSyntax(fmt.Sprintf("unexpected %q after record %d", c, i)), bad)
			}
			s.consume(1)
			if _, ok := s.peekNonSpace(); !ok {
				return truncated(name, s, i, bad)
			}
		}
		i++
		s.capture, s.rec, s.over = true, s.rec[:0], false
		err := s.value()
		s.capture = false
		if err != nil {
			if _, ok := err.(errSyntax); ok {
				return fail(name, i, err, bad)
			}
			bad(&BadInput{Place: fmt.Sprintf("%s: record %d", name, i), Err: err})
			return nil
		}
		if s.over {
			bad(&BadInput{Place: fmt.Sprintf("%s: record %d", name, i), Err: errTooLong})
			continue
		}
		if err := fn(Record{Data: s.rec, File: name, Index: i}); err != nil {
			return err
		}
	}
	s.rec = nil
	if inObject {
		if err := closeObject(s); err != nil {
			return fail(name, i+1, err, bad)
		}
	}
	// Only white space may follow; reading to the end also makes the gzip
	// reader check its checksum.
	if c, ok := s.peekNonSpace(); ok {
		return fail(name, i+1, errSyntax(fmt.Sprintf("unexpected %q after the end of the log file", c)), bad)
	}
	if err := s.readErr(); err != nil {
		bad(&BadInput{Place: name, Err: fmt.Errorf("after record %d: %w", i, err)})
	}
	return nil
}

// truncated reports a list that ends (or fails) after record n.
func truncated(name string, s *scanner, n int, bad func(*BadInput)) error {
	if err := s.readErr(); err != nil {
		bad(&BadInput{Place: fmt.Sprintf("%s: record %d", name, n+1), Err: err})
		return nil
	}
	bad(&BadInput{Place: fmt.Sprintf("%s: record %d", name, n+1), Err: fmt.Errorf("the log file ends after record %d without closing its list (truncated?)", n)})
	return nil
}

// closeObject reads the members that follow a log file's "Records" list
// and the closing brace.
func closeObject(s *scanner) error {
	for {
		c, ok := s.next()
		switch {
		case !ok:
			return s.endErr("the log file's object")
		case c == '}':
			return nil
		case c != ',':
			return errSyntax(fmt.Sprintf("unexpected %q after the list of records", c))
		}
		if c, ok = s.next(); !ok || c != '"' {
			return errSyntax("expected a member name after the list of records")
		}
		if err := s.stringBody(nil); err != nil {
			return err
		}
		if c, ok = s.next(); !ok || c != ':' {
			return errSyntax("expected ':' after a member name")
		}
		if err := s.value(); err != nil {
			return err
		}
	}
}

// readLinesFrom reads JSON Lines, one record a line, whose first line
// begins with head: bytes already consumed (more than MaxRecordSize if
// over), which may span lines when the first record is pretty-printed.
// Lines longer than MaxRecordSize are reported and skipped without being
// held.
func readLinesFrom(ctx context.Context, name string, s *scanner, head []byte, over bool, fn func(Record) error, bad func(*BadInput)) error {
	line := append([]byte(nil), head...)
	n := 1
	extra := bytes.Count(head, newline) // lines the first record spans beyond its first
	emit := func(line []byte) error {
		data := bytes.TrimSpace(line)
		switch {
		case over:
			bad(&BadInput{Place: fmt.Sprintf("%s:%d", name, n), Err: fmt.Errorf("line longer than %d bytes", MaxRecordSize)})
		case len(data) > 0:
			if err := fn(Record{Data: data, File: name, Line: n}); err != nil {
				return err
			}
		}
		return nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !s.fill() {
			if len(line) > 0 || over {
				if err := emit(line); err != nil {
					return err
				}
			}
			if err := s.readErr(); err != nil {
				if ctx.Err() != nil {
					return ctx.Err() // interrupted while waiting for input
				}
				bad(&BadInput{Place: fmt.Sprintf("%s:%d", name, n), Err: err})
			}
			return nil
		}
		chunk := s.buf[s.pos:s.end]
		nl := bytes.IndexByte(chunk, '\n')
		if nl >= 0 && len(line) == 0 && !over && nl <= MaxRecordSize {
			// The whole line is in the buffer (the usual case): hand it
			// over from there, without copying it.
			s.pos += nl + 1
			if err := emit(chunk[:nl]); err != nil {
				return err
			}
			n += 1 + extra
			extra = 0
			continue
		}
		if nl < 0 {
			if !over && len(line)+len(chunk) <= MaxRecordSize {
				line = append(line, chunk...)
			} else {
				over, line = true, line[:0]
			}
			s.pos = s.end
			continue
		}
		if !over && len(line)+nl <= MaxRecordSize {
			line = append(line, chunk[:nl]...)
		} else {
			over, line = true, line[:0]
		}
		s.pos += nl + 1
		if err := emit(line); err != nil {
			return err
		}
		line, over = line[:0], false
		n += 1 + extra
		extra = 0
	}
}
