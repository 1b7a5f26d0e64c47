package cli

import (
	"bytes"
	"fmt"
	"go/scanner"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/trailwatch/trailwatch/rules"
)

// A commandLine is a `trailwatch ...` command line found in the project's
// text: where it was found, its arguments, and how strictly to check it.
type commandLine struct {
	where string
	args  []string
	// prose: found in running text (a runbook, a log message, help
	// prose), where the words after the command may be the sentence's:
	// only its flags are checked, and its positional arguments only when
	// they look like arguments.
	prose bool
	// synopsis: a usage line with [optional] parts and a|b alternatives;
	// only the command and the flag names are checked.
	synopsis bool
}

// TestEveryCommandLineParses is issue 15's item 5: every `trailwatch ...`
// command line the project shows a user — in the built-in rules'
// runbooks, the Markdown documentation (README, docs/, examples/), the
// commands' help text and the program's own messages (log lines, errors)
// — must name a command that exists, with flags it has, through the CLI's
// own flag parser and usage checks. The runbooks assume the service's
// configuration is at hand, as it is on its host ($TRAILWATCH_CONFIG).
func TestEveryCommandLineParses(t *testing.T) {
	t.Setenv("TRAILWATCH_CONFIG", "/etc/trailwatch/config.yaml")
	var lines []commandLine
	lines = append(lines, runbookLines(t)...)
	lines = append(lines, markdownLines(t)...)
	lines = append(lines, helpLines()...)
	lines = append(lines, sourceLines(t)...)
	lines = append(lines, textLines(t)...)
	counts := map[string]int{}
	for _, l := range lines {
		counts[strings.SplitN(l.where, ":", 2)[0]]++
		if err := checkCommandLine(l); err != nil {
			t.Errorf("%s: trailwatch %s: %v", l.where, strings.Join(l.args, " "), err)
		}
	}
	t.Logf("command lines checked: %v", counts)
	for _, kind := range []string{"runbook", "markdown", "help", "source", "text"} {
		if counts[kind] < 5 {
			t.Errorf("found %d command lines in %s text; the extraction is broken", counts[kind], kind)
		}
	}
	// The ones issue 15 found broken are among those checked.
	for _, want := range []string{"search --source-ip", "search --principal", "outbox --dead", "search --user root --since 24h",
		// and the other files users copy from: a CI workflow, a systemd
		// unit, an example rule's runbook, a configuration's comments.
		"test --rules rules/ --require-tests", "run --config /etc/trailwatch/config.yaml --log-format json",
		"search --resource-name {{bucket}} --since 24h", "validate --config examples/config.yaml"} {
		found := false
		for _, l := range lines {
			found = found || strings.HasPrefix(strings.Join(l.args, " "), want)
		}
		if !found {
			t.Errorf("no command line %q was found to check", want)
		}
	}
}

// TestCommandLineCheckerRefuses makes sure the checker can fail.
func TestCommandLineCheckerRefuses(t *testing.T) {
	for _, l := range []commandLine{
		{args: []string{"search", "--user", "root", "--sinse", "24h"}},
		{args: []string{"outbox", "--deadd"}},
		{args: []string{"serach", "--user", "root"}},
		{args: []string{"search", "--output", "xml", "x"}},
		{args: []string{"silence", "expire", "--state-dir", "/x"}},
		{args: []string{"replay", "[--rules", "...]", "[--outptu", "json]"}, synopsis: true},
		{args: []string{"search", "--since", "yesterday"}, prose: true},
	} {
		if err := checkCommandLine(l); err == nil {
			t.Errorf("trailwatch %s passed the check", strings.Join(l.args, " "))
		}
	}
}

// checkCommandLine runs l through a fresh command tree's parser and usage
// checks, without running the command.
func checkCommandLine(l commandLine) error {
	var out bytes.Buffer
	root := newRoot(Stdio{In: strings.NewReader(""), Out: &out, Err: &out})
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	args := l.args
	if l.synopsis {
		var path []string
		for _, a := range args {
			if strings.ContainsAny(a, "[]|<>.") || strings.HasPrefix(a, "-") || strings.ToUpper(a) == a {
				break
			}
			path = append(path, a)
		}
		cmd, rest, err := root.Find(path)
		if err != nil || len(rest) > 0 {
			return fmt.Errorf("no such command: %v", path)
		}
		for _, m := range regexp.MustCompile(`--([a-z][a-z0-9-]*)`).FindAllStringSubmatch(strings.Join(args, " "), -1) {
			if cmd.Flags().Lookup(m[1]) == nil && cmd.PersistentFlags().Lookup(m[1]) == nil && cmd.InheritedFlags().Lookup(m[1]) == nil {
				return fmt.Errorf("%s has no flag --%s", cmd.CommandPath(), m[1])
			}
		}
		return nil
	}
	cmd, rest, err := root.Find(args)
	if err != nil {
		return err
	}
	if cmd == root && len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return fmt.Errorf("unknown command %q", args[0])
	}
	if len(rest) == 0 && len(args) > 0 && !strings.HasPrefix(args[len(args)-1], "-") && !l.prose && len(args) == len(strings.Fields(cmd.CommandPath()))-1 {
		return nil // the command named, as in "`trailwatch replay` reads ..."
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return err
	}
	if h, _ := cmd.Flags().GetBool("help"); h {
		return nil
	}
	positional := cmd.Flags().Args()
	if !l.prose {
		if err := cmd.ValidateArgs(positional); err != nil {
			return err
		}
	}
	if err := cmd.ValidateRequiredFlags(); err != nil {
		return err
	}
	if err := cmd.ValidateFlagGroups(); err != nil {
		return err
	}
	if cmd.PreRunE != nil {
		return cmd.PreRunE(cmd, positional)
	}
	return nil
}

// ------------------------------------------------------------ extraction

var lineStartRe = regexp.MustCompile(`(?:^|[\s(=` + "`" + `'"])(?:go run \./cmd/trailwatch|(?:\./|/usr/local/bin/)?trailwatch) `)

// codeStartRe matches what may come before a command in a code line: a
// prompt, environment assignments, sudo, or a shell operator.
var codeStartRe = regexp.MustCompile(`^((\$|#|sudo|[A-Z_][A-Z0-9_]*=\S*|&&|\|\||;|\||\$\()\s*)+$`)

// extract finds the command lines in text, one or more a line.
func extract(where, text string, prose bool) []commandLine {
	var out []commandLine
	text = strings.ReplaceAll(text, "\\\n", " ")
	for i, line := range strings.Split(text, "\n") {
		for _, loc := range lineStartRe.FindAllStringIndex(line, -1) {
			before := strings.TrimSpace(line[:loc[0]])
			if !prose && before != "" && !codeStartRe.MatchString(before) {
				continue // "aws iam put-role-policy --role-name trailwatch ..."
			}
			if prose {
				if f := strings.Fields(before); len(f) > 0 && strings.HasPrefix(f[len(f)-1], "-") {
					continue // the value of another program's flag
				}
			}
			rest := line[loc[1]:]
			args, synopsis := tokens(rest, prose)
			if len(args) == 0 || !isCommandWord(args[0]) {
				continue
			}
			out = append(out, commandLine{where: fmt.Sprintf("%s:%d", where, i+1), args: args, prose: prose, synopsis: synopsis})
		}
	}
	return out
}

// isCommandWord reports whether w names a command of trailwatch (or is a
// flag), so that prose such as "trailwatch reads the log group" is not
// taken for a command line.
func isCommandWord(w string) bool {
	if strings.HasPrefix(w, "-") {
		return true
	}
	root := newRoot(Stdio{})
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == w {
			return true
		}
	}
	return false
}

// tokens splits a command line like a shell does (quotes group words, a
// <placeholder> is one word), up to its end: an unquoted ) ; | & # or
// backquote, the end of the line, or, in prose, a word ending a clause
// ("24h," "1h).") or a bare word that is not an argument.
func tokens(s string, prose bool) (args []string, synopsis bool) {
	if strings.Contains(s, "[") || regexp.MustCompile(`\S\\?\|\S`).MatchString(s) {
		synopsis = true
	}
	var cur strings.Builder
	inWord, quote, angle := false, rune(0), false
	expectValue := false
	flush := func() bool {
		if !inWord {
			return true
		}
		w := cur.String()
		cur.Reset()
		inWord = false
		end := false
		if prose {
			if t := strings.TrimRight(w, ",."); t != w && !strings.HasSuffix(w, "...") {
				w, end = t, true
			}
			if !strings.HasPrefix(w, "-") && !expectValue && len(args) > 0 && !looksLikeArgument(w) && !isSubcommandWord(args, w) {
				return false
			}
		}
		args = append(args, w)
		expectValue = strings.HasPrefix(w, "--") && !strings.Contains(w, "=")
		return !end
	}
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case angle:
			cur.WriteRune(r)
			if r == '>' {
				angle = false
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == '<':
			angle, inWord = true, true
			cur.WriteRune(r)
		case r == ' ' || r == '\t':
			if !flush() {
				return args, synopsis
			}
		case strings.ContainsRune(");&#`", r) || (r == '|' && !synopsis) || r == '>':
			flush()
			return args, synopsis
		default:
			inWord = true
			cur.WriteRune(r)
		}
	}
	flush()
	return args, synopsis
}

// looksLikeArgument reports whether a bare word in prose is a command's
// argument (a path, a file, an id) rather than the sentence's next word.
func looksLikeArgument(w string) bool {
	return w == "-" || strings.ContainsAny(w, "/.:*<") || regexp.MustCompile(`^[A-Z][A-Z_]*$|^[0-9a-f]{6,}$`).MatchString(w)
}

// isSubcommandWord reports whether w continues the command path of args
// ("silence" "add").
func isSubcommandWord(args []string, w string) bool {
	root := newRoot(Stdio{})
	cmd, rest, err := root.Find(args)
	if err != nil || len(rest) > 0 {
		return false
	}
	for _, c := range cmd.Commands() {
		if c.Name() == w {
			return true
		}
	}
	return false
}

// runbookLines are the command lines of the built-in rules' runbooks and
// descriptions.
func runbookLines(t *testing.T) []commandLine {
	set, err := rules.Load("builtin")
	if err != nil {
		t.Fatal(err)
	}
	var out []commandLine
	for _, r := range set.Rules() {
		out = append(out, extract("runbook:"+r.Pos.String()+" "+r.ID, r.Runbook+"\n"+r.Description, true)...)
	}
	return out
}

// markdownLines are the command lines in the code blocks and code spans
// of the project's Markdown files.
func markdownLines(t *testing.T) []commandLine {
	var out []commandLine
	walkRepo(t, ".md", func(rel string, data []byte) {
		inFence := false
		for i, line := range strings.Split(string(data), "\n") {
			where := fmt.Sprintf("markdown:%s:%d", rel, i+1)
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				inFence = !inFence
				continue
			}
			if inFence {
				for _, l := range extract(where, line, false) {
					l.where = where
					out = append(out, l)
				}
				continue
			}
			for _, span := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(line, -1) {
				for _, l := range extract(where, span[1], false) {
					l.where = where
					out = append(out, l)
				}
			}
		}
	})
	return out
}

// helpLines are the command lines of every command's help: its examples
// (exact) and its long description (prose).
func helpLines() []commandLine {
	var out []commandLine
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		out = append(out, extract("help:"+c.CommandPath()+" (Example)", c.Example, false)...)
		out = append(out, extract("help:"+c.CommandPath()+" (Long)", c.Long, true)...)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRoot(Stdio{}))
	return out
}

// sourceLines are the command lines in the string literals of the
// program's Go source (log messages, errors, help), test files excepted.
func sourceLines(t *testing.T) []commandLine {
	var out []commandLine
	walkRepo(t, ".go", func(rel string, src []byte) {
		if strings.HasSuffix(rel, "_test.go") {
			return
		}
		fset := token.NewFileSet()
		file := fset.AddFile(rel, -1, len(src))
		var s scanner.Scanner
		s.Init(file, src, nil, 0)
		for {
			pos, tok, lit := s.Scan()
			if tok == token.EOF {
				break
			}
			if tok != token.STRING || !strings.Contains(lit, "trailwatch ") {
				continue
			}
			text, err := strconv.Unquote(lit)
			if err != nil {
				continue
			}
			out = append(out, extract("source:"+fset.Position(pos).String(), text, true)...)
		}
	})
	return out
}

// textLines are the command lines of the repository's other text files
// that users read or copy from: YAML (example configurations and rule
// files with their comments and runbooks, CI workflows, CloudFormation
// templates), shell scripts and systemd units. They are read as prose,
// comments and all; the built-in packs are runbookLines'.
func textLines(t *testing.T) []commandLine {
	var out []commandLine
	walkRepoFiles(t, func(rel string) bool {
		if strings.HasPrefix(filepath.ToSlash(rel), "rules/builtin/") {
			return false
		}
		switch filepath.Ext(rel) {
		case ".yaml", ".yml", ".sh", ".service":
			return true
		}
		return filepath.ToSlash(rel) == ".ci/run"
	}, func(rel string, data []byte) {
		out = append(out, extract("text:"+rel, string(data), true)...)
	})
	return out
}

// walkRepo calls fn with the path (from the repository's root) and content
// of every file of the repository whose name ends in ext.
func walkRepo(t *testing.T, ext string, fn func(rel string, data []byte)) {
	t.Helper()
	walkRepoFiles(t, func(rel string) bool { return strings.HasSuffix(rel, ext) }, fn)
}

// walkRepoFiles calls fn with the path (from the repository's root) and
// content of every file of the repository that match accepts; .git and
// testdata directories are not entered.
func walkRepoFiles(t *testing.T, match func(rel string) bool, fn func(rel string, data []byte)) {
	t.Helper()
	const root = "../.."
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() || !match(rel) {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fn(rel, data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
