package source

import "context"

// WithReady returns src with r's Ready beside src's own methods: a Source
// that is also a Ready (served as /readyz "source"), and an Origins when
// src is one. It is how a source's Open hands over its readiness, e.g. the
// PollTracker Deps.PollTracker made:
//
//	return source.WithReady(src, polls), nil
func WithReady(src Source, r Ready) Source {
	w := withReady{Source: src, r: r}
	if o, ok := src.(Origins); ok {
		return withReadyOrigins{w, o}
	}
	return w
}

type withReady struct {
	Source
	r Ready
}

func (w withReady) Ready(ctx context.Context) error { return w.r.Ready(ctx) }

type withReadyOrigins struct {
	withReady
	o Origins
}

func (w withReadyOrigins) Origins() []string { return w.o.Origins() }

// Prepare is the validate function of Register for a configuration C whose
// pointer applies its defaults (SetDefaults) and checks itself (Validate,
// every problem at once):
//
//	source.Register("kinesis", source.Prepare[kinesis.Config], kinesis.Open)
func Prepare[C any, P interface {
	*C
	SetDefaults()
	Validate() error
}](c P) error {
	c.SetDefaults()
	return c.Validate()
}
