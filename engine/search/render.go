package search

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/trailwatch/trailwatch/notifiers"
)

// Output formats for Render.
const (
	FormatTable = "table"
	FormatJSON  = "json"
	FormatJSONL = "jsonl"
)

// RenderOptions adjusts Render.
type RenderOptions struct {
	// Format is FormatTable, FormatJSON or FormatJSONL.
	Format string
	// Width is the terminal's width for the table; 0 means not a terminal:
	// columns are aligned but never truncated.
	Width int
	// Show prints each record as Event History's detail pane does,
	// instead of a table row.
	Show bool
	// Escape makes an attacker-controlled field safe to print on a
	// terminal; nil means control characters are written as \xNN.
	Escape func(string) string
}

// Render writes results in the chosen format. JSON is CloudTrail's own log
// file form, {"Records":[...]}, and JSON Lines one record a line: both are
// the records as read (compacted) and can be read back by trailwatch
// replay and search.
func Render(w io.Writer, results []Result, opts RenderOptions) error {
	bw := bufio.NewWriterSize(w, 64*1024)
	esc := opts.Escape
	if esc == nil {
		esc = visible
	}
	switch opts.Format {
	case FormatJSON:
		bw.WriteString(`{"Records":[`)
		for i := range results {
			if i > 0 {
				bw.WriteByte(',')
			}
			bw.WriteByte('\n')
			bw.Write(results[i].Raw)
		}
		bw.WriteString("\n]}\n")
	case FormatJSONL:
		for i := range results {
			bw.Write(results[i].Raw)
			bw.WriteByte('\n')
		}
	case FormatTable, "":
		if opts.Show {
			for i := range results {
				if i > 0 {
					bw.WriteByte('\n')
				}
				writeDetail(bw, &results[i], esc)
			}
		} else {
			writeTable(bw, results, opts.Width, esc)
		}
	default:
		return fmt.Errorf("render search results: unknown format %q (table, json or jsonl)", opts.Format)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("render search results: %w", err)
	}
	return nil
}

// column is one table column.
type column struct {
	head     string
	min      int  // narrowest it is shrunk to; 0: never shrunk (kept whole)
	keepEnd  bool // truncate at the start (ARNs: the end says most)
	priority int  // shrunk first when higher
	drop     int  // dropped in this order when shrinking is not enough; 0: never
}

// The columns of the table. An event ID or an address cut short is
// useless (it is what one copies into the next query), so those are kept
// whole: on a narrow terminal the names shrink first, then whole columns
// are dropped.
var columns = []column{
	{head: "TIME"},
	{head: "EVENT NAME", min: 12, priority: 3, drop: 4},
	{head: "PRINCIPAL", min: 12, keepEnd: true, priority: 5, drop: 3},
	{head: "SOURCE IP", drop: 5},
	{head: "RESOURCES", min: 9, keepEnd: true, priority: 6, drop: 1},
	{head: "OUTCOME", min: 7, priority: 1, drop: 2},
	{head: "EVENT ID"},
}

// Row returns a result's table cells, escaped: time, event name,
// principal, source IP, resources, outcome and event id.
func Row(r *Result, esc func(string) string) []string {
	ev := r.Event
	t := "-"
	if !ev.EventTime.IsZero() {
		t = ev.EventTime.UTC().Format(time.RFC3339)
	}
	var names []string
	for _, res := range Resources(ev) {
		n := res.Name
		if n == "" {
			n = res.Type
		}
		if n != "" && !contains(names, n) {
			names = append(names, n)
		}
	}
	return []string{
		t,
		esc(orDash(ev.EventName)),
		esc(orDash(ev.Principal())),
		esc(orDash(ev.SourceIPAddress)),
		esc(orDash(strings.Join(names, ", "))),
		esc(Outcome(r)),
		esc(orDash(ev.EventID)),
	}
}

// Outcome is the record's errorCode, "Failure" for a failed console
// sign-in, or "ok".
func Outcome(r *Result) string {
	ev := r.Event
	if ev.ErrorCode != "" {
		return ev.ErrorCode
	}
	if s, ok := ev.ResponseElements["ConsoleLogin"].(string); ok && s != "Success" {
		return s
	}
	return "ok"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func writeTable(w *bufio.Writer, results []Result, width int, esc func(string) string) {
	rows := make([][]string, 0, len(results)+1)
	head := make([]string, len(columns))
	for i, c := range columns {
		head[i] = c.head
	}
	rows = append(rows, head)
	for i := range results {
		rows = append(rows, Row(&results[i], esc))
	}
	natural := make([]int, len(columns))
	for _, row := range rows {
		for i, cell := range row {
			natural[i] = max(natural[i], utf8.RuneCountInString(cell))
		}
	}
	shown := make([]bool, len(columns))
	for i := range shown {
		shown[i] = true
	}
	widths := append([]int(nil), natural...)
	if width > 0 {
		// Shrink; if that is not enough, drop the next column and start
		// again from the natural widths of those left.
		for order := 1; !fit(widths, shown, width); order++ {
			dropped := false
			for i, c := range columns {
				if c.drop == order {
					shown[i], dropped = false, true
				}
			}
			if !dropped && order > len(columns) {
				break // as narrow as it gets: let the terminal wrap
			}
			copy(widths, natural)
		}
	}
	var last int
	for i := range columns {
		if shown[i] {
			last = i
		}
	}
	for _, row := range rows {
		for i, cell := range row {
			if !shown[i] {
				continue
			}
			if columns[i].min > 0 {
				cell = truncate(cell, widths[i], columns[i].keepEnd)
			}
			w.WriteString(cell)
			if i < last {
				w.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(cell)+2))
			}
		}
		w.WriteByte('\n')
	}
}

// fit shrinks the widths of the shown columns that may shrink until a row
// fits in width, one character at a time from the widest column that can
// give (the higher priority first among equals), and reports whether it
// fits.
func fit(widths []int, shown []bool, width int) bool {
	total := -2
	for i, w := range widths {
		if shown[i] {
			total += w + 2
		}
	}
	for total > width {
		best := -1
		for i, c := range columns {
			if !shown[i] || c.min == 0 || widths[i] <= c.min {
				continue
			}
			if best < 0 || widths[i] > widths[best] || (widths[i] == widths[best] && c.priority > columns[best].priority) {
				best = i
			}
		}
		if best < 0 {
			return false
		}
		widths[best]--
		total--
	}
	return true
}

// truncate shortens s to n characters with an ellipsis, keeping its end or
// its start.
func truncate(s string, n int, keepEnd bool) string {
	c := utf8.RuneCountInString(s)
	if c <= n {
		return s
	}
	if n <= 1 {
		return "…"
	}
	r := []rune(s)
	if keepEnd {
		return "…" + string(r[len(r)-(n-1):])
	}
	return string(r[:n-1]) + "…"
}

// writeDetail prints one record as Event History's detail pane does.
func writeDetail(w *bufio.Writer, r *Result, esc func(string) string) {
	ev := r.Event
	u := &ev.UserIdentity
	t := "-"
	if !ev.EventTime.IsZero() {
		t = ev.EventTime.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(w, "%s  %s  %s\n", t, esc(orDash(ev.EventName)), esc(orDash(ev.EventSource)))
	field := func(k, v string) { fmt.Fprintf(w, "  %-20s%s\n", k+":", esc(orDash(v))) }
	field("event id", ev.EventID)
	field("request id", ev.RequestID)
	field("principal", ev.Principal())
	user := u.UserName
	if user == "" {
		user = u.SessionContext.SessionIssuer.UserName
	}
	field("user name", user)
	field("access key", u.AccessKeyID)
	field("account", ev.AccountID())
	field("region", ev.AWSRegion)
	field("source IP", ev.SourceIPAddress)
	field("user agent", ev.UserAgent)
	field("read only", fmt.Sprint(ev.ReadOnly))
	outcome := Outcome(r)
	if ev.ErrorMessage != "" {
		outcome += ": " + ev.ErrorMessage
	}
	field("outcome", outcome)
	var res []string
	for _, x := range Resources(ev) {
		s := strings.TrimSpace(x.Type + " " + x.Name)
		if x.ARN != "" {
			s = x.Type + " " + x.ARN
		}
		res = append(res, s)
	}
	field("resources", strings.Join(res, ", "))
	writeJSONField(w, "request parameters", ev.RequestParameters, esc)
	writeJSONField(w, "response elements", ev.ResponseElements, esc)
}

func writeJSONField(w *bufio.Writer, k string, v map[string]any, esc func(string) string) {
	fmt.Fprintf(w, "  %s:\n", k)
	if v == nil {
		w.WriteString("    null\n")
		return
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(w, "    (%s)\n", esc(err.Error()))
		return
	}
	// JSON escapes C0 control characters but not C1 ones (U+0080-U+009F,
	// which some terminals act on): esc each line.
	for _, line := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
		w.WriteString("    ")
		w.WriteString(esc(line))
		w.WriteByte('\n')
	}
}

// visible is notifiers.Terminal, the one rule for event fields printed to
// a terminal.
func visible(s string) string { return notifiers.Terminal(s) }
