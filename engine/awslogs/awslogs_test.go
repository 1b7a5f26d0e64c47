package awslogs

import (
	"strings"
	"testing"
	"time"
)

func TestDirPeriod(t *testing.T) {
	day := func(y, m, d int) time.Time { return time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC) }
	tests := []struct {
		path     string
		from, to time.Time
		ok       bool
	}{
		{"x/AWSLogs/1/CloudTrail/us-east-1/2024", day(2024, 1, 1), day(2025, 1, 1), true},
		{"x/AWSLogs/1/CloudTrail/us-east-1/2024/02", day(2024, 2, 1), day(2024, 3, 1), true},
		{"x/AWSLogs/o-1/1/CloudTrail/eu-west-1/2024/12/31", day(2024, 12, 31), day(2025, 1, 1), true},
		{"x/AWSLogs/1/CloudTrail/us-east-1", time.Time{}, time.Time{}, false},
		{"x/AWSLogs/1/CloudTrail", time.Time{}, time.Time{}, false},
		{"x/AWSLogs/1/CloudTrail/us-east-1/2024/13", time.Time{}, time.Time{}, false},
		{"x/AWSLogs/1/CloudTrail/us-east-1/24", time.Time{}, time.Time{}, false},
		{"x/logs/2024/05/01", time.Time{}, time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			from, to, ok := DirPeriod(tt.path)
			if ok != tt.ok || !from.Equal(tt.from) || !to.Equal(tt.to) {
				t.Errorf("got %v %v %v, want %v %v %v", from, to, ok, tt.from, tt.to, tt.ok)
			}
		})
	}
}

func TestFileDelivery(t *testing.T) {
	tests := []struct {
		name string
		want string
	}{
		{"111122223333_CloudTrail_us-east-1_20240501T0805Z_84b28054aead44.json.gz", "2024-05-01T08:05:00Z"},
		{"111122223333_CloudTrail_ap-southeast-2_20231231T2359Z_abc.json", "2023-12-31T23:59:00Z"},
		{"events.jsonl", ""},
		{"111122223333_CloudTrail-Digest_us-east-1_20240501T0805Z.json.gz", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := FileDelivery(tt.name)
			s := ""
			if ok {
				s = got.Format(time.RFC3339)
			}
			if s != tt.want {
				t.Errorf("got %q, want %q", s, tt.want)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		key  string
		want Kind
	}{
		{"AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/111122223333_CloudTrail_us-east-1_20240501T0805Z_abc.json.gz", Log},
		{"trails/AWSLogs/o-aa11bb22cc/111122223333/CloudTrail/eu-west-1/2024/05/01/111122223333_CloudTrail_eu-west-1_20240501T0805Z_abc.json.gz", Log},
		{"AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/", Other},
		{"AWSLogs/111122223333/CloudTrail/", Other},
		{"AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2024/05/01/111122223333_CloudTrail-Digest_us-east-1_t_us-east-1_20240501T080500Z.json.gz", Digest},
		{"AWSLogs/111122223333/CloudTrail-Insight/us-east-1/2024/05/01/111122223333_CloudTrail-Insight_us-east-1_20240501T0805Z_abc.json.gz", Insight},
		{"AWSLogs/111122223333/Config/us-east-1/2024/5/1/ConfigSnapshot/x.json.gz", Other},
		{"AWSLogs/111122223333/elasticloadbalancing/us-east-1/2024/05/01/x.log.gz", Other},
		{"AWSLogs/111122223333/CloudTrail/us-east-1/2024/05/01/notes.txt", Other},
		{"exports/CloudTrail/us-east-1/x.json.gz", Other},
		{"AWSLogs/CloudTrail/x.json.gz", Other},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			if got := Classify(tt.key); got != tt.want {
				t.Errorf("Classify = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestWindow(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	w := ForRange(at("2024-05-03T12:00:00Z"), at("2024-05-03T13:00:00Z"), time.Hour)
	if !w.From.Equal(at("2024-05-03T11:55:00Z")) || !w.To.Equal(at("2024-05-03T14:00:00Z")) {
		t.Fatalf("window = %v", w)
	}
	dir := "AWSLogs/111122223333/CloudTrail/us-east-1/"
	file := func(stamp string) string {
		return dir + "2024/05/03/111122223333_CloudTrail_us-east-1_" + stamp + "_abc.json.gz"
	}
	for _, tt := range []struct {
		name string
		skip bool
		got  bool
	}{
		{"day before", true, w.SkipDir(dir + "2024/05/02")},
		{"the day", false, w.SkipDir(dir + "2024/05/03")},
		{"the month", false, w.SkipDir(dir + "2024/05")},
		{"another year", true, w.SkipDir(dir + "2023")},
		{"region", false, w.SkipDir(dir)},
		{"digest", true, w.SkipDir("AWSLogs/111122223333/CloudTrail-Digest")},
		{"another service's logs", true, w.SkipDir("x/AWSLogs/o-aa11bb22cc/111122223333/elasticloadbalancing/")},
		{"insights", false, w.SkipDir("AWSLogs/111122223333/CloudTrail-Insight")},
		{"insights, another day", true, w.SkipDir("AWSLogs/111122223333/CloudTrail-Insight/us-east-1/2024/05/04")},
		{"a folder named like a service elsewhere", false, w.SkipDir("exports/elasticloadbalancing")},
		{"digest, open window", false, Window{}.SkipDir("AWSLogs/111122223333/CloudTrail-Digest")},
		{"file delivered before the skew", true, w.SkipFile(file("20240503T1154Z"))},
		{"file delivered within the skew", false, w.SkipFile(file("20240503T1155Z"))},
		{"file delivered within the margin", false, w.SkipFile(file("20240503T1400Z"))},
		{"file delivered after the margin", true, w.SkipFile(file("20240503T1401Z"))},
		{"insights file delivered after the margin", true, w.SkipFile("111122223333_CloudTrail-Insight_us-east-1_20240503T1401Z_x.json.gz")},
		{"other file names are read", false, w.SkipFile(dir + "2024/05/03/events.jsonl")},
	} {
		if tt.got != tt.skip {
			t.Errorf("%s: skip = %v, want %v", tt.name, tt.got, tt.skip)
		}
	}

	days, ok := ForRange(at("2024-05-31T23:00:00Z"), at("2024-06-01T23:30:00Z"), time.Hour).Days(31)
	var got []string
	for _, d := range days {
		got = append(got, DayFolder(d))
	}
	if !ok || strings.Join(got, " ") != "2024/05/31 2024/06/01 2024/06/02" {
		t.Errorf("Days = %v %v, want the last of May and the first two of June", got, ok)
	}
	if _, ok := ForRange(at("2024-01-01T00:00:00Z"), at("2024-03-01T00:00:00Z"), 0).Days(31); ok {
		t.Error("Days of a two-month window with max 31 = ok, want not ok")
	}
	if _, ok := ForRange(at("2024-01-01T00:00:00Z"), time.Time{}, 0).Days(31); ok {
		t.Error("Days of a window open at its end = ok, want not ok")
	}
}

func TestLocate(t *testing.T) {
	for _, tt := range []struct {
		path  string
		depth int
	}{
		{"AWSLogs/1/CloudTrail/", 0},
		{"AWSLogs/1/CloudTrail/us-east-1/", 1},
		{"AWSLogs/1/CloudTrail/us-east-1/2024/", 2},
		{"AWSLogs/1/CloudTrail/us-east-1/2024/05/", 3},
		{"AWSLogs/1/CloudTrail/us-east-1/2024/05/01/", 4},
		{"AWSLogs/1/CloudTrail/us-east-1/latest/", -1},
		{"AWSLogs/1/", -1},
	} {
		if got := Locate(tt.path); got.Depth != tt.depth {
			t.Errorf("Locate(%q).Depth = %d, want %d", tt.path, got.Depth, tt.depth)
		}
	}
}
