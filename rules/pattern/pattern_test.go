package pattern

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// decode reads a JSON object the way the engine does (UseNumber) or the
// default way (float64).
func decode(t testing.TB, s string, useNumber bool) map[string]any {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(s))
	if useNumber {
		d.UseNumber()
	}
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return m
}

func mustParse(t testing.TB, src string) *Pattern {
	t.Helper()
	p, err := Parse(src)
	if err != nil {
		t.Fatalf("Parse(%q): %v", src, err)
	}
	return p
}

func TestParseCanonical(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string
	}{
		{"bare value is quoted", `{$.eventName=ConsoleLogin}`, `{ $.eventName = "ConsoleLogin" }`},
		{"redundant parentheses dropped", `{ ($.a = "x") && ($.b = "y") }`, `{ $.a = "x" && $.b = "y" }`},
		{"needed parentheses kept", `{($.a=x) && (($.b=y) || ($.b=z))}`, `{ $.a = "x" && ($.b = "y" || $.b = "z") }`},
		{"and binds tighter", `{ $.a = x || $.b = y && $.c = z }`, `{ $.a = "x" || $.b = "y" && $.c = "z" }`},
		{"nested or flattened", `{ ($.a = x || $.b = y) || $.c = z }`, `{ $.a = "x" || $.b = "y" || $.c = "z" }`},
		{"numbers keep their text", `{ $.latency > +1000 && $.n[0] < 10e-3 && $.avg <= 55.5 }`, `{ $.latency > +1000 && $.n[0] < 10e-3 && $.avg <= 55.5 }`},
		{"number with = stays bare", `{ $.errorCode = 400 }`, `{ $.errorCode = 400 }`},
		{"wildcard value", `{ $.sourceIPAddress != 123.123.* }`, `{ $.sourceIPAddress != "123.123.*" }`},
		{"escapes", `{ $.a = "say \"hi\" \\ \d" }`, `{ $.a = "say \"hi\" \\ \\d" }`},
		{"keywords any case", `{ $.a is null || $.b Not Exists || $.c IS true || $.d is FALSE }`, `{ $.a IS NULL || $.b NOT EXISTS || $.c IS TRUE || $.d IS FALSE }`},
		{"regex", `{ $.eventType = %Trail% }`, `{ $.eventType = %Trail% }`},
		{"wildcard selectors", `{ $.arrayKey[*] = %val.{2}% || $.* = x || $.a.* = y }`, `{ $.arrayKey[*] = %val.{2}% || $.* = "x" || $.a.* = "y" }`},
		{"bracket key", `{ $.['cluster.name'] = "c" && $.a['b c'] = d && $.['plain'] = e }`, `{ $.['cluster.name'] = "c" && $.a.['b c'] = "d" && $.plain = "e" }`},
		{"bracket key escapes", `{ $.['it\'s'] = x }`, `{ $.['it\'s'] = "x" }`},
		{"nested arrays", `{ $.coordinates[0][1] = 1 }`, `{ $.coordinates[0][1] = 1 }`},
		{"multi-line", "{\n  $.a = x\n  && $.b = y\n}\n", `{ $.a = "x" && $.b = "y" }`},
		{"empty string", `{ $.a = "" }`, `{ $.a = "" }`},
		{"unicode string", `{ $.a = "é✓" }`, `{ $.a = "é✓" }`},
		{"any value", `{ $.latency = * }`, `{ $.latency = "*" }`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, tt.src)
			got := p.String()
			if got != tt.want {
				t.Fatalf("String() = %s, want %s", got, tt.want)
			}
			if again := mustParse(t, got).String(); again != got {
				t.Errorf("round trip: String() = %s, then %s", got, again)
			}
		})
	}
}

func TestSyntaxErrors(t *testing.T) {
	tests := []struct {
		name      string
		src       string
		line, col int
		msg       string
	}{
		{"empty", ``, 1, 1, "empty pattern"},
		{"empty braces", `{ }`, 1, 3, "empty pattern"},
		{"not JSON", `ERROR`, 1, 1, "only JSON filter patterns"},
		{"space-delimited", `[ip, user]`, 1, 1, "only JSON filter patterns"},
		{"unclosed paren", `{ ($.a = x }`, 1, 3, "unbalanced '('"},
		{"unclosed paren on line 2", "{\n  (($.a = x) && ($.b = y)\n}", 2, 3, "unbalanced '('"},
		{"extra close paren", `{ $.a = x) }`, 1, 10, "unbalanced ')'"},
		{"extra close paren in group", `{ ($.a = x)) }`, 1, 12, "unbalanced ')'"},
		{"empty parens", `{ () }`, 1, 4, "unbalanced ')'"},
		{"missing value", `{ $.a = }`, 1, 9, `missing value after "="`},
		{"missing value before and", `{ $.a != && $.b = c }`, 1, 10, `missing value after "!="`},
		{"missing value at end", `{ $.a =`, 1, 8, `missing value after "="`},
		{"missing operator", `{ $.a }`, 1, 7, "expected an operator"},
		{"double equals", `{ $.a == b }`, 1, 7, `unknown operator "=="`},
		{"diamond", `{ $.a <> b }`, 1, 7, `unknown operator "<>"`},
		{"tilde", `{ $.a =~ b }`, 1, 7, `unknown operator "=~"`},
		{"word operator", `{ $.a LIKE b }`, 1, 7, `unknown operator "LIKE"`},
		{"EXISTS unsupported", `{ $.a EXISTS }`, 1, 7, "EXISTS is not supported"},
		{"IS NOT unsupported", `{ $.a IS NOT NULL }`, 1, 7, "IS NOT is not supported"},
		{"IS what", `{ $.a IS MAYBE }`, 1, 10, "expected NULL, TRUE or FALSE"},
		{"NOT what", `{ $.a NOT THERE }`, 1, 11, "expected EXISTS after NOT"},
		{"single ampersand", `{ $.a = x & $.b = y }`, 1, 11, `unknown operator "&"`},
		{"single pipe", `{ $.a = x | $.b = y }`, 1, 11, `unknown operator "|"`},
		{"dangling and", `{ $.a = x && }`, 1, 14, "expected a condition"},
		{"leading or", `{ || $.a = x }`, 1, 3, "expected a condition"},
		{"negation", `{ !($.a = x) }`, 1, 3, "negation"},
		{"unquoted space", `{ $.a = Failed authentication }`, 1, 16, "quote values"},
		{"trailing garbage", `{ $.a = x } extra`, 1, 13, "after the closing '}'"},
		{"second pattern", `{ $.a = x }{ $.b = y }`, 1, 12, "after the closing '}'"},
		{"missing close brace", `{ $.a = x`, 1, 10, "missing '}'"},
		{"missing close brace after newline", "{ $.a = x\n", 2, 1, "missing '}'"},
		{"relational needs number", `{ $.a > abc }`, 1, 9, "needs a number"},
		{"relational regex", `{ $.a > %1% }`, 1, 9, "needs a number"},
		{"unterminated string", `{ $.a = "abc }`, 1, 9, "unterminated string"},
		{"unterminated regex", `{ $.a = %abc }`, 1, 9, "unterminated regular expression"},
		{"regex paren", `{ $.a = %a(b)% }`, 1, 11, "not supported in a CloudWatch Logs regular expression"},
		{"regex multibyte", `{ $.a = %aé% }`, 1, 11, "multi-byte"},
		{"invalid regex", `{ $.a = %a{2,1}% }`, 1, 9, "invalid regular expression"},
		{"three regexes", `{ $.a = %a% || $.b = %b% || $.c = %c% }`, 1, 35, "too many regular expressions"},
		{"selector without dot", `{ $a = x }`, 1, 4, "starts with '$.'"},
		{"root array", `{ $[0] = x }`, 1, 4, "array elements must follow a property"},
		{"empty property", `{ $.a..b = x }`, 1, 7, "expected a property name"},
		{"bad index", `{ $.a[x] = 1 }`, 1, 7, "expected an array index"},
		{"unclosed index", `{ $.a[1 = 1 }`, 1, 8, "expected ']'"},
		{"two wildcards in selector", `{ $.*[*] = x }`, 1, 3, "only one wildcard"},
		{"four wildcard selectors", `{ $.a[*] = x || $.b[*] = x || $.c[*] = x || $.d[*] = x }`, 1, 45, "too many wildcard selectors"},
		{"selector expected", `{ eventName = x }`, 1, 3, "expected a condition"},
		{"column counts characters", `{ $.a = "é" && $.b = }`, 1, 22, "missing value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse(tt.src)
			if err == nil {
				t.Fatalf("Parse(%q) = %s, want an error", tt.src, p)
			}
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q) error %T %v, want *SyntaxError", tt.src, err, err)
			}
			if se.Line != tt.line || se.Col != tt.col || !strings.Contains(se.Msg, tt.msg) {
				t.Errorf("Parse(%q) = %d:%d %q, want %d:%d containing %q", tt.src, se.Line, se.Col, se.Msg, tt.line, tt.col, tt.msg)
			}
			if se.Offset < 0 || se.Offset > len(tt.src) {
				t.Errorf("Offset %d outside the source", se.Offset)
			}
		})
	}
}

func TestSyntaxErrorString(t *testing.T) {
	_, err := Parse("{\n  $.a == b }")
	if got, want := err.Error(), `2:7: unknown operator "==": use =, !=, <, >, <= or >=`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// docRecord is the JSON log event of the AWS guide's examples.
const docRecord = `{
  "eventType": "UpdateTrail",
  "sourceIPAddress": "111.111.111.111",
  "arrayKey": ["value", "another value"],
  "objectList": [{"name": "a", "id": 1}, {"name": "b", "id": 2}],
  "SomeObject": null,
  "ThisFlag": true,
  "ThatFlag": false,
  "cluster.name": "c",
  "user": {"id": 1, "email": "John.Stiles@example.com"},
  "users": [{"id": 2, "email": "John.Doe@example.com"}, {"id": 3, "email": "Jane.Doe@example.com"}],
  "actions": ["GET", "PUT", "DELETE"],
  "coordinates": [[0, 1, 2], [4, 5, 6], [7, 8, 9]],
  "recipientAccountId": "123456789012",
  "latency": 500,
  "ratio": 0.25,
  "big": 12345678901234567890,
  "maxResults": "50",
  "errorCode": 404,
  "empty": ""
}`

func TestMatch(t *testing.T) {
	tests := []struct {
		name    string
		pattern string
		want    bool
	}{
		// The AWS guide's examples on its JSON log event.
		{"doc string", `{ $.eventType = "UpdateTrail" }`, true},
		{"doc != with wildcard", `{ $.sourceIPAddress != 123.123.* }`, true},
		{"doc != with matching wildcard", `{ $.sourceIPAddress != 111.111.* }`, false},
		{"doc array element", `{ $.arrayKey[0] = "value" }`, true},
		{"doc array element mismatch", `{ $.arrayKey[1] = "value" }`, false},
		{"doc object list", `{ $.objectList[1].id = 2 }`, true},
		{"doc regex", `{ $.eventType = %Trail% }`, true},
		{"doc regex any element", `{ $.arrayKey[*] = %val.{2}% }`, true},
		{"doc regex any field", `{ $.* = %111\.111\.111\.1[0-9]{1,2}% }`, true},
		{"doc bracket key", `{ $.['cluster.name'] = "c" }`, true},
		{"doc IS NULL", `{ $.SomeObject IS NULL }`, true},
		{"doc NOT EXISTS", `{ $.SomeOtherObject NOT EXISTS }`, true},
		{"doc IS TRUE", `{ $.ThisFlag IS TRUE }`, true},
		{"doc and", `{ ($.user.id = 1) && ($.users[0].email = "John.Doe@example.com") }`, true},
		{"doc or with and", `{ $.user.email = "John.Stiles@example.com" || $.coordinates[0][1] = "nonmatch" && $.actions[2] = "nonmatch" }`, true},
		{"doc parenthesised or", `{ ($.user.email = "John.Stiles@example.com" || $.coordinates[0][1] = "nonmatch") && $.actions[2] = "nonmatch" }`, false},
		{"doc or no match", `{ ($.user.id = 2 && $.users[0].email = "nonmatch") || $.actions[2] = "GET" }`, false},
		{"doc users array is not a value", `{ $.users = 1 }`, false},
		{"doc != on array does not match", `{ $.users != 1 }`, false},

		// Wildcards in string values.
		{"prefix", `{ $.eventType = Update* }`, true},
		{"suffix", `{ $.eventType = *Trail }`, true},
		{"substring", `{ $.eventType = *dateTr* }`, true},
		{"interior star is literal", `{ $.eventType = Up*Trail }`, false},
		{"star alone matches a string", `{ $.eventType = * }`, true},
		{"star alone matches a number", `{ $.latency = * }`, true},
		{"star alone needs a value", `{ $.nothing = * }`, false},
		{"star alone does not match null", `{ $.SomeObject = * }`, false},
		{"star alone does not match an object", `{ $.user = * }`, false},
		{"!= star never matches", `{ $.eventType != * }`, false},
		{"wildcard on number text", `{ $.errorCode = 4* }`, true},
		{"empty string", `{ $.empty = "" }`, true},
		{"empty prefix is not exact", `{ $.empty = "a*" }`, false},

		// Numbers.
		{"number equal", `{ $.latency = 500 }`, true},
		{"number equal other notation", `{ $.latency = 5e2 }`, true},
		{"number not equal", `{ $.latency != 500 }`, false},
		{"number greater", `{ $.latency > 499.5 }`, true},
		{"number less or equal", `{ $.latency <= 500 }`, true},
		{"number less", `{ $.latency < 500 }`, false},
		{"number ge", `{ $.latency >= +500 }`, true},
		{"decimal", `{ $.ratio < 10e-1 }`, true},
		{"negative", `{ $.ratio > -1 }`, true},
		{"nested number", `{ $.coordinates[2][0] = 7 }`, true},
		{"big number", `{ $.big > 1e19 }`, true},
		{"number against string text", `{ $.recipientAccountId = 123456789012 }`, true},
		{"number against string is textual", `{ $.recipientAccountId = 123456789012.0 }`, false},
		{"number != string", `{ $.recipientAccountId != 123456789012 }`, false},
		{"relational reads numeric string", `{ $.maxResults > 10 }`, true},
		{"relational on non-numeric string", `{ $.eventType > 10 }`, false},
		{"quoted string against number text", `{ $.latency = "500" }`, true},
		{"quoted string against number is textual", `{ $.latency = "500.0" }`, false},
		{"number against bool", `{ $.ThisFlag = 1 }`, false},

		// Absent fields, nulls, booleans.
		{"= on absent", `{ $.nothing = x }`, false},
		{"!= on absent does not match", `{ $.nothing != x }`, false},
		{"!= on deep absent", `{ $.user.nothing.deeper != x }`, false},
		{"!= on null does not match", `{ $.SomeObject != x }`, false},
		{"!= on present string", `{ $.eventType != x }`, true},
		{"!= number on absent", `{ $.nothing != 5 }`, false},
		{"> on absent", `{ $.nothing > 5 }`, false},
		{"IS NULL on absent", `{ $.nothing IS NULL }`, false},
		{"IS NULL on string", `{ $.eventType IS NULL }`, false},
		{"NOT EXISTS on null", `{ $.SomeObject NOT EXISTS }`, false},
		{"NOT EXISTS on present", `{ $.eventType NOT EXISTS }`, false},
		{"NOT EXISTS below a string", `{ $.eventType.x NOT EXISTS }`, true},
		{"NOT EXISTS past array end", `{ $.actions[3] NOT EXISTS }`, true},
		{"IS TRUE on false", `{ $.ThatFlag IS TRUE }`, false},
		{"IS FALSE", `{ $.ThatFlag IS FALSE }`, true},
		{"IS TRUE on string true", `{ $.eventType IS TRUE }`, false},
		{"= true is a string comparison", `{ $.ThisFlag = true }`, false},
		{"!= true on a bool does not match", `{ $.ThisFlag != true }`, false},
		{"IS FALSE on absent", `{ $.nothing IS FALSE }`, false},

		// Selectors.
		{"index on object", `{ $.user[0] = 1 }`, false},
		{"field on array", `{ $.users.id = 2 }`, false},
		{"any index", `{ $.users[*].email = "Jane.Doe@example.com" }`, true},
		{"any index no match", `{ $.users[*].email = "nobody" }`, false},
		{"any index !=", `{ $.actions[*] != GET }`, true},
		{"any field of object", `{ $.user.* = "John.Stiles@example.com" }`, true},
		{"any field not array", `{ $.actions.* = GET }`, false},
		{"any index not object", `{ $.user[*] = 1 }`, false},
		{"wildcard NOT EXISTS", `{ $.SomeObject[*] NOT EXISTS }`, true},
		{"wildcard NOT EXISTS with elements", `{ $.actions[*] NOT EXISTS }`, false},
		{"wildcard IS NULL", `{ $.* IS NULL }`, true},

		// Regex.
		{"regex unanchored", `{ $.eventType = %date% }`, true},
		{"regex anchored", `{ $.eventType = %^Trail% }`, false},
		{"regex !=", `{ $.eventType != %^Update% }`, false},
		{"regex on number text", `{ $.errorCode = %^4\d\d$% }`, true},
		{"regex char class", `{ $.sourceIPAddress = %^[0-9.]+$% }`, true},

		// Logic.
		{"or second true", `{ $.a = x || $.eventType = UpdateTrail }`, true},
		{"and one false", `{ $.eventType = UpdateTrail && $.a = x }`, false},
		{"deep parentheses", `{ ((((($.eventType = UpdateTrail))))) }`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, tt.pattern)
			for _, useNumber := range []bool{true, false} {
				if got := p.Match(decode(t, docRecord, useNumber)); got != tt.want {
					t.Errorf("Match = %v, want %v (UseNumber=%v)", got, tt.want, useNumber)
				}
			}
			// The canonical text means the same thing.
			q := mustParse(t, p.String())
			if got := q.Match(decode(t, docRecord, true)); got != tt.want {
				t.Errorf("Parse(String()).Match = %v, want %v; String() = %s", got, tt.want, p.String())
			}
		})
	}
}

func TestMatchHandBuiltRecords(t *testing.T) {
	p := mustParse(t, `{ $.n = 5 && $.m > 1 && $.s = "x" }`)
	tests := []struct {
		name   string
		record map[string]any
		want   bool
	}{
		{"ints", map[string]any{"n": 5, "m": int64(2), "s": "x"}, true},
		{"floats", map[string]any{"n": 5.0, "m": float32(1.5), "s": "x"}, true},
		{"json.Number", map[string]any{"n": json.Number("5"), "m": json.Number("1e1"), "s": "x"}, true},
		{"unsigned", map[string]any{"n": uint(5), "m": uint64(3), "s": "x"}, true},
		{"wrong", map[string]any{"n": 6, "m": 2, "s": "x"}, false},
		{"nil record", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Match(tt.record); got != tt.want {
				t.Errorf("Match(%v) = %v, want %v", tt.record, got, tt.want)
			}
		})
	}
	var nilPattern *Pattern
	if nilPattern.Match(map[string]any{}) || nilPattern.String() != "" || nilPattern.Fields() != nil {
		t.Error("nil *Pattern should match nothing and render empty")
	}
}

func TestFields(t *testing.T) {
	tests := []struct {
		pattern string
		want    []string
	}{
		{`{ $.eventName = ConsoleLogin && $.errorMessage = "Failed authentication" }`, []string{"eventName", "errorMessage"}},
		{`{ $.eventName = A || $.eventName = B || $.userIdentity.type = Root }`, []string{"eventName", "userIdentity.type"}},
		{`{ $.a[*] = x && $.* = y && $.['k.v'] NOT EXISTS && $.c[0][1] IS NULL }`, []string{"a[*]", "*", "['k.v']", "c[0][1]"}},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			if got := mustParse(t, tt.pattern).Fields(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Fields() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEqualityConstraints(t *testing.T) {
	tests := []struct {
		name    string
		pattern string
		want    map[string][]string
	}{
		{"single", `{ $.eventName = ConsoleLogin }`, map[string][]string{"eventName": {"ConsoleLogin"}}},
		{"conjunction", `{ $.eventSource = kms.amazonaws.com && ($.eventName = DisableKey || $.eventName = ScheduleKeyDeletion) }`,
			map[string][]string{"eventSource": {"kms.amazonaws.com"}, "eventName": {"DisableKey", "ScheduleKeyDeletion"}}},
		{"top-level or", `{ $.eventName = A || $.eventName = B || $.eventName = A }`, map[string][]string{"eventName": {"A", "B"}}},
		{"or over two selectors", `{ $.eventName = A || $.eventSource = B }`, map[string][]string{}},
		{"intersection", `{ ($.eventName = A || $.eventName = B) && ($.eventName = B || $.eventName = C) }`, map[string][]string{"eventName": {"B"}}},
		{"contradiction", `{ $.eventName = A && $.eventName = B }`, map[string][]string{"eventName": {}}},
		{"wildcard value skipped", `{ $.errorCode = AccessDenied* && $.eventName = X }`, map[string][]string{"eventName": {"X"}}},
		{"interior star skipped", `{ $.a = "x*y" }`, map[string][]string{}},
		{"regex skipped", `{ $.a = %x% }`, map[string][]string{}},
		{"number skipped", `{ $.a = 5 }`, map[string][]string{}},
		{"quoted number kept", `{ $.recipientAccountId = "123456789012" }`, map[string][]string{"recipientAccountId": {"123456789012"}}},
		{"!= skipped", `{ $.a != x && $.b = y }`, map[string][]string{"b": {"y"}}},
		{"wildcard selector skipped", `{ $.a[*] = x }`, map[string][]string{}},
		{"or with non-equality skipped", `{ $.a = x || $.a NOT EXISTS }`, map[string][]string{}},
		{"nested and inside or skipped", `{ $.a = x || ($.a = y && $.b = z) }`, map[string][]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustParse(t, tt.pattern).EqualityConstraints()
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("EqualityConstraints() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestEqualityConstraintsAreNecessary checks the index contract: whenever a
// pattern matches a record, every constrained field's text is in its list.
func TestEqualityConstraintsAreNecessary(t *testing.T) {
	records := []string{
		`{"eventName":"A","eventSource":"s","n":5}`,
		`{"eventName":"B","eventSource":"s","n":"5"}`,
		`{"eventName":"C"}`,
		`{"eventName":5}`,
	}
	patterns := []string{
		`{ $.eventName = A || $.eventName = B }`,
		`{ $.eventSource = s && ($.eventName = A || $.eventName = "5") }`,
		`{ $.n = "5" && $.eventName = B }`,
		`{ $.eventName = "5" }`,
	}
	for _, ps := range patterns {
		p := mustParse(t, ps)
		for _, rs := range records {
			r := decode(t, rs, true)
			if !p.Match(r) {
				continue
			}
			for field, values := range p.EqualityConstraints() {
				v, ok := FieldValue(r, field)
				if !ok || !containsString(values, v) {
					t.Errorf("%s matches %s but %s=%q (%v) is not in %q", ps, rs, field, v, ok, values)
				}
			}
		}
	}
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestFieldValue(t *testing.T) {
	r := decode(t, docRecord, true)
	tests := []struct {
		field  string
		want   string
		wantOK bool
	}{
		{"eventType", "UpdateTrail", true},
		{"$.eventType", "UpdateTrail", true},
		{"user.email", "John.Stiles@example.com", true},
		{"users[1].id", "3", true},
		{"['cluster.name']", "c", true},
		{"latency", "500", true},
		{"SomeObject", "", false},
		{"ThisFlag", "", false},
		{"user", "", false},
		{"nothing", "", false},
		{"actions[*]", "", false},
		{"bad..selector", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			got, ok := FieldValue(r, tt.field)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("FieldValue(%q) = %q, %v, want %q, %v", tt.field, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name    string
		clauses []Clause
		want    string
		wantErr string
	}{
		{"none", nil, "", ""},
		{"access key", []Clause{{Selector: "$.userIdentity.accessKeyId", Op: "=", Value: "AKIAIOSFODNN7EXAMPLE"}},
			`{ $.userIdentity.accessKeyId = "AKIAIOSFODNN7EXAMPLE" }`, ""},
		{"no dollar", []Clause{{Selector: "userIdentity.arn", Op: "!=", Value: "arn:aws:iam::123456789012:user/alice"}},
			`{ $.userIdentity.arn != "arn:aws:iam::123456789012:user/alice" }`, ""},
		{"escaping", []Clause{{Selector: "a", Op: "=", Value: `x" || $.b = "y \`}},
			`{ $.a = "x\" || $.b = \"y \\" }`, ""},
		{"odd key", []Clause{{Selector: "@timestamp", Op: "not  exists"}, {Selector: "tags.it's", Op: "IS NULL"}},
			`{ $.['@timestamp'] NOT EXISTS && $.tags.['it\'s'] IS NULL }`, ""},
		{"numeric", []Clause{{Selector: "latency", Op: ">=", Value: "500"}, {Selector: "recipientAccountId", Op: "=", Value: "012345678901"}},
			`{ $.latency >= 500 && $.recipientAccountId = "012345678901" }`, ""},
		{"wildcard kept", []Clause{{Selector: "eventName", Op: "=", Value: "Delete*"}}, `{ $.eventName = "Delete*" }`, ""},
		{"array selector", []Clause{{Selector: "$.resources[0].ARN", Op: "=", Value: "x"}}, `{ $.resources[0].ARN = "x" }`, ""},
		{"unknown op surfaces in Parse", []Clause{{Selector: "a", Op: "LIKE", Value: "x"}}, `{ $.a LIKE "x" }`, `unknown operator "LIKE"`},
		{"relational needs number", []Clause{{Selector: "a", Op: ">", Value: "x"}}, `{ $.a > "x" }`, "needs a number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Build(tt.clauses...)
			if got != tt.want {
				t.Fatalf("Build() = %s, want %s", got, tt.want)
			}
			if got == "" {
				return
			}
			p, err := Parse(got)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(Build()) error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(Build()) = %v", err)
			}
			if p.String() != got {
				t.Errorf("Build() is not canonical: %s vs %s", got, p.String())
			}
		})
	}

	t.Run("built pattern matches the literal value", func(t *testing.T) {
		value := `we"ird \ value`
		p := mustParse(t, Build(Clause{Selector: "a.b", Op: "=", Value: value}))
		if !p.Match(map[string]any{"a": map[string]any{"b": value}}) {
			t.Errorf("%s does not match its own value", p)
		}
	})
}

// TestConcurrentMatch shares one Pattern across goroutines (run with -race).
func TestConcurrentMatch(t *testing.T) {
	p := mustParse(t, `{ $.arrayKey[*] = %val.{2}% && $.eventType = Update* && $.latency > 1 }`)
	r := decode(t, docRecord, true)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				if !p.Match(r) {
					t.Error("Match = false, want true")
					return
				}
				_ = p.String()
				_ = p.Fields()
				_ = p.EqualityConstraints()
			}
		}()
	}
	wg.Wait()
}

// plainEval evaluates n without the eqSetNode shortcut, as the reference for
// that optimisation.
func plainEval(n node, r map[string]any) bool {
	switch n := n.(type) {
	case *eqSetNode:
		return plainEval(n.or, r)
	case *orNode:
		for _, k := range n.kids {
			if plainEval(k, r) {
				return true
			}
		}
		return false
	case *andNode:
		for _, k := range n.kids {
			if !plainEval(k, r) {
				return false
			}
		}
		return true
	}
	return n.eval(r)
}

func TestEqSetMatchesPlainOr(t *testing.T) {
	patterns := []string{
		`{ $.e = A || $.e = B || $.e = C || $.e = D }`,
		`{ $.e = "5" || $.e = "6" || $.e = "7" || $.e = "" }`,
		`{ $.a.e = A || $.a.e = B || $.a.e = A || $.a.e = "x y" }`,
		`{ $.s = x && ($.e = A || $.e = B || $.e = C || $.e = D) }`,
	}
	records := []string{
		`{"e":"A"}`, `{"e":"D"}`, `{"e":"E"}`, `{"e":5}`, `{"e":5.0}`, `{"e":""}`, `{"e":null}`, `{"e":true}`,
		`{"e":["A"]}`, `{"e":{"A":1}}`, `{}`, `{"a":{"e":"x y"}}`, `{"a":{"e":"B"}}`, `{"a":"B"}`, `{"s":"x","e":"C"}`,
	}
	for _, ps := range patterns {
		p := mustParse(t, ps)
		if !strings.Contains(fmtNodes(p.root), "eqSet") {
			t.Fatalf("%s was not compiled to a set", ps)
		}
		for _, rs := range records {
			for _, useNumber := range []bool{true, false} {
				r := decode(t, rs, useNumber)
				if got, want := p.Match(r), plainEval(p.root, r); got != want {
					t.Errorf("%s on %s: set says %v, plain || says %v", ps, rs, got, want)
				}
			}
		}
	}
}

// fmtNodes names the node types in a tree, for shape assertions.
func fmtNodes(n node) string {
	switch n := n.(type) {
	case *eqSetNode:
		return "eqSet"
	case *orNode:
		var parts []string
		for _, k := range n.kids {
			parts = append(parts, fmtNodes(k))
		}
		return "or(" + strings.Join(parts, ",") + ")"
	case *andNode:
		var parts []string
		for _, k := range n.kids {
			parts = append(parts, fmtNodes(k))
		}
		return "and(" + strings.Join(parts, ",") + ")"
	}
	return "cond"
}
