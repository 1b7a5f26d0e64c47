package s3sqs

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseMessage(t *testing.T) {
	const ct = "AWSLogs/111122223333/CloudTrail/"
	tests := []struct {
		file string
		want Notification
	}{
		{"s3-put.json", Notification{Via: "s3", Objects: []Object{{
			Bucket: "org-trail", Key: "AWSLogs/o-aa11bb22cc/111122223333/CloudTrail/us-east-1/2024/05/01/111122223333_CloudTrail_us-east-1_20240501T0805Z_4pRjMCGtyYB9kzUc.json.gz",
			Size: 4815, ETag: "d41d8cd98f00b204e9800998ecf8427e", VersionID: "096fKKXTRTtl3on89fVO.nfljtsv6qko", Sequencer: "0055AED6DCD90281E5",
		}}}},
		{"s3-test-event.json", Notification{Via: "s3", Test: true}},
		{"sns-envelope.json", Notification{Via: "sns", Objects: []Object{{
			Bucket: "org-trail", Key: ct + "eu-west-1/2024/05/01/111122223333_CloudTrail_eu-west-1_20240501T0805Z_x+y z.json.gz",
			Size: 1024, ETag: "0123456789abcdef0123456789abcdef", Sequencer: "0055AED6DCD90281E6",
		}}}},
		{"eventbridge.json", Notification{Via: "eventbridge", Objects: []Object{{
			Bucket: "org-trail", Key: ct + "us-east-1/2024/05/01/111122223333_CloudTrail_us-east-1_20240501T0805Z_a b.json.gz",
			Size: 2048, ETag: "b1946ac92492d2347c6235b4d2611184", Sequencer: "617f08299329d189",
		}}}},
		{"moto-put.json", Notification{Via: "s3", Objects: []Object{{Bucket: "org-trail", Key: ct + "us-east-1/2024/05/01/x.json.gz", Size: 12, ETag: "abc"}}}},
		{"s3-delete.json", Notification{Via: "s3"}},
		{"cloudtrail-sns.json", Notification{Via: "cloudtrail", Objects: []Object{
			{Bucket: "org-trail", Key: ct + "us-east-1/2024/05/01/111122223333_CloudTrail_us-east-1_20240501T0805Z_LnPgDQnpkSKEsppV.json.gz"},
			{Bucket: "org-trail", Key: ct + "us-east-1/2024/05/01/111122223333_CloudTrail_us-east-1_20240501T0805Z_Zq0qMVBd2kFNhHzN.json.gz"},
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			body, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseMessage(string(body))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseMessageEventBridgeEncodedKey(t *testing.T) {
	body := `{"version":"0","detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"b"},"object":{"key":"AWSLogs%2F111122223333%2FCloudTrail%2Fus-east-1%2Fx.json.gz"}}}`
	got, err := ParseMessage(body)
	if err != nil || len(got.Objects) != 1 || got.Objects[0].Key != "AWSLogs/111122223333/CloudTrail/us-east-1/x.json.gz" {
		t.Errorf("got %+v, %v", got, err)
	}
}

func TestParseMessageErrors(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"not json", "hello", "not a JSON object"},
		{"json, not a notification", `{"hello":"world"}`, "neither an S3 event notification"},
		{"no records", `{"Records":[]}`, "without records"},
		{"another service's event", `{"Records":[{"eventSource":"aws:sqs"}]}`, `eventSource "aws:sqs"`},
		{"bad key encoding", `{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"a%zz"}}}]}`, `object key "a%zz"`},
		{"no bucket", `{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"object":{"key":"k"}}}]}`, "no bucket or key"},
		{"sns wrapping something else", `{"Type":"Notification","TopicArn":"arn:aws:sns:us-east-1:1:t","Message":"hi"}`, "arn:aws:sns:us-east-1:1:t: its message"},
		{"cloudtrail notification without keys", `{"s3Bucket":"b","s3ObjectKey":[]}`, "without keys"},
		{"eventbridge without an object", `{"detail-type":"Object Created","source":"aws.s3","detail":{}}`, "without a bucket or key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseMessage(tt.body)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseMessage(%q) error = %v, want one containing %q", tt.body, err, tt.want)
			}
		})
	}
}

func FuzzParseMessage(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, body string) {
		n, err := ParseMessage(body)
		if err != nil {
			return
		}
		for _, o := range n.Objects {
			if o.Bucket == "" || o.Key == "" {
				t.Errorf("an object without a bucket or key: %+v from %q", o, body)
			}
		}
	})
}

func TestParseMessageCloudTrailRaw(t *testing.T) {
	got, err := ParseMessage(`{"s3Bucket":"b","s3ObjectKey":["AWSLogs/1/CloudTrail/r/2024/05/01/x y.json.gz"]}`)
	want := Notification{Via: "cloudtrail", Objects: []Object{{Bucket: "b", Key: "AWSLogs/1/CloudTrail/r/2024/05/01/x y.json.gz"}}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, %v; want %+v", got, err, want)
	}
}
