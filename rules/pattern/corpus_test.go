package pattern

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/trailwatch/trailwatch/internal/corpus"
)

// corpusDir holds real CloudTrail records, one JSON object per line. They are
// shared test data outside the repository and never copied into it.
var corpusDir = corpus.Dir() // $TRAILWATCH_CORPUS or ../shared/corpus

// corpusRecord is one decoded record and where it came from.
type corpusRecord struct {
	where string
	rec   map[string]any
}

// loadCorpus reads every record, skipping the test when the corpus is absent.
func loadCorpus(tb testing.TB) []corpusRecord {
	tb.Helper()
	files, _ := filepath.Glob(filepath.Join(corpusDir, "*.jsonl"))
	if len(files) == 0 {
		tb.Skipf("CloudTrail corpus not found at %s (../shared/corpus beside the checkout); skipping", corpusDir)
	}
	var out []corpusRecord
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			tb.Fatalf("open corpus: %v", err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 0, 1<<20), 1<<24)
		for line := 1; sc.Scan(); line++ {
			text := strings.TrimSpace(sc.Text())
			if text == "" {
				continue
			}
			d := json.NewDecoder(strings.NewReader(text))
			d.UseNumber()
			var rec map[string]any
			if err := d.Decode(&rec); err != nil {
				tb.Fatalf("%s:%d: decode: %v", filepath.Base(f), line, err)
			}
			out = append(out, corpusRecord{where: filepath.Base(f) + ":" + strconv.Itoa(line), rec: rec})
		}
		if err := sc.Err(); err != nil {
			tb.Fatalf("read corpus %s: %v", f, err)
		}
		fh.Close()
	}
	return out
}

// TestCorpusDifferential evaluates every CIS pattern, and its canonical
// re-rendering, on every corpus record and compares the result with an
// independent Go predicate for the same rule.
func TestCorpusDifferential(t *testing.T) {
	records := loadCorpus(t)
	for _, c := range cisPatterns {
		t.Run(c.control, func(t *testing.T) {
			p := mustParse(t, c.pattern)
			canon := mustParse(t, p.String())
			matches := 0
			for _, r := range records {
				got := p.Match(r.rec)
				if want := c.want(r.rec); got != want {
					t.Errorf("%s: Match = %v, reference predicate = %v", r.where, got, want)
				}
				if plain := plainEval(p.root, r.rec); plain != got {
					t.Errorf("%s: optimised Match = %v, plain evaluation %v", r.where, got, plain)
				}
				if again := canon.Match(r.rec); again != got {
					t.Errorf("%s: canonical form matches %v, original %v", r.where, again, got)
				}
				if got {
					matches++
				}
			}
			t.Logf("%s matches %d of %d records", c.control, matches, len(records))
		})
	}
}

// TestCorpusEqualityConstraints checks, on real records, that the index hints
// never rule out a record the pattern matches.
func TestCorpusEqualityConstraints(t *testing.T) {
	records := loadCorpus(t)
	for _, c := range cisPatterns {
		p := mustParse(t, c.pattern)
		cons := p.EqualityConstraints()
		for _, r := range records {
			if !p.Match(r.rec) {
				continue
			}
			for field, values := range cons {
				if v, ok := FieldValue(r.rec, field); !ok || !containsString(values, v) {
					t.Errorf("%s: %s matches but %s=%q is not in its constraint", r.where, c.control, field, v)
				}
			}
		}
	}
}

// TestCorpusGenericPatterns runs patterns over shapes the CIS set does not
// touch (wildcard selectors, regexes, numbers, mixed types) on every record,
// to show evaluation takes real data in its stride.
func TestCorpusGenericPatterns(t *testing.T) {
	records := loadCorpus(t)
	patterns := []string{
		`{ $.* = %AKIA% }`,
		`{ $.resources[*].ARN = "arn:aws:s3:::*" }`,
		`{ $.requestParameters.* IS NULL || $.responseElements IS NULL }`,
		`{ $.additionalEventData.bytesTransferredIn > 0 }`,
		`{ $.requestParameters.maxResults >= 50 }`,
		`{ $.userIdentity.sessionContext.attributes.mfaAuthenticated = "true" }`,
		`{ $.readOnly IS FALSE && $.managementEvent IS TRUE }`,
		`{ $.tlsDetails NOT EXISTS && $.['@timestamp'] = * }`,
		`{ $.sourceIPAddress != %^[0-9.]+$% }`,
	}
	for _, src := range patterns {
		t.Run(src, func(t *testing.T) {
			p := mustParse(t, src)
			n := 0
			for _, r := range records {
				if p.Match(r.rec) {
					n++
				}
			}
			t.Logf("matches %d of %d records", n, len(records))
		})
	}
}

// benchRecord returns a real ConsoleLogin record when the corpus is present,
// else a hand-written one.
func benchRecord(b *testing.B) map[string]any {
	files, _ := filepath.Glob(filepath.Join(corpusDir, "*.jsonl"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, `"eventName":"ConsoleLogin"`) {
				return decode(b, line, true)
			}
		}
	}
	return decode(b, `{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","principalId":"AIDAEXAMPLE","arn":"arn:aws:iam::111122223333:user/alice","accountId":"111122223333","userName":"alice"},"eventTime":"2024-01-01T00:00:00Z","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","userAgent":"Mozilla/5.0","requestParameters":null,"responseElements":{"ConsoleLogin":"Success"},"additionalEventData":{"LoginTo":"https://console.aws.amazon.com/","MobileVersion":"No","MFAUsed":"No"},"eventID":"00000000-0000-0000-0000-000000000000","eventType":"AwsConsoleSignIn","recipientAccountId":"111122223333"}`, true)
}

// BenchmarkMatch measures Match of each CIS pattern on one ConsoleLogin record.
func BenchmarkMatch(b *testing.B) {
	rec := benchRecord(b)
	for _, c := range cisPatterns {
		p := mustParse(b, c.pattern)
		b.Run(strings.ReplaceAll(c.control, " ", "_"), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Match(rec)
			}
		})
	}
}

// BenchmarkParse measures compiling the largest published pattern.
func BenchmarkParse(b *testing.B) {
	src := cisPatterns[len(cisPatterns)-3].pattern
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(src); err != nil {
			b.Fatal(err)
		}
	}
}
