// Package subscription handles CloudWatch Logs subscription deliveries: it
// decodes the payload CloudWatch Logs pushes to a Lambda function (JSON,
// gzip-compressed, base64-encoded in `awslogs.data`), evaluates every log
// event against the rules, and notifies, recording each (alert, notifier)
// delivery in a shared ledger (engine/dynamostate) so that a retried batch
// never sends an alert twice once it is known to be delivered.
//
// # Errors and AWS retries
//
// CloudWatch Logs invokes the function asynchronously: when Handle returns
// an error, Lambda runs the same payload again (twice by default, one and
// then two minutes later) and then hands it to the function's on-failure
// destination or dead-letter queue. Handle therefore returns an error when
// a retry can help or when the payload must be kept:
//
//   - a notification failed, a delivery is held by another process, or the
//     ledger could not be reached: the retry sends only what is not yet
//     recorded as delivered;
//   - the payload itself cannot be decoded (not base64, not gzip, not JSON):
//     retrying cannot fix it, but failing moves it, intact, to the
//     on-failure destination where it can be inspected.
//
// It returns nil for a CONTROL_MESSAGE (CloudWatch Logs checking that the
// destination is reachable), for a message type it does not know (logged),
// and it skips, counting and logging them, log events that are not
// CloudTrail records: the log group may carry other lines, and failing on
// them would send every retry to the dead-letter queue for nothing.
package subscription

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/aws/aws-lambda-go/events"
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
