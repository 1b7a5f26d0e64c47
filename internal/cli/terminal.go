package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"

	"golang.org/x/term"
)

// ------------------------------------------------------------------ stdin

// interruptible returns r read so that a Read returns ctx's error as soon
// as ctx ends (Ctrl-C), even while r itself is blocked waiting for input:
// replay and search reading standard input then stop with what they have.
// r is read by a goroutine that copies it into a pipe; it is started at
// the first Read, so an input that is never read is never touched.
func interruptible(ctx context.Context, r io.Reader) io.Reader {
	if r == nil {
		r = os.Stdin
	}
	return &ctxReader{ctx: ctx, r: r}
}

type ctxReader struct {
	ctx  context.Context
	r    io.Reader
	once sync.Once
	pr   *io.PipeReader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	c.once.Do(func() {
		pr, pw := io.Pipe()
		c.pr = pr
		stop := context.AfterFunc(c.ctx, func() { pw.CloseWithError(c.ctx.Err()) })
		go func() {
			_, err := io.Copy(pw, c.r)
			stop()
			pw.CloseWithError(err) // nil: io.EOF for the reader
		}()
	})
	return c.pr.Read(p)
}

// ------------------------------------------------------------------ colour

// terminalFile returns w's file when w is a terminal.
func terminalFile(w io.Writer) (*os.File, bool) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, false
	}
	return f, true
}

// style colours output for a person at a terminal, and does nothing
// otherwise: when the output is not a terminal (piped, redirected), when
// NO_COLOR is set to anything (https://no-color.org) or TERM is "dumb".
type style struct{ on bool }

// styleFor returns the style for output written to w.
func styleFor(w io.Writer) style {
	if _, ok := terminalFile(w); !ok {
		return style{}
	}
	if os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return style{}
	}
	return style{on: true}
}

const (
	sgrReset  = "\x1b[0m"
	sgrBold   = "\x1b[1m"
	sgrDim    = "\x1b[2m"
	sgrRed    = "\x1b[31m"
	sgrGreen  = "\x1b[32m"
	sgrYellow = "\x1b[33m"
	sgrCyan   = "\x1b[36m"
)

func (s style) paint(sgr, text string) string {
	if !s.on || text == "" {
		return text
	}
	return sgr + text + sgrReset
}

// severity colours a severity label by urgency.
func (s style) severity(sev, text string) string {
	switch sev {
	case "critical":
		return s.paint(sgrBold+sgrRed, text)
	case "high":
		return s.paint(sgrRed, text)
	case "medium":
		return s.paint(sgrYellow, text)
	case "low":
		return s.paint(sgrCyan, text)
	}
	return s.paint(sgrDim, text)
}

func (s style) fail(text string) string { return s.paint(sgrBold+sgrRed, text) }
func (s style) ok(text string) string   { return s.paint(sgrGreen, text) }
func (s style) dim(text string) string  { return s.paint(sgrDim, text) }

// -------------------------------------------------------------- rule hits

// ruleHits counts alerts (or matches) per rule, for the summary at the end
// of replay and test.
type ruleHits map[string]int

func (h ruleHits) add(rule string) { h[rule]++ }

// print writes one line per rule, most hits first, under a heading.
func (h ruleHits) print(w io.Writer, heading string) {
	if len(h) == 0 {
		return
	}
	ids := make([]string, 0, len(h))
	width := 0
	for id, n := range h {
		ids = append(ids, id)
		width = max(width, len(fmt.Sprint(n)))
	}
	sort.Slice(ids, func(i, j int) bool {
		if h[ids[i]] != h[ids[j]] {
			return h[ids[i]] > h[ids[j]]
		}
		return ids[i] < ids[j]
	})
	fmt.Fprintf(w, "trailwatch: %s\n", heading)
	for _, id := range ids {
		fmt.Fprintf(w, "  %*d  %s\n", width, h[id], id)
	}
}

// humanCount writes a rate as 950, 12.3k or 1.2M.
func humanCount(v float64) string {
	switch {
	case v >= 1e6:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v/1e6), ".0") + "M"
	case v >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case v >= 1e3:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v/1e3), ".0") + "k"
	}
	return fmt.Sprintf("%.0f", v)
}
