package config

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/trailwatch/trailwatch/engine/cloudwatch"
	"github.com/trailwatch/trailwatch/engine/files"
	"github.com/trailwatch/trailwatch/engine/kinesis"
	"github.com/trailwatch/trailwatch/engine/s3sqs"
	"github.com/trailwatch/trailwatch/engine/source"
)

// The source types a configuration may use, one line each: the key under
// `source:`, the check of its block and the constructor (see
// engine/source.Register). Each source keeps its Config, its check and its
// constructor beside its code.
func init() {
	source.Register("cloudwatch", source.Prepare[cloudwatch.Config], cloudwatch.Open)
	source.Register("files", source.Prepare[files.Config], files.Open)
	source.Register("kinesis", source.Prepare[kinesis.Config], kinesis.Open)
	source.Register("s3sqs", source.Prepare[s3sqs.Config], s3sqs.Open)
}

// Source is the `source` block: one registered source type and its
// configuration, e.g.
//
//	source:
//	  cloudwatch:
//	    log_groups: [aws-cloudtrail-logs]
type Source struct {
	// Type is the block's key, a registered source type ("" when the
	// configuration has no source, as the Lambda's bundle).
	Type string
	// Spec is the type's configuration, a pointer (e.g.
	// *cloudwatch.Config), with its defaults applied and validated.
	Spec any
}

// Build makes the source the block describes.
func (s Source) Build(ctx context.Context, deps source.Deps) (source.Source, error) {
	if s.Type == "" {
		return nil, fmt.Errorf("no source is configured (one of %s)", strings.Join(source.Types(), ", "))
	}
	k, ok := source.Lookup(s.Type)
	if !ok {
		return nil, fmt.Errorf("unknown source type %q", s.Type)
	}
	return k.Build(ctx, s.Spec, deps)
}

// SourceAs returns the configuration of s when s is of the type whose
// configuration is a T (e.g. SourceAs[cloudwatch.Config]), and nil
// otherwise.
func SourceAs[T any](s Source) *T {
	spec, _ := s.Spec.(*T)
	return spec
}

// SharedStateRegion is the region of shared_state's table: its own, else
// the source's when its configuration names one (an AWSRegion method, as
// source.kinesis has), else "" (the SDK's default chain).
func (c *Config) SharedStateRegion() string {
	if c.SharedState != nil && c.SharedState.Region != "" {
		return c.SharedState.Region
	}
	if r, ok := c.Source.Spec.(interface{ AWSRegion() string }); ok {
		return r.AWSRegion()
	}
	return ""
}

// source decodes the `source` block: exactly one registered type, its
// keys decoded strictly and its own check's problems placed at their keys.
func (p *parser) source(n *yaml.Node, cfg *Config) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	types := strings.Join(source.Types(), ", ")
	if n.Kind != yaml.MappingNode || len(n.Content) == 0 {
		p.errorf(n, "source: want a mapping with one source type (one of %s), not %s", types, kindName(n))
		return
	}
	if len(n.Content) > 2 {
		var given []string
		for i := 0; i+1 < len(n.Content); i += 2 {
			given = append(given, n.Content[i].Value)
		}
		p.errorf(n, "source: give one source type (one of %s), not %d (%s)", types, len(given), strings.Join(given, ", "))
		return
	}
	key, body := n.Content[0], n.Content[1]
	k, ok := source.Lookup(key.Value)
	if !ok {
		p.errorf(key, "source: unknown type %q (one of %s)", key.Value, types)
		return
	}
	what := "source." + k.Name()
	spec := k.NewSpec()
	// A value of the wrong form stays zero: the type's own check still
	// runs, so every problem of the block is reported at once.
	p.decodeStrictAt(body, spec, what)
	if err := k.Validate(spec); err != nil {
		p.validation(body, what, err)
	}
	cfg.Source = Source{Type: k.Name(), Spec: spec}
}

// sourceBlockType is the `source` block as one struct type, a field a
// registered source type: what a configuration may hold there, for the
// configuration reference and schema.
func sourceBlockType() reflect.Type {
	var fields []reflect.StructField
	for _, name := range source.Types() {
		k, _ := source.Lookup(name)
		fields = append(fields, reflect.StructField{
			Name: "F" + strconv.Itoa(len(fields)),
			Type: reflect.TypeOf(k.NewSpec()),
			Tag:  reflect.StructTag(`yaml:"` + name + `"`),
		})
	}
	return reflect.StructOf(fields)
}
