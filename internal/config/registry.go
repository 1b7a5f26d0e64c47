package config

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sort"

	"github.com/trailwatch/trailwatch/notifiers"
)

// Deps are what notifiers may need from the process that builds them.
type Deps struct {
	Logger *slog.Logger
}

func (d Deps) logger() *slog.Logger {
	if d.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Logger
}

type kind struct {
	specType reflect.Type
	validate func(spec any) error
	build    func(ctx context.Context, name string, spec any, deps Deps) (notifiers.Notifier, error)
}

var registry = map[string]kind{}

// register adds a notifier type whose configuration is a T.
func register[T any](typ string, validate func(*T) error, build func(ctx context.Context, name string, spec *T, deps Deps) (notifiers.Notifier, error)) {
	registry[typ] = kind{
		specType: reflect.TypeOf((*T)(nil)).Elem(),
		validate: func(spec any) error { return validate(spec.(*T)) },
		build: func(ctx context.Context, name string, spec any, deps Deps) (notifiers.Notifier, error) {
			return build(ctx, name, spec.(*T), deps)
		},
	}
}

// NotifierTypes lists the notifier types a configuration may use.
func NotifierTypes() []string {
	out := make([]string, 0, len(registry))
	for k := range registry {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Build constructs the notifier n describes.
func (n *Notifier) Build(ctx context.Context, deps Deps) (notifiers.Notifier, error) {
	k, ok := registry[n.Type]
	if !ok {
		return nil, fmt.Errorf("notifier %q: unknown type %q", n.Name, n.Type)
	}
	nt, err := k.build(ctx, n.Name, n.Spec, deps)
	if err != nil {
		return nil, fmt.Errorf("notifier %q: %w", n.Name, err)
	}
	return nt, nil
}

// BuildNotifiers constructs every notifier of the configuration, by name.
func (c *Config) BuildNotifiers(ctx context.Context, deps Deps) (map[string]notifiers.Notifier, error) {
	out := make(map[string]notifiers.Notifier, len(c.Notifiers))
	for i := range c.Notifiers {
		nt, err := c.Notifiers[i].Build(ctx, deps)
		if err != nil {
			return nil, err
		}
		out[c.Notifiers[i].Name] = nt
	}
	return out, nil
}
