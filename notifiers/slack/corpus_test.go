package slack

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	slackgo "github.com/slack-go/slack"

	"github.com/trailwatch/trailwatch/notifiers"

	"github.com/trailwatch/trailwatch/internal/corpus"
)

// corpusDir holds real CloudTrail records shared by the project's tests; it
// is read in place and never copied into the repository.
var corpusDir = corpus.Dir() // $TRAILWATCH_CORPUS or ../shared/corpus

// TestCorpusMessagesAreInert renders a message for every real CloudTrail
// record in the shared corpus and checks each is inert and within Slack's
// limits.
func TestCorpusMessagesAreInert(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(corpusDir, "*.jsonl"))
	if len(files) == 0 {
		t.Skipf("no CloudTrail corpus at %s (shared test data, not part of the repository)", corpusDir)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			sc := bufio.NewScanner(f)
			sc.Buffer(nil, 1<<20)
			n := 0
			for sc.Scan() {
				a, err := alertFromRecord(sc.Bytes())
				if err != nil {
					t.Fatalf("record %d: %v", n+1, err)
				}
				text, blocks := buildMessage(a)
				body, err := json.Marshal(payload{Text: text, Blocks: slackgo.Blocks{BlockSet: blocks}})
				if err != nil {
					t.Fatalf("record %d: %v", n+1, err)
				}
				checkInert(t, body)
				n++
			}
			if err := sc.Err(); err != nil {
				t.Fatal(err)
			}
			t.Logf("%d records rendered", n)
		})
	}
}

// alertFromRecord fills an Alert from a raw CloudTrail record the way the
// engine does, closely enough to exercise the message builder.
func alertFromRecord(rec []byte) (notifiers.Alert, error) {
	var r struct {
		EventID            string    `json:"eventID"`
		EventTime          time.Time `json:"eventTime"`
		EventName          string    `json:"eventName"`
		EventSource        string    `json:"eventSource"`
		AWSRegion          string    `json:"awsRegion"`
		SourceIPAddress    string    `json:"sourceIPAddress"`
		UserAgent          string    `json:"userAgent"`
		ErrorCode          string    `json:"errorCode"`
		ErrorMessage       string    `json:"errorMessage"`
		RecipientAccountID string    `json:"recipientAccountId"`
		UserIdentity       struct {
			ARN         string `json:"arn"`
			UserName    string `json:"userName"`
			AccessKeyID string `json:"accessKeyId"`
		} `json:"userIdentity"`
	}
	if err := json.Unmarshal(rec, &r); err != nil {
		return notifiers.Alert{}, err
	}
	return notifiers.Alert{
		RuleID:       "corpus",
		Title:        "Corpus record",
		Severity:     "medium",
		Summary:      r.EventName + " by " + r.UserIdentity.ARN,
		DedupKey:     "corpus/" + r.EventID,
		EventID:      r.EventID,
		EventTime:    r.EventTime,
		EventName:    r.EventName,
		EventSource:  r.EventSource,
		Principal:    r.UserIdentity.ARN,
		UserName:     r.UserIdentity.UserName,
		AccessKeyID:  r.UserIdentity.AccessKeyID,
		SourceIP:     r.SourceIPAddress,
		UserAgent:    r.UserAgent,
		AWSRegion:    r.AWSRegion,
		AccountID:    r.RecipientAccountID,
		ErrorCode:    r.ErrorCode,
		ErrorMessage: r.ErrorMessage,
		Event:        rec,
	}, nil
}
