package s3files

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/trailwatch/trailwatch/engine/awslogs"
	"github.com/trailwatch/trailwatch/engine/files"
	"github.com/trailwatch/trailwatch/internal/s3bundle"
)

// Defaults of Options.
const (
	// DefaultParallel objects are fetched ahead of the one being read:
	// enough to hide S3's first-byte latency (tens of milliseconds) behind
	// the decoding of a typical log file.
	DefaultParallel = 8
	// DefaultBufferSize bytes of each object fetched ahead are held in
	// memory; the rest of a larger object streams when its turn comes.
	// CloudTrail's gzipped log files are mostly far smaller.
	DefaultBufferSize = 4 << 20
)

// MaxResumes is how many times a body whose connection failed is asked
// for again, from where it stopped, before the object is given up.
const MaxResumes = 3

// Options adjusts Walk.
type Options struct {
	// Options are engine/files' options: Stdin for "-", and SkipDir and
	// SkipFile, which are asked about S3 folders and objects too (as
	// s3://bucket/prefix and s3://bucket/key).
	files.Options
	// Window is the delivery-time window of a time range (see
	// ListOptions.Window); the zero Window lists everything.
	Window awslogs.Window
	// Client reads S3; nil means a client from the SDK's default
	// configuration chain (s3bundle.NewClient), made on first use.
	Client Client
	// Parallel is how many objects are fetched ahead of the one being
	// read (0: DefaultParallel).
	Parallel int
	// BufferSize bounds the bytes of one object held in memory ahead of
	// reading (0: DefaultBufferSize).
	BufferSize int
	// PageSize is how many keys one List call asks for (0: 1000).
	PageSize int32
	// Stats, if set, counts the work done.
	Stats *Stats
}

// Stats counts what Walk did in S3. It is safe to read while Walk runs.
type Stats struct {
	ListCalls atomic.Int64 // ListObjectsV2 calls
	Objects   atomic.Int64 // objects read
	Bytes     atomic.Int64 // bytes read from S3 (compressed, as stored)
}

// Walk reads every record from paths in order and calls fn for each, as
// files.Walk does, where a path may also be s3://bucket/prefix (every
// event file under it, in key order, which is the order of a local copy
// of the tree) or s3://bucket/key (one object). Objects are fetched
// several at a time and each streams through files.ReadStream as soon as
// its turn comes. An object that cannot be read is reported to bad and
// skipped; a listing that fails, fn's error or ctx's end stops the walk.
func Walk(ctx context.Context, paths []string, opts Options, fn func(files.Record) error, bad func(*files.BadInput)) error {
	if bad == nil {
		bad = func(*files.BadInput) {}
	}
	return Inputs(ctx, paths, opts, func(in files.Input) error { return in.Read(ctx, fn, bad) }, bad)
}

// Inputs calls each, in Walk's order, with every input of paths (local
// ones as files.Inputs lists them), without reading it, so that a caller
// may read several at once. Objects are fetched ahead, at most
// opts.Parallel beyond those handed to each and not yet read; each must
// Read every input it is given (see files.Input.Read), or the objects'
// connections stay open. A listing that fails, each's error or ctx's end
// stops the listing.
func Inputs(ctx context.Context, paths []string, opts Options, each func(files.Input) error, bad func(*files.BadInput)) error {
	if bad == nil {
		bad = func(*files.BadInput) {}
	}
	if opts.Stats == nil {
		opts.Stats = &Stats{}
	}
	for _, p := range paths {
		if !s3bundle.IsURI(p) {
			if err := files.Inputs(ctx, []string{p}, opts.Options, each, bad); err != nil {
				return err
			}
			continue
		}
		loc, err := s3bundle.ParseFolderURI(p)
		if err != nil {
			return err
		}
		if opts.Client == nil {
			c, err := s3bundle.NewClient(ctx, s3bundle.ClientOptions{})
			if err != nil {
				return err
			}
			opts.Client = c
		}
		if _, ok := opts.Client.(*regional); !ok {
			opts.Client = FollowRegion(opts.Client)
		}
		if err := inputsS3(ctx, loc, &opts, each); err != nil {
			return err
		}
	}
	return nil
}

// slot is an object being fetched ahead.
type slot struct {
	obj    Object
	cancel context.CancelFunc // ends the fetch
	ready  chan struct{}      // closed once head, body and err are set
	head   []byte             // the object's first bytes
	body   *Body              // the rest, or nil when head holds it all
	err    error
}

// release ends the fetch and the connection.
func (s *slot) release() {
	s.cancel()
	<-s.ready
	if s.body != nil {
		s.body.Close()
	}
}

// read is the slot's files.Input: it waits for the fetch, then reads the
// object through files.ReadStream.
func (s *slot) read(stats *Stats) files.Input {
	uri := s.obj.URI()
	return files.NewInput(uri, func(ctx context.Context, fn func(files.Record) error, bad func(*files.BadInput)) error {
		defer s.release()
		select {
		case <-s.ready:
		case <-ctx.Done():
			return ctx.Err()
		}
		if s.err != nil {
			bad(&files.BadInput{Place: uri, Err: s.err})
			return nil
		}
		var r io.Reader = bytes.NewReader(s.head)
		if s.body != nil {
			r = io.MultiReader(r, s.body)
		}
		err := files.ReadStream(ctx, uri, r, fn, bad)
		n := int64(len(s.head))
		if s.body != nil {
			n = s.body.Offset()
		}
		stats.Objects.Add(1)
		stats.Bytes.Add(n)
		return err
	})
}

// inputsS3 lists the event files under loc: a listing goroutine, fetches
// started in key order at most opts.Parallel ahead of the objects handed
// to each, and each called here, in order.
func inputsS3(ctx context.Context, loc s3bundle.Location, opts *Options, each func(files.Input) error) error {
	parallel := opts.Parallel
	if parallel <= 0 {
		parallel = DefaultParallel
	}
	bufSize := opts.BufferSize
	if bufSize <= 0 {
		bufSize = DefaultBufferSize
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()

	objs := make(chan Object, 64)
	listed := make(chan error, 1)
	go func() {
		defer close(objs)
		listed <- List(wctx, opts.Client, loc, ListOptions{
			Window: opts.Window, SkipDir: opts.SkipDir, SkipFile: opts.SkipFile,
			PageSize: opts.PageSize, ListCalls: &opts.Stats.ListCalls,
		}, func(o Object) error {
			select {
			case objs <- o:
				return nil
			case <-wctx.Done():
				return wctx.Err()
			}
		})
	}()
	// The channel's capacity bounds the fetches ahead. A fetch handed to
	// each outlives this function: its own context ends when it is read.
	slots := make(chan *slot, parallel)
	go func() {
		defer close(slots)
		for o := range objs {
			sctx, scancel := context.WithCancel(ctx)
			s := &slot{obj: o, cancel: scancel, ready: make(chan struct{})}
			select {
			case slots <- s:
			case <-wctx.Done():
				scancel()
				return
			}
			go s.fetch(sctx, opts.Client, bufSize)
		}
	}()
	defer func() {
		cancel()
		for s := range slots {
			s.release()
		}
	}()

	for s := range slots {
		if err := ctx.Err(); err != nil {
			s.release()
			return err
		}
		if err := each(s.read(opts.Stats)); err != nil {
			return err
		}
	}
	if err := <-listed; err != nil && ctx.Err() == nil {
		return err
	}
	return ctx.Err()
}

// fetch opens the object and reads its first bufSize bytes.
func (s *slot) fetch(ctx context.Context, client Client, bufSize int) {
	defer close(s.ready)
	body, err := Open(ctx, client, s.obj)
	if err != nil {
		s.err = err
		return
	}
	size := body.Object().Size
	n := bufSize
	if size > 0 && size < int64(n) {
		// One byte more than the object tells its end from a full buffer.
		n = int(size) + 1
	}
	var buf bytes.Buffer
	buf.Grow(n)
	if _, err := buf.ReadFrom(io.LimitReader(body, int64(n))); err != nil {
		body.Close()
		s.err = err
		return
	}
	s.head = buf.Bytes()
	if len(s.head) < n {
		body.Close() // read to its end
		return
	}
	s.body = body
}

// Body is an object's content as it streams from S3. When the connection
// fails mid-object, it asks S3 again for the rest (a ranged GET on the
// same ETag, so a changed object is never spliced), up to MaxResumes
// times.
type Body struct {
	ctx     context.Context
	client  Client
	obj     Object
	rc      io.ReadCloser
	off     int64
	resumes int
	err     error
	closed  bool
}

// Open starts reading obj (Bucket and Key set; the other fields are
// filled in from S3's answer).
func Open(ctx context.Context, client Client, obj Object) (*Body, error) {
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(obj.Bucket), Key: aws.String(obj.Key)})
	if err != nil {
		return nil, getError(err)
	}
	obj.Size = aws.ToInt64(out.ContentLength)
	obj.ETag = aws.ToString(out.ETag)
	if out.LastModified != nil {
		obj.LastModified = *out.LastModified
	}
	return &Body{ctx: ctx, client: client, obj: obj, rc: out.Body}, nil
}

// Errors of Open for an object that is not there: reading it again
// cannot help.
var (
	ErrNoSuchObject = errors.New("no such object")
	ErrNoSuchBucket = errors.New("no such bucket")
)

// getError names what went wrong with a GET.
func getError(err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchKey":
			return fmt.Errorf("%w (deleted since it was listed or announced?)", ErrNoSuchObject)
		case "NoSuchBucket":
			return ErrNoSuchBucket
		case "PreconditionFailed":
			return errors.New("the object changed while it was read")
		}
	}
	return fmt.Errorf("get object: %w", explain(err))
}

// Object returns the object, with its size, ETag and LastModified as S3
// gave them.
func (b *Body) Object() Object { return b.obj }

// Offset returns how many bytes have been read.
func (b *Body) Offset() int64 { return b.off }

// Err returns the error that ended the body's transfer for good (the
// connection failed more than MaxResumes times, or the object changed),
// as opposed to a problem in its content; nil while none did.
func (b *Body) Err() error { return b.err }

// Read reads the body, resuming after a failed connection.
func (b *Body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.closed {
		return 0, errClosed
	}
	for {
		if b.rc == nil {
			if err := b.resume(); err != nil {
				b.err = err
				return 0, err
			}
		}
		n, err := b.rc.Read(p)
		b.off += int64(n)
		if err == nil || errors.Is(err, io.EOF) {
			return n, err
		}
		b.rc.Close()
		b.rc = nil
		if b.resumes >= MaxResumes || b.ctx.Err() != nil {
			b.err = fmt.Errorf("read object at byte %d: %w", b.off, err)
			return n, b.err
		}
		b.resumes++
		if n > 0 {
			return n, nil
		}
	}
}

// resume asks for the rest of the object from where the read stopped.
func (b *Body) resume() error {
	in := &s3.GetObjectInput{
		Bucket: aws.String(b.obj.Bucket), Key: aws.String(b.obj.Key),
		Range: aws.String(fmt.Sprintf("bytes=%d-", b.off)),
	}
	if b.obj.ETag != "" {
		in.IfMatch = aws.String(b.obj.ETag)
	}
	out, err := b.client.GetObject(b.ctx, in)
	if err != nil {
		return fmt.Errorf("resume reading the object at byte %d: %w", b.off, getError(err))
	}
	b.rc = out.Body
	return nil
}

// Close releases the connection.
func (b *Body) Close() error {
	b.closed = true
	if b.rc == nil {
		return nil
	}
	err := b.rc.Close()
	b.rc = nil
	return err
}

var errClosed = errors.New("s3 object body read after close")
