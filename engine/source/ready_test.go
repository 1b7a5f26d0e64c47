package source_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailwatch/trailwatch/engine/source"
)

// originSource is memSource with known origins.
type originSource struct{ *memSource }

func (o originSource) Origins() []string { return []string{o.cfg.Origin} }

// TestWithReady checks that the wrapper adds Ready and keeps what the
// source is: its Run and Check, and Origins only when it has them.
func TestWithReady(t *testing.T) {
	now := time.Date(2024, 5, 1, 8, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name    string
		src     source.Source
		origins bool
	}{
		{"a source without origins", &memSource{cfg: memConfig{Records: []string{"x"}, Origin: "trail"}}, false},
		{"a source with origins", originSource{&memSource{cfg: memConfig{Records: []string{"x"}, Origin: "trail"}}}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			polls := source.NewPollTracker([]string{"trail"}, time.Minute, func() time.Time { return now })
			s := source.WithReady(tt.src, polls)
			r, ok := s.(source.Ready)
			if !ok {
				t.Fatal("WithReady's source is not a source.Ready")
			}
			if err := r.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "trail (not read yet)") {
				t.Errorf("Ready before a read = %v, want trail not read yet", err)
			}
			polls.Polled("trail")
			if err := r.Ready(context.Background()); err != nil {
				t.Errorf("Ready after a read = %v", err)
			}
			o, ok := s.(source.Origins)
			if ok != tt.origins {
				t.Fatalf("WithReady's source is an Origins: %v, want %v", ok, tt.origins)
			}
			if ok && (len(o.Origins()) != 1 || o.Origins()[0] != "trail") {
				t.Errorf("Origins() = %v, want [trail]", o.Origins())
			}
			ctx, cancel := context.WithCancel(context.Background())
			var got []source.Batch
			err := s.Run(ctx, func(_ context.Context, b source.Batch) error {
				got = append(got, b)
				cancel()
				return nil
			})
			if err != nil || len(got) != 1 || string(got[0].Records[0].Data) != "x" {
				t.Errorf("Run = %v with batches %+v, want the source's one batch", err, got)
			}
		})
	}
}

type prepared struct {
	N        int
	defaults bool
}

func (p *prepared) SetDefaults() { p.defaults = true }

func (p *prepared) Validate() error {
	if p.N < 0 {
		return errors.New("n: must not be negative")
	}
	return nil
}

// TestPrepare checks that Prepare applies the defaults before the check.
func TestPrepare(t *testing.T) {
	ok := prepared{N: 1}
	if err := source.Prepare(&ok); err != nil || !ok.defaults {
		t.Errorf("Prepare = %v, defaults applied %v; want nil, true", err, ok.defaults)
	}
	bad := prepared{N: -1}
	if err := source.Prepare(&bad); err == nil || !bad.defaults {
		t.Errorf("Prepare = %v, defaults applied %v; want an error, true", err, bad.defaults)
	}
}

// TestRegisterMetrics checks that a second source of a type on one
// registry is refused with a message that says so, and that a nil
// registry takes nothing.
func TestRegisterMetrics(t *testing.T) {
	newCounter := func() prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "trailwatch_test_reads_total", Help: "Reads."})
	}
	reg := prometheus.NewRegistry()
	if err := source.RegisterMetrics(reg, "files", newCounter()); err != nil {
		t.Fatal(err)
	}
	err := source.RegisterMetrics(reg, "files", newCounter())
	if err == nil || !strings.Contains(err.Error(), "register files source metrics: another files source uses this registry") {
		t.Errorf("a second source's metrics: %v, want them refused", err)
	}
	if err := source.RegisterMetrics(nil, "files", newCounter()); err != nil {
		t.Errorf("nil registry: %v", err)
	}
}
