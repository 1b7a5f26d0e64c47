// Package source is the contract between trailwatch's pipeline and the
// places CloudTrail records come from: a Source hands batches of raw
// records to a Handler and advances its own durable position past a batch
// only when the handler accepted it. Every source implements it
// (engine/cloudwatch, engine/kinesis, engine/files, and any later one), and
// registers its type under `source:` in the configuration with one call to
// Register (see internal/config/sources.go).
//
// The package is a leaf: it imports nothing of trailwatch, so that every
// source package and the pipeline (engine, engine/decide) can depend on it.
package source

import (
	"context"
	"fmt"
	"time"
)

// Source delivers batches of raw records.
type Source interface {
	// Check verifies, before the pipeline starts, that the source can
	// read: the log groups, stream or queue exist and the credentials may
	// read them. It reports every problem at once and changes nothing.
	Check(ctx context.Context) error
	// Run reads until ctx ends, calling handle for each batch. It advances
	// its durable position past a batch only when handle returned nil for
	// it; when handle fails, Run stops and returns the error, and the batch
	// is read again by the next Run. It returns nil when ctx ends, after
	// persisting its position. handle may be called concurrently for
	// batches of different origins (Kinesis shards); it is never called
	// concurrently for one origin.
	Run(ctx context.Context, handle Handler) error
}

// Handler takes one batch. An error means nothing of the batch may be
// considered done.
type Handler func(ctx context.Context, b Batch) error

// Batch is consecutive records of one origin.
type Batch struct {
	// Origin names where the records were read: the log group (as
	// configured) for CloudWatch Logs and for subscription payloads, the
	// object (file path, s3:// URI) for files. The dead man's switch
	// watches origins.
	Origin string
	// Records are the records in the order the source read them.
	Records []Record
	// Newest is the newest record's timestamp (for CloudTrail, its
	// eventTime); zero when unknown.
	Newest time.Time
}

// Record is one raw record and where it was read.
type Record struct {
	// Data is the record: a CloudTrail JSON record, or whatever else was
	// written to the origin (skipped and counted by the pipeline).
	Data []byte
	// Place is where Data was read, for the report of a skipped record.
	Place Place
}

// Place says where a record was read. A source fills what it knows.
type Place struct {
	// LogGroup and LogStream are the CloudWatch Logs log group and stream
	// the record was written to.
	LogGroup, LogStream string
	// EventID is the id of the log event that carried the record
	// (CloudWatch Logs' own id, not the CloudTrail eventID).
	EventID string
	// Object is the file, "<stdin>", or object URI the record was read
	// from.
	Object string
	// Line is the 1-based line of a JSON Lines object; Index the 1-based
	// position in a {"Records": [...]} document (Line is then 0).
	Line, Index int
}

// String is the place for a message: "file:line", "file: record N", or
// "log group G stream S event E".
func (p Place) String() string {
	switch {
	case p.Object != "" && p.Line > 0:
		return fmt.Sprintf("%s:%d", p.Object, p.Line)
	case p.Object != "" && p.Index > 0:
		return fmt.Sprintf("%s: record %d", p.Object, p.Index)
	case p.Object != "":
		return p.Object
	}
	s := "log group " + p.LogGroup
	if p.LogStream != "" {
		s += " stream " + p.LogStream
	}
	if p.EventID != "" {
		s += " event " + p.EventID
	}
	return s
}

// LogAttrs are the place as slog key-value pairs, the ones it knows only.
func (p Place) LogAttrs() []any {
	var out []any
	add := func(k, v string) {
		if v != "" {
			out = append(out, k, v)
		}
	}
	add("log_group", p.LogGroup)
	add("log_stream", p.LogStream)
	add("log_event_id", p.EventID)
	add("object", p.Object)
	if p.Line > 0 {
		out = append(out, "line", p.Line)
	}
	if p.Index > 0 {
		out = append(out, "record", p.Index)
	}
	return out
}

// Ready is implemented by a source that can say whether it is reading now
// (a recent successful read or lease refresh). `run` serves it as the
// "source" check of /readyz. Its error is shown to whoever asks: it must
// hold no secret.
type Ready interface {
	Ready(ctx context.Context) error
}

// Origins is implemented by a source whose origins are known before it
// reads (CloudWatch log groups): the dead man's switch (quiet_after)
// watches them. A source that does not implement it cannot be watched.
type Origins interface {
	Origins() []string
}
