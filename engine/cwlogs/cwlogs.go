// Package cwlogs is the codec of CloudWatch Logs subscription payloads: the
// gzip-compressed JSON that a subscription filter delivers, base64-encoded
// in `awslogs.data` to a Lambda function (engine/subscription) or as the
// data of a Kinesis record (engine/kinesis). It decodes them with a bound
// on the decompressed size, encodes them as CloudWatch Logs does (tests and
// tools), and turns their log events into the pipeline's records
// (engine/source).
package cwlogs

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/trailwatch/trailwatch/engine/source"
)

// Message types of a subscription payload.
const (
	// MessageTypeData carries log events.
	MessageTypeData = "DATA_MESSAGE"
	// MessageTypeControl is sent by CloudWatch Logs to check that the
	// destination is reachable; it carries no CloudTrail records.
	MessageTypeControl = "CONTROL_MESSAGE"
)

// MaxDecodedSize bounds the decompressed size of one payload, so a
// hostile or corrupt payload cannot exhaust the function's memory.
// CloudWatch Logs batches are far smaller.
const MaxDecodedSize = 64 << 20

// Decode decodes the `awslogs.data` field of a subscription event: base64,
// then gzip, then JSON.
func Decode(data string) (events.CloudwatchLogsData, error) {
	var d events.CloudwatchLogsData
	raw, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return d, fmt.Errorf("decode subscription payload: base64: %w", err)
	}
	return DecodeBytes(raw)
}

// DecodeBytes decodes a subscription payload that is not base64-encoded:
// gzip, then JSON. This is the data of a Kinesis record that a
// subscription filter wrote to a stream.
func DecodeBytes(raw []byte) (events.CloudwatchLogsData, error) {
	var d events.CloudwatchLogsData
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return d, fmt.Errorf("decode subscription payload: gzip: %w", err)
	}
	defer zr.Close()
	body, err := io.ReadAll(io.LimitReader(zr, MaxDecodedSize+1))
	if err != nil {
		return d, fmt.Errorf("decode subscription payload: gzip: %w", err)
	}
	if len(body) > MaxDecodedSize {
		return d, fmt.Errorf("decode subscription payload: larger than %d bytes decompressed", MaxDecodedSize)
	}
	if err := json.Unmarshal(body, &d); err != nil {
		return d, fmt.Errorf("decode subscription payload: json: %w", err)
	}
	if d.MessageType == "" {
		return d, errors.New("decode subscription payload: no messageType")
	}
	return d, nil
}

// Encode builds the `awslogs.data` field the way CloudWatch Logs does
// (JSON, gzip, base64). Tests and tools use it to make payloads.
func Encode(d events.CloudwatchLogsData) (string, error) {
	body, err := json.Marshal(d)
	if err != nil {
		return "", fmt.Errorf("encode subscription payload: %w", err)
	}
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(body); err != nil {
		return "", fmt.Errorf("encode subscription payload: gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return "", fmt.Errorf("encode subscription payload: gzip: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b.Bytes()), nil
}

// AppendRecords appends the log events of d to b as records, each with its
// log group, stream and log event id, and moves b.Newest to the newest log
// event's timestamp. b.Origin becomes d's log group when it is empty.
func AppendRecords(b *source.Batch, d events.CloudwatchLogsData) {
	if b.Origin == "" {
		b.Origin = d.LogGroup
	}
	for _, e := range d.LogEvents {
		b.Records = append(b.Records, source.Record{Data: []byte(e.Message), Place: source.Place{
			LogGroup: d.LogGroup, LogStream: d.LogStream, EventID: e.ID,
		}})
		if ts := time.UnixMilli(e.Timestamp); ts.After(b.Newest) {
			b.Newest = ts
		}
	}
}
