package s3sqs

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Object is an object a notification announces.
type Object struct {
	Bucket, Key string
	// Size, ETag, VersionID and Sequencer are as the notification gives
	// them (any may be empty).
	Size      int64
	ETag      string
	VersionID string
	Sequencer string
}

// URI returns s3://bucket/key.
func (o Object) URI() string { return "s3://" + o.Bucket + "/" + o.Key }

// Notification is what one SQS message says.
type Notification struct {
	// Via is how the message came: "s3" (S3 → SQS, or S3 → SNS → SQS with
	// raw message delivery), "sns" (S3 → SNS → SQS), "eventbridge" (S3 →
	// EventBridge → SQS) or "cloudtrail" (the trail's own SNS
	// notification of each log file it delivers → SQS).
	Via string
	// Objects are the objects created. Events of other kinds (objects
	// removed, restored, tagged) are left out.
	Objects []Object
	// Test is set for the s3:TestEvent S3 sends when a notification is
	// configured: it names no object.
	Test bool
}

// s3Event is an S3 event notification. eventTime is not decoded: moto
// writes it without a time zone, and trailwatch has no use for it.
type s3Event struct {
	Records []struct {
		EventSource string `json:"eventSource"`
		EventName   string `json:"eventName"`
		S3          struct {
			Bucket struct {
				Name string `json:"name"`
			} `json:"bucket"`
			Object struct {
				Key       string `json:"key"`
				Size      int64  `json:"size"`
				ETag      string `json:"eTag"`
				VersionID string `json:"versionId"`
				Sequencer string `json:"sequencer"`
			} `json:"object"`
		} `json:"s3"`
	} `json:"Records"`
	// Event is "s3:TestEvent" in the test message.
	Event string `json:"Event"`
}

// snsEnvelope is what SNS delivers to a queue without raw delivery.
type snsEnvelope struct {
	Type     string `json:"Type"`
	TopicArn string `json:"TopicArn"`
	Message  string `json:"Message"`
}

// cloudTrailNotice is the SNS notification a trail with an SNS topic
// publishes for each log file it delivers.
type cloudTrailNotice struct {
	Bucket string   `json:"s3Bucket"`
	Keys   []string `json:"s3ObjectKey"`
}

// eventBridgeEvent is an S3 event as EventBridge delivers it.
type eventBridgeEvent struct {
	DetailType string `json:"detail-type"`
	Source     string `json:"source"`
	Detail     struct {
		Bucket struct {
			Name string `json:"name"`
		} `json:"bucket"`
		Object struct {
			Key       string `json:"key"`
			Size      int64  `json:"size"`
			ETag      string `json:"etag"`
			VersionID string `json:"version-id"`
			Sequencer string `json:"sequencer"`
		} `json:"object"`
	} `json:"detail"`
}

// ParseMessage reads an SQS message body: an S3 event notification (S3 →
// SQS, or through SNS with raw message delivery), the same inside an SNS
// envelope (S3 → SNS → SQS), an EventBridge "Object Created" event (S3 →
// EventBridge → SQS), or the notification a trail publishes to its SNS
// topic for each log file (raw or in an SNS envelope). An error means the
// body is none of them: reading it again cannot help.
func ParseMessage(body string) (Notification, error) {
	var probe struct {
		Records    json.RawMessage `json:"Records"`
		Event      string          `json:"Event"`
		Type       string          `json:"Type"`
		Message    *string         `json:"Message"`
		S3Bucket   string          `json:"s3Bucket"`
		DetailType string          `json:"detail-type"`
		Source     string          `json:"source"`
	}
	if err := json.Unmarshal([]byte(body), &probe); err != nil {
		return Notification{}, fmt.Errorf("not a JSON object: %w", err)
	}
	switch {
	case probe.Type == "Notification" && probe.Message != nil:
		var env snsEnvelope
		if err := json.Unmarshal([]byte(body), &env); err != nil {
			return Notification{}, fmt.Errorf("sns notification: %w", err)
		}
		var inner struct {
			S3Bucket string `json:"s3Bucket"`
		}
		if json.Unmarshal([]byte(env.Message), &inner) == nil && inner.S3Bucket != "" {
			return parseCloudTrail(env.Message)
		}
		n, err := parseS3Event(env.Message)
		if err != nil {
			return Notification{}, fmt.Errorf("sns notification from %s: its message: %w", env.TopicArn, err)
		}
		n.Via = "sns"
		return n, nil
	case probe.Source == "aws.s3" && probe.DetailType != "":
		return parseEventBridge(body)
	case probe.Records != nil || probe.Event != "":
		return parseS3Event(body)
	case probe.S3Bucket != "":
		return parseCloudTrail(body)
	}
	return Notification{}, errors.New("neither an S3 event notification, an SNS notification, an EventBridge event nor a CloudTrail notification")
}

// parseS3Event reads an S3 event notification.
func parseS3Event(body string) (Notification, error) {
	var ev s3Event
	if err := json.Unmarshal([]byte(body), &ev); err != nil {
		return Notification{}, fmt.Errorf("s3 event notification: %w", err)
	}
	n := Notification{Via: "s3"}
	if ev.Event == "s3:TestEvent" {
		n.Test = true
		return n, nil
	}
	if len(ev.Records) == 0 {
		return Notification{}, errors.New("s3 event notification without records")
	}
	for i, r := range ev.Records {
		if r.EventSource != "aws:s3" {
			return Notification{}, fmt.Errorf("record %d: eventSource %q, not aws:s3", i+1, r.EventSource)
		}
		if !strings.HasPrefix(r.EventName, "ObjectCreated:") {
			continue
		}
		// S3 encodes keys as a URL query encodes values (a space is "+").
		key, err := url.QueryUnescape(r.S3.Object.Key)
		if err != nil {
			return Notification{}, fmt.Errorf("record %d: object key %q: %w", i+1, r.S3.Object.Key, err)
		}
		if r.S3.Bucket.Name == "" || key == "" {
			return Notification{}, fmt.Errorf("record %d: no bucket or key", i+1)
		}
		o := r.S3.Object
		n.Objects = append(n.Objects, Object{Bucket: r.S3.Bucket.Name, Key: key, Size: o.Size, ETag: o.ETag, VersionID: o.VersionID, Sequencer: o.Sequencer})
	}
	return n, nil
}

// parseEventBridge reads an S3 event as EventBridge sends it. AWS's
// documentation shows its key plain, where S3's own notifications encode
// it; a key with an encoded slash and no plain one (no CloudTrail key has
// either a "%" or no "/") is decoded, so either way it names the object.
func parseEventBridge(body string) (Notification, error) {
	var ev eventBridgeEvent
	if err := json.Unmarshal([]byte(body), &ev); err != nil {
		return Notification{}, fmt.Errorf("eventbridge event: %w", err)
	}
	n := Notification{Via: "eventbridge"}
	if ev.DetailType != "Object Created" {
		return n, nil
	}
	o := ev.Detail.Object
	if ev.Detail.Bucket.Name == "" || o.Key == "" {
		return Notification{}, errors.New("eventbridge Object Created event without a bucket or key")
	}
	key := o.Key
	if !strings.Contains(key, "/") && strings.Contains(strings.ToUpper(key), "%2F") {
		if k, err := url.QueryUnescape(key); err == nil {
			key = k
		}
	}
	n.Objects = []Object{{Bucket: ev.Detail.Bucket.Name, Key: key, Size: o.Size, ETag: o.ETag, VersionID: o.VersionID, Sequencer: o.Sequencer}}
	return n, nil
}

// parseCloudTrail reads a trail's notification of delivered log files
// (the keys are not encoded).
func parseCloudTrail(body string) (Notification, error) {
	var ct cloudTrailNotice
	if err := json.Unmarshal([]byte(body), &ct); err != nil {
		return Notification{}, fmt.Errorf("cloudtrail notification: %w", err)
	}
	n := Notification{Via: "cloudtrail"}
	for _, k := range ct.Keys {
		if k == "" {
			return Notification{}, errors.New("cloudtrail notification with an empty key")
		}
		n.Objects = append(n.Objects, Object{Bucket: ct.Bucket, Key: k})
	}
	if len(n.Objects) == 0 {
		return Notification{}, errors.New("cloudtrail notification without keys")
	}
	return n, nil
}
