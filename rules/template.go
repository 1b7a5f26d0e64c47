package rules

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// summaryTemplate is a one-line message whose {{ ... }} placeholders are
// expressions over the event, compiled and type-checked at load time.
type summaryTemplate struct {
	src   string
	parts []templatePart
}

type templatePart struct {
	text    string
	program *program // nil for text; lazy (parseTemplateLazy) or compiled
	src     string
}

// templateError locates a problem in a template by byte offset within it.
type templateError struct {
	Offset int // 0-based byte offset in the template text
	Line   int // 1-based line within the placeholder's expression (from the compiler)
	Column int
	Msg    string
}

func (e *templateError) Error() string { return e.Msg }

// parseTemplate compiles a summary template (without lists and macros).
func parseTemplate(src string) (*summaryTemplate, error) {
	return parseTemplateWith(src, func(s string) (*program, error) { return compileValue(s, nil) })
}

// parseTemplateLazy parses a summary template whose placeholders compile
// when it is first rendered, with the names n (complete and no longer
// changing): for the built-in packs in a load without tests (run, replay,
// search), which renders only the summaries of the rules that alert.
// Compiling every placeholder was a fifth of loading the built-in packs.
// Each distinct placeholder compiles once (names.lazyValue), on first use
// (runText). A placeholder that would not compile renders as "?" with the
// error, as one failing at run time does; a load with tests (trailwatch
// test and validate, and the rules package's tests) compiles them all and
// reports any error at its file:line:col, so a built-in pack ships none.
func parseTemplateLazy(src string, n *names) (*summaryTemplate, error) {
	return parseTemplateParts(src, func(exprSrc string) (templatePart, error) {
		return templatePart{src: exprSrc, program: n.lazyValue(exprSrc)}, nil
	})
}

// parseTemplateWith compiles a summary template, its placeholders with
// compile (the loader's compiles each distinct placeholder once).
func parseTemplateWith(src string, compile func(string) (*program, error)) (*summaryTemplate, error) {
	return parseTemplateParts(src, func(exprSrc string) (templatePart, error) {
		p, err := compile(exprSrc)
		return templatePart{program: p, src: exprSrc}, err
	})
}

// parseTemplateParts splits a template into its text and placeholders,
// each placeholder's part made by placeholder (whose error is a
// *compileError).
func parseTemplateParts(src string, placeholder func(exprSrc string) (templatePart, error)) (*summaryTemplate, error) {
	t := &summaryTemplate{src: src, parts: make([]templatePart, 0, 2*strings.Count(src, "{{")+1)}
	rest := src
	off := 0
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			if j := strings.Index(rest, "}}"); j >= 0 {
				return nil, &templateError{Offset: off + j, Msg: `"}}" without a matching "{{"`}
			}
			if rest != "" {
				t.parts = append(t.parts, templatePart{text: rest})
			}
			return t, nil
		}
		if i > 0 {
			t.parts = append(t.parts, templatePart{text: rest[:i]})
		}
		j := strings.Index(rest[i+2:], "}}")
		if j < 0 {
			return nil, &templateError{Offset: off + i, Msg: `"{{" is never closed with "}}"`}
		}
		inner := rest[i+2 : i+2+j]
		exprSrc := strings.TrimSpace(inner)
		lead := len(inner) - len(strings.TrimLeft(inner, " \t"))
		if exprSrc == "" {
			return nil, &templateError{Offset: off + i, Msg: "empty placeholder {{ }}"}
		}
		part, err := placeholder(exprSrc)
		if err != nil {
			ce := err.(*compileError)
			return nil, &templateError{Offset: off + i + 2 + lead + ce.Column - 1, Line: ce.Line, Column: ce.Column,
				Msg: fmt.Sprintf("placeholder {{ %s }}: %s", exprSrc, ce.Msg)}
		}
		t.parts = append(t.parts, part)
		adv := i + 2 + j + 2
		rest = rest[adv:]
		off += adv
	}
}

// String returns the template's source text.
func (t *summaryTemplate) String() string { return t.src }

// Render fills the placeholders from ev. A placeholder whose expression
// fails at run time renders as "?" (and the error is returned alongside the
// text, so the caller can count it); nil (a missing key) renders as "-".
func (t *summaryTemplate) Render(ev *cloudtrail.Event) (string, error) {
	var b strings.Builder
	// Room for about what the template renders to (its source, the
	// placeholders' values a little longer than their expressions): one
	// allocation where growing from nothing took four or five.
	b.Grow(len(t.src) + 32)
	var firstErr error
	for _, p := range t.parts {
		if p.program == nil {
			b.WriteString(p.text)
			continue
		}
		v, err := runText(p.program, ev, formatValue)
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("placeholder {{ %s }}: %w", p.src, err)
			}
			b.WriteString("?")
			continue
		}
		b.WriteString(v)
	}
	// A summary is one line: fold any newline an event field carried.
	return oneLine(b.String()), firstErr
}

// oneLine is strings.Join(strings.Fields(s), " "): s with every run of
// white space (newlines included) folded into one space and none at either
// end. It returns s itself, without allocating, when there is nothing to
// fold, which is the usual case.
func oneLine(s string) string {
	space := true // a space here would be leading or doubled
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ':
			if space {
				return strings.Join(strings.Fields(s), " ")
			}
			space = true
		case c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r':
			return strings.Join(strings.Fields(s), " ")
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRuneInString(s[i:])
			if unicode.IsSpace(r) {
				return strings.Join(strings.Fields(s), " ")
			}
			i += n - 1
			space = false
		default:
			space = false
		}
	}
	if space && s != "" {
		return strings.Join(strings.Fields(s), " ")
	}
	return s
}

func formatValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		return x
	case time.Time:
		if x.IsZero() {
			return "-"
		}
		return x.UTC().Format(time.RFC3339)
	case float64, int, bool:
		return toString(x)
	case fmt.Stringer:
		return x.String()
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return fmt.Sprint(x)
		}
		return string(b)
	}
}
