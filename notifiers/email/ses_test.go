package email

import (
	"mime"
	"net/mail"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"

	"github.com/trailwatch/trailwatch/internal/testservers"
	"github.com/trailwatch/trailwatch/notifiers"
)

// motoSESMessages reads the Simple and Raw messages moto's SES backend
// holds.
func motoSESMessages(t *testing.T, endpoint string) (simple, raw []map[string]any) {
	t.Helper()
	var data struct {
		SES struct {
			Message    []map[string]any `json:"Message"`
			RawMessage []map[string]any `json:"RawMessage"`
		} `json:"ses"`
	}
	getJSON(t, endpoint+"/moto-api/data.json", &data)
	return data.SES.Message, data.SES.RawMessage
}

func TestSES(t *testing.T) {
	moto := testservers.StartMoto(t)
	t.Setenv("AWS_ENDPOINT_URL", moto.Endpoint)
	ctx := testContext(t)

	ac, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sesv2.NewFromConfig(ac).CreateEmailIdentity(ctx, &sesv2.CreateEmailIdentityInput{
		EmailIdentity: ptr("trailwatch@example.com"),
	}); err != nil {
		t.Fatalf("verify the sender in moto: %v", err)
	}

	tests := []struct {
		name string
		cfg  Config
	}{
		{"simple", Config{Transport: TransportSES, Region: "us-east-1"}},
		{"raw", Config{Transport: TransportSES, SESRaw: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.From = "Trailwatch <trailwatch@example.com>"
			cfg.To = []string{"secops@example.com"}
			n, err := New(ctx, cfg, WithClock(func() time.Time { return fixedNow }))
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			a := hostileAlert(t)
			if err := n.Notify(ctx, a); err != nil {
				t.Fatalf("Notify: %v", err)
			}
			simple, raws := motoSESMessages(t, moto.Endpoint)
			msgs := simple
			if cfg.SESRaw {
				msgs = raws
			}
			if len(msgs) != 1 {
				t.Fatalf("moto holds %d sent messages of this kind, want 1: %v", len(msgs), msgs)
			}
			got := msgs[0]
			want := render(&a, cfg.From, cfg.To, fixedNow)
			if !cfg.SESRaw {
				if got["subject"] != want.Subject {
					t.Errorf("subject = %q, want %q", got["subject"], want.Subject)
				}
				if got["body"] != want.HTML {
					t.Errorf("body is not the HTML part:\n%v", got["body"])
				}
				return
			}
			raw, _ := got["raw_data"].(string)
			parsed, err := mail.ReadMessage(strings.NewReader(raw))
			if err != nil {
				t.Fatalf("parse the raw message: %v\n%s", err, raw)
			}
			dec := new(mime.WordDecoder)
			subject, err := dec.DecodeHeader(parsed.Header.Get("Subject"))
			if err != nil || subject != want.Subject {
				t.Errorf("subject = %q (%v), want %q", subject, err, want.Subject)
			}
			if got := parsed.Header.Get("Message-Id"); got != "<"+want.MessageID+">" {
				t.Errorf("Message-ID = %q, want <%s>", got, want.MessageID)
			}
			if v := parsed.Header.Get("X-Injected"); v != "" || len(parsed.Header["Bcc"]) != 0 {
				t.Errorf("event data injected a header: %v", parsed.Header)
			}
		})
	}

	t.Run("unverified sender is permanent", func(t *testing.T) {
		n, err := New(ctx, Config{Transport: TransportSES, From: "nobody@unverified.example", To: []string{"secops@example.com"}})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		err = n.Notify(ctx, sampleAlert(t))
		if err == nil || !notifiers.IsPermanent(err) {
			t.Fatalf("Notify error = %v, want a permanent MessageRejected", err)
		}
	})
}

func TestSESUnreachableIsRetryable(t *testing.T) {
	testservers.SetFakeAWSEnv(t)
	t.Setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:"+strconv.Itoa(testservers.FreePort(t)))
	n, err := New(testContext(t), Config{Transport: TransportSES, From: "tw@example.com", To: []string{"secops@example.com"}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	err = n.Notify(testContext(t), sampleAlert(t))
	if err == nil || notifiers.IsPermanent(err) {
		t.Fatalf("Notify error = %v, want a retryable error", err)
	}
}

func ptr[T any](v T) *T { return &v }
