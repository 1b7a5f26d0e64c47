// Package file appends alerts to a file, or writes them to standard output,
// as JSON Lines of trailwatch's public alert form: one alert per line,
// written with a single write call so lines never interleave.
package file

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/trailwatch/trailwatch/notifiers"
)

// Stdout is the Path that selects standard output.
const Stdout = "-"

// Config is the YAML configuration of a file notifier.
type Config struct {
	// Path is the file to append to, created with mode 0600 if missing, or
	// "-" for standard output.
	Path string `yaml:"path"`
	// Fsync makes every Notify flush the file to stable storage before it
	// returns, so an alert acknowledged to the outbox survives a power
	// loss. It is ignored for standard output.
	Fsync bool `yaml:"fsync,omitempty"`
}

// Validate reports every problem with the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.Path) == "" {
		errs = append(errs, errors.New(`file: path is required (use "-" for standard output)`))
	}
	if strings.ContainsRune(c.Path, 0) {
		errs = append(errs, errors.New("file: path contains a NUL byte"))
	}
	return errors.Join(errs...)
}

// Option adjusts a Notifier built by New.
type Option func(*Notifier)

// WithStdout makes Path "-" write to w instead of os.Stdout.
func WithStdout(w io.Writer) Option { return func(n *Notifier) { n.stdout = w } }

// WithLogger makes the notifier log to l instead of discarding.
func WithLogger(l *slog.Logger) Option { return func(n *Notifier) { n.logger = l } }

// Notifier writes alerts as JSON Lines. It is safe for concurrent use.
type Notifier struct {
	path   string
	fsync  bool
	stdout io.Writer
	logger *slog.Logger

	mu sync.Mutex
	w  io.Writer
	f  *os.File // nil for standard output
}

var _ notifiers.Notifier = (*Notifier)(nil)

// New validates cfg and opens the file for appending.
func New(cfg Config, opts ...Option) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Notifier{
		path:   cfg.Path,
		fsync:  cfg.Fsync,
		stdout: os.Stdout,
		logger: slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(n)
	}
	if n.path == Stdout {
		n.w = n.stdout
		return n, nil
	}
	f, err := open(n.path)
	if err != nil {
		return nil, err
	}
	n.f, n.w = f, f
	return n, nil
}

func open(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("file: open alert file: %w", err)
	}
	return f, nil
}

// Notify appends a as one JSON line. A failed write or sync is retryable
// (a full disk may be cleared); an alert that cannot be encoded is not.
func (n *Notifier) Notify(ctx context.Context, a notifiers.Alert) error {
	line, err := json.Marshal(a)
	if err != nil {
		return notifiers.Permanent(fmt.Errorf("file: encode alert: %w", err))
	}
	line = append(line, '\n')
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("file: write alert: %w", err)
	}

	n.mu.Lock()
	defer n.mu.Unlock()
	if n.w == nil {
		return errors.New("file: write alert: notifier is closed")
	}
	if _, err := n.w.Write(line); err != nil {
		return fmt.Errorf("file: write alert: %w", err)
	}
	if n.fsync && n.f != nil {
		if err := n.f.Sync(); err != nil {
			return fmt.Errorf("file: sync alert file: %w", err)
		}
	}
	return nil
}

// Reopen closes and reopens the file, so that alerts go to a new file after
// an external log rotation renamed the old one. It does nothing for
// standard output.
func (n *Notifier) Reopen() error {
	if n.path == Stdout {
		return nil
	}
	f, err := open(n.path)
	if err != nil {
		return err
	}
	n.mu.Lock()
	old := n.f
	n.f, n.w = f, f
	n.mu.Unlock()
	if old != nil {
		if err := old.Close(); err != nil {
			n.logger.Warn("close rotated alert file", "path", n.path, "err", err)
		}
	}
	return nil
}

// Close closes the file. Notify fails after Close. Standard output is left
// open.
func (n *Notifier) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	f := n.f
	n.f, n.w = nil, nil
	if f == nil {
		return nil
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("file: close alert file: %w", err)
	}
	return nil
}
