package files

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"

	"github.com/trailwatch/trailwatch/engine/source"
)

// The `source.files` type: CloudTrail log files that arrive in local
// directories (a sync of the trail's bucket, a shipper's spool directory),
// read by `run` exactly as replay reads them, through the pipeline's
// source contract.
var _ source.Source = (*Source)(nil)

// Default values that SetDefaults fills in.
const (
	DefaultPollInterval = 10 * time.Second
	DefaultBatchRecords = 500
	DefaultStart        = "beginning"
)

// batchBytes bounds the records of one batch, whatever batch_records says.
const batchBytes = 4 << 20

// Config is the `source.files` block of the config file.
type Config struct {
	// Paths are the files and directories to read. A directory is read as
	// replay reads it: its event files (*.json, *.jsonl, *.ndjson, with or
	// without .gz; hidden ones left out) in lexical order, which is time
	// order in CloudTrail's AWSLogs/... layout.
	Paths []string `yaml:"paths"`
	// PollInterval is how often the paths are listed again for new files
	// and files that grew.
	PollInterval time.Duration `yaml:"poll_interval"`
	// BatchRecords is how many records go to the pipeline in one batch
	// (one outbox transaction and one saved position).
	BatchRecords int `yaml:"batch_records"`
	// Start says what the first run reads: "beginning", every file present
	// and every later one; "now", only the files that appear, or grow,
	// after it started.
	Start string `yaml:"start"`
}

// SetDefaults fills in the zero fields with their defaults.
func (c *Config) SetDefaults() {
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.BatchRecords == 0 {
		c.BatchRecords = DefaultBatchRecords
	}
	if c.Start == "" {
		c.Start = DefaultStart
	}
}

// Validate reports every problem with the configuration at once. Call
// SetDefaults first.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Paths) == 0 {
		errs = append(errs, errors.New("paths: at least one file or directory is required"))
	}
	seen := map[string]bool{}
	for i, p := range c.Paths {
		switch {
		case strings.TrimSpace(p) == "":
			errs = append(errs, fmt.Errorf("paths[%d]: empty path", i))
		case p == "-":
			errs = append(errs, fmt.Errorf("paths[%d]: standard input cannot be read by run (it has no position to resume from): use replay", i))
		case strings.Contains(p, "://"):
			errs = append(errs, fmt.Errorf("paths[%d]: %s is not a local path (for CloudTrail's bucket use source.s3sqs)", i, p))
		case seen[filepath.Clean(p)]:
			errs = append(errs, fmt.Errorf("paths[%d]: %s is given twice", i, p))
		}
		seen[filepath.Clean(p)] = true
	}
	if c.PollInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("poll_interval: %s is below the minimum of 100ms", c.PollInterval))
	}
	if c.BatchRecords < 1 || c.BatchRecords > 100000 {
		errs = append(errs, fmt.Errorf("batch_records: %d is outside 1 to 100000", c.BatchRecords))
	}
	if c.Start != "beginning" && c.Start != "now" {
		errs = append(errs, fmt.Errorf("start: %q is neither beginning nor now", c.Start))
	}
	return errors.Join(errs...)
}

// SourceOptions adjust a Source.
type SourceOptions struct {
	// StateDir holds the positions (positions.db); it must exist.
	StateDir string
	// Logger receives warnings (an input that cannot be read); nil
	// discards.
	Logger *slog.Logger
	// Registerer receives the source's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// After is the timer between listings; nil means time.After.
	After func(time.Duration) <-chan time.Time
	// Alive, if set, is called with a configured path after each listing
	// of it and after each batch read under it (readiness).
	Alive func(path string)
}

// Source reads CloudTrail log files from local paths for `run`. It lists
// the paths every poll interval and reads each event file once, in
// batches, keeping in the state directory how far it has handed each file
// over: a restart goes on after the last batch the pipeline accepted, and
// a file that grows (JSON Lines appended) is read on from the record after
// the last one handled. A file must be whole when it appears under its
// name: write it elsewhere (or under a hidden name) and rename it, as
// `aws s3 sync` and CloudTrail's own delivery do. A file replaced by a
// shorter one is read from its start.
type Source struct {
	cfg   Config
	opts  SourceOptions
	log   *slog.Logger
	after func(time.Duration) <-chan time.Time

	filesRead prometheus.Counter
	badInputs prometheus.Counter

	mu     sync.Mutex
	warned map[string]bool // bad inputs already logged, by place and error
}

// NewSource returns the source of a prepared configuration.
func NewSource(cfg Config, opts SourceOptions) (*Source, error) {
	if opts.StateDir == "" {
		return nil, errors.New("files source: no state directory")
	}
	s := &Source{cfg: cfg, opts: opts, log: opts.Logger, after: opts.After, warned: map[string]bool{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.after == nil {
		s.after = time.After
	}
	s.filesRead = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "trailwatch_files_read_total", Help: "Event files the files source read to their end.",
	})
	s.badInputs = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "trailwatch_files_bad_inputs_total", Help: "Inputs (or parts of one) the files source could not read as CloudTrail records.",
	})
	if err := source.RegisterMetrics(opts.Registerer, "files", s.filesRead, s.badInputs); err != nil {
		return nil, err
	}
	return s, nil
}

// Open builds the source of a prepared `source.files` block for the
// registry: positions in deps.StateDir/files, readiness from the listings
// and batches of each path.
func Open(_ context.Context, cfg *Config, deps source.Deps) (source.Source, error) {
	// A listing returns within a poll interval; reading a large backlog
	// hands batches over all along.
	polls, err := deps.PollTracker(cfg.Paths, max(3*cfg.PollInterval, 45*time.Second))
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(deps.StateDir, "files")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	src, err := NewSource(*cfg, SourceOptions{
		StateDir: dir, Logger: deps.Logger, Registerer: deps.Registerer, Alive: polls.Polled,
	})
	if err != nil {
		return nil, err
	}
	return source.WithReady(src, polls), nil
}

// Check reports every configured path that cannot be read.
func (s *Source) Check(context.Context) error {
	var errs []error
	for _, p := range s.cfg.Paths {
		st, err := os.Stat(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if st.IsDir() {
			_, err = os.ReadDir(p)
		} else {
			var f *os.File
			if f, err = os.Open(p); err == nil {
				f.Close()
			}
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// positionsFile is the source's state in its state directory.
const positionsFile = "positions.db"

var (
	positionsBucket = []byte("files")
	metaBucket      = []byte("meta")
	startedKey      = []byte("started")
)

// position is how far a file was handed over.
type position struct {
	// Size and ModTime (ns) are the file's when it was listed: a file
	// whose size or time changed since is read again (on from Line/Index
	// unless it shrank).
	Size    int64 `json:"size"`
	ModTime int64 `json:"mtime"`
	// Line or Index is the place of the last record handled.
	Line  int `json:"line,omitempty"`
	Index int `json:"index,omitempty"`
	// Done says the file was read to its end.
	Done bool `json:"done,omitempty"`
}

// Run lists and reads the paths until ctx ends (see Source). Its
// positions are saved after every batch the handler accepted.
func (s *Source) Run(ctx context.Context, handle source.Handler) error {
	path := filepath.Join(s.opts.StateDir, positionsFile)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return fmt.Errorf("open %s: another trailwatch holds it", path)
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	first := false
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(positionsBucket); err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(metaBucket)
		if err != nil {
			return err
		}
		first = meta.Get(startedKey) == nil
		return nil
	})
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	if first && s.cfg.Start == "now" {
		if err := s.skipPresent(ctx, db); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	if first {
		if err := db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(metaBucket).Put(startedKey, []byte(time.Now().UTC().Format(time.RFC3339)))
		}); err != nil {
			return fmt.Errorf("save %s: %w", path, err)
		}
	}
	for {
		if err := s.scan(ctx, db, handle); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.after(s.cfg.PollInterval):
		}
	}
}

// found is an event file of a listing, under the configured path root.
type found struct {
	listed
	root string
}

// list lists the configured paths.
func (s *Source) list() []found {
	var out []found
	for _, root := range s.cfg.Paths {
		st, err := os.Stat(root)
		switch {
		case err != nil:
			s.bad(&BadInput{Place: root, Err: err})
			continue
		case st.IsDir():
			for _, f := range list(root, Options{}, s.bad) {
				out = append(out, found{f, root})
			}
		case !st.Mode().IsRegular():
			// A FIFO would block every listing.
			s.bad(&BadInput{Place: root, Err: fmt.Errorf("not a regular file (%s), skipped", st.Mode().Type())})
			continue
		default:
			out = append(out, found{listed{root, st}, root})
		}
		if s.opts.Alive != nil {
			s.opts.Alive(root)
		}
	}
	return out
}

// skipPresent marks every file present as read to its last record (start:
// now). It reads them to find that record: a line appended later is
// read from the record after it.
func (s *Source) skipPresent(ctx context.Context, db *bolt.DB) error {
	for _, f := range s.list() {
		p := position{Size: f.info.Size(), ModTime: f.info.ModTime().UnixNano(), Done: true}
		err := readFile(ctx, f.path, f.info, func(r Record) error {
			p.Line, p.Index = r.Line, r.Index
			return nil
		}, func(*BadInput) {})
		if err != nil {
			return err
		}
		if err := s.save(db, f.path, p); err != nil {
			return err
		}
	}
	return nil
}

// scan reads what is new in one listing.
func (s *Source) scan(ctx context.Context, db *bolt.DB, handle source.Handler) error {
	files := s.list()
	listed := make(map[string]bool, len(files))
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		listed[f.path] = true
		var pos position
		var known bool
		if err := db.View(func(tx *bolt.Tx) error {
			pos, known = getPosition(tx.Bucket(positionsBucket), f.path)
			return nil
		}); err != nil {
			return err
		}
		size, mtime := f.info.Size(), f.info.ModTime().UnixNano()
		switch {
		case known && pos.Done && pos.Size == size && pos.ModTime == mtime:
			continue
		case known && size < pos.Size:
			// Replaced by a shorter file: a new one.
			pos = position{}
		}
		pos.Size, pos.ModTime, pos.Done = size, mtime, false
		if err := s.read(ctx, db, f, pos, handle); err != nil {
			return err
		}
	}
	return s.forget(db, listed)
}

// read hands over the records of one file after pos, in batches, saving
// the position after each.
func (s *Source) read(ctx context.Context, db *bolt.DB, f found, pos position, handle source.Handler) error {
	var (
		data   []byte
		spans  [][2]int
		places []source.Place
	)
	flush := func() error {
		if len(places) == 0 {
			return nil
		}
		b := source.Batch{Origin: f.path, Records: make([]source.Record, len(places))}
		for i, sp := range spans {
			b.Records[i] = source.Record{Data: data[sp[0]:sp[1]:sp[1]], Place: places[i]}
		}
		if err := handle(ctx, b); err != nil {
			return err
		}
		last := places[len(places)-1]
		pos.Line, pos.Index = last.Line, last.Index
		if err := s.save(db, f.path, pos); err != nil {
			return err
		}
		if s.opts.Alive != nil {
			s.opts.Alive(f.root)
		}
		// The handler is done with the batch: the next one gets new
		// memory all the same, so that nothing it kept is overwritten.
		data, spans, places = nil, nil, nil
		return nil
	}
	err := readFile(ctx, f.path, f.info, func(r Record) error {
		if (r.Line > 0 && r.Line <= pos.Line) || (r.Index > 0 && r.Index <= pos.Index) {
			return nil // handed over before
		}
		spans = append(spans, [2]int{len(data), len(data) + len(r.Data)})
		data = append(data, r.Data...)
		places = append(places, r.place())
		if len(places) >= s.cfg.BatchRecords || len(data) >= batchBytes {
			return flush()
		}
		return nil
	}, s.bad)
	if err == nil {
		err = flush()
	}
	if err != nil {
		return err
	}
	pos.Done = true
	if err := s.save(db, f.path, pos); err != nil {
		return err
	}
	s.filesRead.Inc()
	return nil
}

// save writes one file's position.
func (s *Source) save(db *bolt.DB, path string, pos position) error {
	err := db.Update(func(tx *bolt.Tx) error { return putPosition(tx.Bucket(positionsBucket), path, pos) })
	if err != nil {
		return fmt.Errorf("save the position of %s: %w", path, err)
	}
	return nil
}

// forget drops the positions of files that no longer exist, so that the
// state does not grow with every file ever read.
func (s *Source) forget(db *bolt.DB, listed map[string]bool) error {
	var gone [][]byte
	if err := db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(positionsBucket).ForEach(func(k, _ []byte) error {
			if listed[string(k)] {
				return nil
			}
			if _, err := os.Lstat(string(k)); errors.Is(err, fs.ErrNotExist) {
				gone = append(gone, append([]byte(nil), k...))
			}
			return nil
		})
	}); err != nil || len(gone) == 0 {
		return err
	}
	return db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(positionsBucket)
		for _, k := range gone {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// bad reports an input that could not be read, once per place and error:
// the listing that finds an unreadable file again every poll interval
// must not repeat the warning.
func (s *Source) bad(b *BadInput) {
	key := b.Place + "\x00" + b.Err.Error()
	s.mu.Lock()
	seen := s.warned[key]
	s.warned[key] = true
	s.mu.Unlock()
	if seen {
		return
	}
	s.badInputs.Inc()
	s.log.Warn("skipped an input that is not CloudTrail records", "place", b.Place, "err", b.Err.Error())
}

func getPosition(b *bolt.Bucket, path string) (position, bool) {
	v := b.Get([]byte(path))
	if v == nil {
		return position{}, false
	}
	var p position
	if json.Unmarshal(v, &p) != nil {
		// Unreadable: read the file again (the pipeline drops repeats).
		return position{}, false
	}
	return p, true
}

func putPosition(b *bolt.Bucket, path string, p position) error {
	v, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return b.Put([]byte(path), v)
}

// place is where the record was read, in the pipeline's terms.
func (r Record) place() source.Place {
	return source.Place{Object: r.File, Line: r.Line, Index: r.Index}
}
