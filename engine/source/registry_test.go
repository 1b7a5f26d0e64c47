package source_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trailwatch/trailwatch/engine/source"
)

// memConfig is the configuration of a source made for the test.
type memConfig struct {
	Records []string `yaml:"records"`
	Origin  string   `yaml:"origin"`
}

// memSource hands its records over in one batch, then waits for the end.
type memSource struct{ cfg memConfig }

func (m *memSource) Check(context.Context) error { return nil }

func (m *memSource) Run(ctx context.Context, handle source.Handler) error {
	b := source.Batch{Origin: m.cfg.Origin}
	for i, r := range m.cfg.Records {
		b.Records = append(b.Records, source.Record{Data: []byte(r), Place: source.Place{Object: m.cfg.Origin, Line: i + 1}})
	}
	if err := handle(ctx, b); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

func TestRegistry(t *testing.T) {
	validate := func(c *memConfig) error {
		if c.Origin == "" {
			c.Origin = "mem"
		}
		if len(c.Records) == 0 {
			return errors.New("records: at least one is required")
		}
		return nil
	}
	var gotDeps source.Deps
	source.Register("registry-test", validate, func(_ context.Context, c *memConfig, deps source.Deps) (source.Source, error) {
		gotDeps = deps
		return &memSource{cfg: *c}, nil
	})

	if !strings.Contains(","+strings.Join(source.Types(), ",")+",", ",registry-test,") {
		t.Fatalf("Types() = %v, want registry-test among them", source.Types())
	}
	k, ok := source.Lookup("registry-test")
	if !ok || k.Name() != "registry-test" {
		t.Fatalf("Lookup = %v, %v", k, ok)
	}
	if _, ok := source.Lookup("no-such-source"); ok {
		t.Error("Lookup found an unregistered type")
	}
	spec := k.NewSpec()
	c, ok := spec.(*memConfig)
	if !ok {
		t.Fatalf("NewSpec() = %T, want *memConfig", spec)
	}
	if err := k.Validate(spec); err == nil || !strings.Contains(err.Error(), "records") {
		t.Errorf("Validate(empty) = %v, want the records problem", err)
	}
	c.Records = []string{`{"eventID":"e1"}`}
	if err := k.Validate(spec); err != nil || c.Origin != "mem" {
		t.Fatalf("Validate = %v, origin %q; want nil and the default applied", err, c.Origin)
	}
	src, err := k.Build(context.Background(), spec, source.Deps{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if gotDeps.Logger == nil || gotDeps.Registerer == nil {
		t.Errorf("Build gave the constructor deps %+v, want a logger and a registerer always", gotDeps)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var got source.Batch
	err = src.Run(ctx, func(_ context.Context, b source.Batch) error {
		got = b
		cancel()
		return nil
	})
	if err != nil || got.Origin != "mem" || len(got.Records) != 1 || got.Records[0].Place.String() != "mem:1" {
		t.Errorf("Run = %v with batch %+v", err, got)
	}

	defer func() {
		if recover() == nil {
			t.Error("registering a type twice did not panic")
		}
	}()
	source.Register("registry-test", validate, func(context.Context, *memConfig, source.Deps) (source.Source, error) { return nil, nil })
}

func TestBuildNamesTheType(t *testing.T) {
	source.Register("failing-test", func(*memConfig) error { return nil },
		func(context.Context, *memConfig, source.Deps) (source.Source, error) {
			return nil, errors.New("no credentials")
		})
	k, _ := source.Lookup("failing-test")
	_, err := k.Build(context.Background(), k.NewSpec(), source.Deps{Registerer: prometheus.NewRegistry()})
	if err == nil || err.Error() != "source failing-test: no credentials" {
		t.Errorf("Build error = %v, want it to name the source type", err)
	}
}

func TestPlace(t *testing.T) {
	tests := []struct {
		name  string
		place source.Place
		want  string
		attrs int
	}{
		{"json lines", source.Place{Object: "a.jsonl", Line: 3}, "a.jsonl:3", 2},
		{"cloudtrail document", source.Place{Object: "s3://b/k.json.gz", Index: 7}, "s3://b/k.json.gz: record 7", 2},
		{"log event", source.Place{LogGroup: "trail", LogStream: "111_CloudTrail_us-east-1", EventID: "3718"},
			"log group trail stream 111_CloudTrail_us-east-1 event 3718", 3},
		{"log group only", source.Place{LogGroup: "trail"}, "log group trail", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.place.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			if got := tt.place.LogAttrs(); len(got) != 2*tt.attrs {
				t.Errorf("LogAttrs() = %v, want %d pairs", got, tt.attrs)
			}
		})
	}
}
