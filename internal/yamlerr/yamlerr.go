// Package yamlerr places a YAML syntax error where the mistake is.
//
// gopkg.in/yaml.v3, which trailwatch decodes configurations and rule
// files with, reports a syntax error at the line where the enclosing block
// starts ("line 2: did not find expected key" for a key mis-indented on
// line 4) and gives no column. goccy/go-yaml's scanner reports the token
// it stopped at, so Locate asks it where the error is, and falls back to
// yaml.v3's line when it does not know.
package yamlerr

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"sync"

	goccy "github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/parser"
)

var v3LineRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^yaml: line (\d+): (.*)$`) })

// Locate returns the line and column (1-based) of the syntax error err
// that yaml.v3 returned for data, and a message that says what is wrong
// and what is accepted. It never quotes the document's values.
func Locate(data []byte, err error) (line, col int, msg string) {
	line, col, msg = 1, 1, strings.TrimPrefix(err.Error(), "yaml: ")
	if m := v3LineRe().FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	_, perr := parser.ParseBytes(data, 0)
	var se *goccy.SyntaxError
	if errors.As(perr, &se) && se.Token != nil && se.Token.Position != nil && se.Token.Position.Line > 0 {
		line, col, msg = se.Token.Position.Line, se.Token.Position.Column, se.Message
		line, col = continuedKey(se, line, col)
	}
	if strings.Contains(msg, "not allowed in this context") || strings.Contains(msg, "did not find expected") {
		msg += " (check the indentation: the keys of one mapping start in the same column, and a value nested under a key is indented further than the key)"
	}
	if strings.Contains(msg, "cannot start any token") && lineHasTab(data, line) {
		msg += " (YAML indents with spaces, not tabs)"
	}
	return line, col, msg
}

// continuedKey places "mapping value is not allowed" at the key that
// causes it when that key is indented further than the keys above it:
// YAML reads such a key as the continuation of the value before it (a
// plain scalar over several lines), and goccy reports where that value
// starts, a line too early. The key is on the scalar's last line.
func continuedKey(se *goccy.SyntaxError, line, col int) (int, int) {
	origin := se.Token.Origin
	if !strings.Contains(se.Message, "mapping value is not allowed") || !strings.Contains(origin, "\n") {
		return line, col
	}
	last := origin[strings.LastIndex(origin, "\n")+1:]
	return line + strings.Count(origin, "\n"), len(last) - len(strings.TrimLeft(last, " ")) + 1
}

func lineHasTab(data []byte, line int) bool {
	lines := strings.Split(string(data), "\n")
	return line >= 1 && line <= len(lines) && strings.Contains(lines[line-1], "\t")
}
