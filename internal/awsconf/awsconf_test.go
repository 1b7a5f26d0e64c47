package awsconf_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/trailwatch/trailwatch/internal/awsconf"
	"github.com/trailwatch/trailwatch/internal/testservers"
)

// TestSDKWarningsGoThroughTheLogger points a real SDK client at an
// endpoint whose answers carry a Date header the SDK cannot parse (it
// warns about it): the warning is a JSON line of the service's logger,
// at WARN, marked component=aws-sdk, and nothing else.
func TestSDKWarningsGoThroughTheLogger(t *testing.T) {
	testservers.SetFakeAWSEnv(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", "half past nine")
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.Write([]byte(`{}`))
	}))
	t.Cleanup(srv.Close)
	t.Setenv("AWS_ENDPOINT_URL", srv.URL)

	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	cfg, err := awsconf.Load(context.Background(), "eu-west-1", logger)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Region != "eu-west-1" {
		t.Errorf("region = %q, want eu-west-1", cfg.Region)
	}
	_, err = dynamodb.NewFromConfig(cfg).GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName: aws.String("t"), Key: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "k"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	found := false
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		if rec["level"] == "WARN" && rec["component"] == "aws-sdk" && strings.Contains(rec["msg"].(string), "Date header") {
			found = true
		}
	}
	if !found {
		t.Errorf("no aws-sdk warning about the Date header in the log:\n%s", buf.String())
	}

	t.Run("below the logger's level it is dropped", func(t *testing.T) {
		var quiet bytes.Buffer
		cfg, err := awsconf.Load(context.Background(), "", slog.New(slog.NewJSONHandler(&quiet, &slog.HandlerOptions{Level: slog.LevelError})))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dynamodb.NewFromConfig(cfg).GetItem(context.Background(), &dynamodb.GetItemInput{
			TableName: aws.String("t"), Key: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "k"}},
		}); err != nil {
			t.Fatal(err)
		}
		if quiet.Len() != 0 {
			t.Errorf("logged at level error: %s", quiet.String())
		}
	})
}
