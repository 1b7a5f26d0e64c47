// Package files reads recorded CloudTrail events: JSON Lines (one record a
// line), CloudTrail's S3 log files ({"Records":[...]}, plain or gzipped),
// JSON arrays of records, directory trees in the
// AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/ layout, and standard
// input. Memory is bounded by the largest single record, not by the input.
package files

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/gzip"
)

// MaxRecordSize is the longest JSON Lines line accepted. CloudTrail records
// are at most 256 KB; the margin is for shippers that add fields.
const MaxRecordSize = 1 << 20

// Record is one raw record and where it was read.
type Record struct {
	Data []byte // valid only during the callback
	File string // the file's path, or <stdin>
	// Line is the 1-based line for JSON Lines input; Index the 1-based
	// position in a {"Records": [...]} document (Line is then 0).
	Line, Index int
}

// Place returns where the record was read: "file:line" for JSON Lines,
// "file: record N" for S3 log files.
func (r Record) Place() string {
	if r.Line > 0 {
		return fmt.Sprintf("%s:%d", r.File, r.Line)
	}
	return fmt.Sprintf("%s: record %d", r.File, r.Index)
}

// Options adjusts a Reader.
type Options struct {
	// Stdin is read for the path "-". Nil means os.Stdin.
	Stdin io.Reader
	// SkipFile, if set, is asked about every file found in a directory
	// walk; returning true skips it unopened (time-range pruning).
	SkipFile func(path string) bool
	// SkipDir is the same for directories.
	SkipDir func(path string) bool
}

// BadInput is an input that could not be read as CloudTrail records, or a
// part of one; the rest of the input is still read.
type BadInput struct {
	Place string
	Err   error
}

func (b *BadInput) Error() string { return b.Place + ": " + b.Err.Error() }

// Walk reads every record from paths in order (files in a directory in
// lexical order, which is time order in CloudTrail's S3 layout) and calls
// fn for each. A part of the input that cannot be read is reported to bad
// and skipped; fn's error, a missing path or ctx's end stops the walk.
func Walk(ctx context.Context, paths []string, opts Options, fn func(Record) error, bad func(*BadInput)) error {
	if bad == nil {
		bad = func(*BadInput) {}
	}
	for _, p := range paths {
		if p == "-" {
			in := opts.Stdin
			if in == nil {
				in = os.Stdin
			}
			if err := readStream(ctx, "<stdin>", in, fn, bad); err != nil {
				return err
			}
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("read events: %w", err)
		}
		if !st.IsDir() {
			if err := readFile(ctx, p, fn, bad); err != nil {
				return err
			}
			continue
		}
		files, err := List(p, opts)
		if err != nil {
			return err
		}
		for _, f := range files {
			if err := readFile(ctx, f, fn, bad); err != nil {
				return err
			}
		}
	}
	return nil
}

// List returns the event files under dir in lexical order: *.json,
// *.jsonl, *.ndjson, with or without .gz. Hidden files and directories
// are skipped, and so is whatever opts' SkipFile and SkipDir reject.
func List(dir string, opts Options) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != dir && (strings.HasPrefix(name, ".") || (opts.SkipDir != nil && opts.SkipDir(p))) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(name, ".") || !IsEventFile(name) {
			return nil
		}
		if opts.SkipFile != nil && opts.SkipFile(p) {
			return nil
		}
		out = append(out, p)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list event files in %s: %w", dir, err)
	}
	sort.Strings(out)
	return out, nil
}

// IsEventFile reports whether a file name looks like recorded events.
func IsEventFile(name string) bool {
	n := strings.TrimSuffix(strings.ToLower(name), ".gz")
	return strings.HasSuffix(n, ".json") || strings.HasSuffix(n, ".jsonl") || strings.HasSuffix(n, ".ndjson")
}

func readFile(ctx context.Context, path string, fn func(Record) error, bad func(*BadInput)) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read events: %w", err)
	}
	defer f.Close()
	return readStream(ctx, path, f, fn, bad)
}

var gzipMagic = []byte{0x1f, 0x8b}

// ReadStream reads the records of one input that is not a local path (an
// object in S3, say) exactly as Walk reads a file: gzipped or not, JSON
// Lines or a {"Records": [...]} document. name is where it was read, for
// Record.File and BadInput.Place. It is the one reader of record
// documents: everything that reads CloudTrail log files goes through it.
func ReadStream(ctx context.Context, name string, r io.Reader, fn func(Record) error, bad func(*BadInput)) error {
	if bad == nil {
		bad = func(*BadInput) {}
	}
	return readStream(ctx, name, r, fn, bad)
}

// readStream reads one input, gzipped or not, choosing between JSON Lines
// and a single {"Records": [...]} document by its first bytes.
func readStream(ctx context.Context, name string, r io.Reader, fn func(Record) error, bad func(*BadInput)) error {
	br := bufio.NewReaderSize(r, 256*1024)
	if head, _ := br.Peek(2); bytes.Equal(head, gzipMagic) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			bad(&BadInput{Place: name, Err: fmt.Errorf("gzip: %w", err)})
			return nil
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, 256*1024)
	}
	if isDocument(br) {
		return readDocument(ctx, name, br, fn, bad)
	}
	return readLines(ctx, name, br, fn, bad)
}

// isDocument reports whether the input starts like `{"Records":` or `[`,
// that is, a whole-file JSON document rather than JSON Lines.
func isDocument(br *bufio.Reader) bool {
	head, _ := br.Peek(4096)
	head = bytes.TrimLeft(head, " \t\r\n\xef\xbb\xbf")
	if len(head) > 0 && head[0] == '[' {
		return true
	}
	if len(head) == 0 || head[0] != '{' {
		return false
	}
	rest := bytes.TrimLeft(head[1:], " \t\r\n")
	return bytes.HasPrefix(rest, []byte(`"Records"`))
}

func readLines(ctx context.Context, name string, br *bufio.Reader, fn func(Record) error, bad func(*BadInput)) error {
	var long []byte
	line := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(long)+len(chunk) <= MaxRecordSize {
				long = append(long, chunk...)
			} else {
				long = long[:0:0]
				long = append(long, "\x00too long"...)
			}
			continue
		}
		data := chunk
		if len(long) > 0 {
			data = append(long, chunk...)
			long = nil
		}
		if len(data) > 0 {
			line++
			trimmed := bytes.TrimSpace(data)
			switch {
			case len(trimmed) == 0:
			case bytes.HasPrefix(trimmed, []byte("\x00too long")) || len(data) > MaxRecordSize:
				bad(&BadInput{Place: fmt.Sprintf("%s:%d", name, line), Err: fmt.Errorf("line longer than %d bytes", MaxRecordSize)})
			default:
				if ferr := fn(Record{Data: trimmed, File: name, Line: line}); ferr != nil {
					return ferr
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			bad(&BadInput{Place: fmt.Sprintf("%s:%d", name, line+1), Err: err})
			return nil
		}
	}
}

// readDocument streams the elements of {"Records":[...]} (or a top-level
// array) without holding the whole document.
func readDocument(ctx context.Context, name string, br *bufio.Reader, fn func(Record) error, bad func(*BadInput)) error {
	dec := json.NewDecoder(br)
	fail := func(i int, err error) error {
		bad(&BadInput{Place: fmt.Sprintf("%s: record %d", name, i), Err: fmt.Errorf("malformed log file, rest of file skipped: %w", err)})
		return nil
	}
	tok, err := dec.Token()
	if err != nil {
		return fail(1, err)
	}
	if tok == json.Delim('{') {
		found := false
		for dec.More() {
			key, err := dec.Token()
			if err != nil {
				return fail(1, err)
			}
			if key == "Records" {
				found = true
				break
			}
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return fail(1, err)
			}
		}
		if !found {
			bad(&BadInput{Place: name, Err: errors.New(`no "Records" list`)})
			return nil
		}
		if tok, err = dec.Token(); err != nil {
			return fail(1, err)
		}
	}
	if tok != json.Delim('[') {
		return fail(1, errors.New("expected a list of records"))
	}
	var raw json.RawMessage
	for i := 1; dec.More(); i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		raw = raw[:0]
		if err := dec.Decode(&raw); err != nil {
			return fail(i, err)
		}
		if err := fn(Record{Data: raw, File: name, Index: i}); err != nil {
			return err
		}
	}
	return nil
}
