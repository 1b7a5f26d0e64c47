package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Deps are what a source may need from the process that builds it.
type Deps struct {
	// Logger receives the source's warnings and progress; never nil.
	Logger *slog.Logger
	// Registerer receives the source's metrics; never nil.
	Registerer prometheus.Registerer
	// StateDir is the process's state directory (it exists); a source
	// keeps its durable position in a sub-directory of its own.
	StateDir string
}

// PollTracker returns a PollTracker of names (see NewPollTracker),
// registered with the Registerer: what a source that implements Ready
// needs.
func (d Deps) PollTracker(names []string, maxAge time.Duration) (*PollTracker, error) {
	p := NewPollTracker(names, maxAge, nil)
	if err := d.Registerer.Register(p); err != nil {
		return nil, err
	}
	return p, nil
}

// Kind is one registered source type: the key under `source:` in the
// configuration, the Go type its block decodes into, and how to check and
// build it.
type Kind struct {
	name     string
	specType reflect.Type
	validate func(spec any) error
	build    func(ctx context.Context, spec any, deps Deps) (Source, error)
}

var (
	mu    sync.RWMutex
	kinds = map[string]*Kind{}
)

// Register adds the source type name, whose configuration block decodes
// (strictly: unknown keys are errors) into a C. validate applies C's
// defaults and checks it, returning every problem (errors.Join); build
// makes the source from a validated C. Registering a name twice panics.
//
// Adding a source to trailwatch is its package plus one call:
//
//	source.Register("cloudwatch", source.Prepare[cloudwatch.Config], cloudwatch.Open)
func Register[C any](name string, validate func(*C) error, build func(ctx context.Context, c *C, deps Deps) (Source, error)) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := kinds[name]; dup {
		panic("source: type " + name + " registered twice")
	}
	kinds[name] = &Kind{
		name:     name,
		specType: reflect.TypeOf((*C)(nil)).Elem(),
		validate: func(spec any) error { return validate(spec.(*C)) },
		build: func(ctx context.Context, spec any, deps Deps) (Source, error) {
			return build(ctx, spec.(*C), deps)
		},
	}
}

// Lookup returns the source type name, if one is registered.
func Lookup(name string) (*Kind, bool) {
	mu.RLock()
	defer mu.RUnlock()
	k, ok := kinds[name]
	return k, ok
}

// Types lists the registered source types, sorted.
func Types() []string {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]string, 0, len(kinds))
	for k := range kinds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Name is the type's key under `source:`.
func (k *Kind) Name() string { return k.name }

// NewSpec returns a new zero configuration of the type: a pointer to its
// C, for the configuration loader to decode into.
func (k *Kind) NewSpec() any { return reflect.New(k.specType).Interface() }

// Validate applies the defaults of spec (a value NewSpec returned) and
// checks it.
func (k *Kind) Validate(spec any) error { return k.validate(spec) }

// Build makes the source spec describes.
func (k *Kind) Build(ctx context.Context, spec any, deps Deps) (Source, error) {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Registerer == nil {
		deps.Registerer = prometheus.NewRegistry()
	}
	src, err := k.build(ctx, spec, deps)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", k.name, err)
	}
	return src, nil
}

// RegisterMetrics registers the collectors of a source of type kind with
// reg (nil registers nothing). A registry serves one source of a type: a
// second one's collectors are refused with an error that says so.
func RegisterMetrics(reg prometheus.Registerer, kind string, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return fmt.Errorf("register %s source metrics: another %s source uses this registry: %w", kind, kind, err)
			}
			return fmt.Errorf("register %s source metrics: %w", kind, err)
		}
	}
	return nil
}
