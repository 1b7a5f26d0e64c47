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
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

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
func (r Record) Place() string { return r.place().String() }

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
// fn for each. A part of the input that cannot be read — a malformed or
// truncated file, an oversized record, a file or directory that cannot be
// opened, a dangling symbolic link, something in a directory that is not
// a regular file (a FIFO would block) — is reported to bad and skipped;
// fn's error, a path that does not exist or ctx's end stops the walk.
func Walk(ctx context.Context, paths []string, opts Options, fn func(Record) error, bad func(*BadInput)) error {
	if bad == nil {
		bad = func(*BadInput) {}
	}
	return Inputs(ctx, paths, opts, func(in Input) error { return in.Read(ctx, fn, bad) }, bad)
}

// Input is one file (or standard input) of a walk, not yet read. Inputs
// lists them in Walk's order, so that a caller may read several at once
// and still put what it found back in that order.
type Input struct {
	// Name is the file's path, or <stdin>: Record.File of its records.
	Name string
	// Stream is set for standard input, whose next record may be long in
	// coming (a pipe from a live producer, a terminal): a reader that
	// gathers records into batches should hand each on as it is read.
	Stream bool
	read   func(ctx context.Context, fn func(Record) error, bad func(*BadInput)) error
}

// Read reads the input's records exactly as Walk does, calling fn for
// each and reporting to bad what cannot be read. Call it once for every
// input, also after ctx ended: it then releases what the input holds (an
// object fetched ahead) and returns ctx's error.
func (in Input) Read(ctx context.Context, fn func(Record) error, bad func(*BadInput)) error {
	if bad == nil {
		bad = func(*BadInput) {}
	}
	return in.read(ctx, fn, bad)
}

// NewInput returns an input named name that read reads: for inputs that
// are not local paths (an object in S3), read calls ReadStream. read
// must honour Read's contract.
func NewInput(name string, read func(ctx context.Context, fn func(Record) error, bad func(*BadInput)) error) Input {
	return Input{Name: name, read: read}
}

// Inputs calls each, in Walk's order, with every input of paths, without
// reading it. What cannot be listed is reported to bad in its place among
// the inputs (before the files of a directory it was found in); each's
// error, a path that does not exist or ctx's end stops the listing.
func Inputs(ctx context.Context, paths []string, opts Options, each func(Input) error, bad func(*BadInput)) error {
	if bad == nil {
		bad = func(*BadInput) {}
	}
	for _, p := range paths {
		if p == "-" {
			in := opts.Stdin
			if in == nil {
				in = os.Stdin
			}
			err := each(Input{Name: "<stdin>", Stream: true, read: func(ctx context.Context, fn func(Record) error, bad func(*BadInput)) error {
				if f, ok := in.(*os.File); ok {
					stop := interruptReads(ctx, f)
					defer stop()
				}
				return readStream(ctx, "<stdin>", in, fn, bad)
			}})
			if err != nil {
				return err
			}
			continue
		}
		st, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("read events: %w", err)
		}
		if err != nil {
			bad(&BadInput{Place: p, Err: err})
			continue
		}
		if !st.IsDir() {
			if err := each(fileInput(p, st)); err != nil {
				return err
			}
			continue
		}
		for _, f := range list(p, opts, bad) {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := each(fileInput(f.path, f.info)); err != nil {
				return err
			}
		}
	}
	return nil
}

// fileInput is the input of a local file.
func fileInput(path string, info fs.FileInfo) Input {
	return Input{Name: path, read: func(ctx context.Context, fn func(Record) error, bad func(*BadInput)) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return readFile(ctx, path, info, fn, bad)
	}}
}

// List returns the event files under dir in lexical order: *.json,
// *.jsonl, *.ndjson, with or without .gz. Hidden files and directories
// are skipped, and so is whatever opts' SkipFile and SkipDir reject, and
// whatever cannot be read or is not a regular file (Walk reports those).
func List(dir string, opts Options) ([]string, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("list event files in %s: %w", dir, err)
	}
	var out []string
	for _, f := range list(dir, opts, func(*BadInput) {}) {
		out = append(out, f.path)
	}
	return out, nil
}

type listed struct {
	path string
	info fs.FileInfo
}

// list walks dir for event files, reporting to bad what it cannot read.
func list(dir string, opts Options, bad func(*BadInput)) []listed {
	var out []listed
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			// An unreadable directory (or one that vanished): the rest of
			// the tree is still read.
			bad(&BadInput{Place: p, Err: err})
			if d != nil && d.IsDir() && p != dir {
				return filepath.SkipDir
			}
			return nil
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
		// Follow a symbolic link to see what it names.
		info, err := os.Stat(p)
		if err != nil {
			bad(&BadInput{Place: p, Err: err})
			return nil
		}
		if !info.Mode().IsRegular() {
			bad(&BadInput{Place: p, Err: fmt.Errorf("not a regular file (%s), skipped", info.Mode().Type())})
			return nil
		}
		out = append(out, listed{p, info})
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out
}

// IsEventFile reports whether a file name looks like recorded events.
func IsEventFile(name string) bool {
	n := strings.TrimSuffix(strings.ToLower(name), ".gz")
	return strings.HasSuffix(n, ".json") || strings.HasSuffix(n, ".jsonl") || strings.HasSuffix(n, ".ndjson")
}

// readFile reads one file; one that cannot be opened is reported. A file
// named on the command line may be a pipe (process substitution): opening
// and reading it then give way to ctx.
func readFile(ctx context.Context, path string, info fs.FileInfo, fn func(Record) error, bad func(*BadInput)) error {
	var f *os.File
	var err error
	if info.Mode().IsRegular() {
		f, err = os.Open(path)
	} else {
		f, err = openInterruptible(ctx, path)
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		bad(&BadInput{Place: path, Err: err})
		return nil
	}
	defer f.Close()
	stop := interruptReads(ctx, f)
	defer stop()
	return readStream(ctx, path, f, fn, bad)
}

// openInterruptible opens path, giving up when ctx ends: opening a FIFO
// blocks until someone writes to it.
func openInterruptible(ctx context.Context, path string) (*os.File, error) {
	type result struct {
		f   *os.File
		err error
	}
	ch := make(chan result, 1)
	go func() {
		f, err := os.Open(path)
		ch <- result{f, err}
	}()
	select {
	case r := <-ch:
		return r.f, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.f != nil {
				r.f.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// interruptReads makes a blocked read of f (a pipe, a terminal) return
// when ctx ends. Regular files never block, and ignore it.
func interruptReads(ctx context.Context, f *os.File) (stop func()) {
	cancel := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Unix(1, 0)) })
	return func() { cancel() }
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

// readStream reads one input, gzipped or not: a CloudTrail log file
// ({"Records":[...]}), a JSON list of records, or JSON Lines.
func readStream(ctx context.Context, name string, r io.Reader, fn func(Record) error, bad func(*BadInput)) error {
	br := bufio.NewReaderSize(r, 32<<10)
	if head, _ := br.Peek(2); bytes.Equal(head, gzipMagic) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			bad(&BadInput{Place: name, Err: fmt.Errorf("gzip: %w", err)})
			return nil
		}
		defer zr.Close()
		return readInput(ctx, name, newScanner(gzipErrors{zr}), fn, bad)
	}
	return readInput(ctx, name, newScanner(br), fn, bad)
}

// gzipErrors names gzip's failures (a bad checksum, a cut stream) as such.
type gzipErrors struct{ r io.Reader }

func (g gzipErrors) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("gzip: %w", err)
	}
	return n, err
}
