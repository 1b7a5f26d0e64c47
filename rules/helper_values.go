package rules

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Value helpers for fields whose type varies from record to record: toList,
// dig, str, portInRange.
func init() {
	registerHelper("toList", func(params ...any) (any, error) {
		return toList(params[0]), nil
	}, new(func(any) []any))
	registerHelper("dig", func(params ...any) (any, error) {
		return dig(params[0], params[1].(string)), nil
	}, new(func(any, string) any))
	registerHelper("str", func(params ...any) (any, error) {
		return toString(params[0]), nil
	}, new(func(any) string))
	registerHelper("portInRange", portInRange, new(func(any, any, any) bool))
}

// portInRange reports whether from <= port <= to, or from is -1 (EC2's
// "all ports"); strings are read as numbers.
func portInRange(params ...any) (any, error) {
	p, ok1 := toFloat(params[0])
	from, ok2 := toFloat(params[1])
	to, ok3 := toFloat(params[2])
	if !ok1 || !ok2 {
		return false, nil
	}
	if !ok3 {
		to = from
	}
	// -1 means "all ports" in EC2 security group rules.
	if from == -1 || (from <= p && p <= to) {
		return true, nil
	}
	return false, nil
}

// eachString calls fn with every string in args, descending into lists (a
// named list such as office_cidrs may be passed whole), until fn returns
// true.
func eachString(args []any, fn func(string) bool) bool {
	for _, a := range args {
		switch x := a.(type) {
		case string:
			if fn(x) {
				return true
			}
		case []any:
			if eachString(x, fn) {
				return true
			}
		case []string:
			for _, s := range x {
				if fn(s) {
					return true
				}
			}
		}
	}
	return false
}

func toList(v any) []any {
	switch x := v.(type) {
	case nil:
		return []any{}
	case []any:
		return x
	case []string:
		out := make([]any, len(x))
		for i, s := range x {
			out[i] = s
		}
		return out
	default:
		return []any{v}
	}
}

func toString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return strconv.FormatInt(int64(x), 10)
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	case fmt.Stringer:
		return x.String()
	default:
		return fmt.Sprint(x)
	}
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		return f, err == nil
	}
	return 0, false
}

// dig walks a dotted path (a.b.0.c or a.b[0].c) through maps and lists,
// returning nil wherever the path does not exist.
// digBrackets turns dig's a[0].b into a.0.b; built once (a Replacer per
// call was most of what a summary that digs allocated).
var digBrackets = strings.NewReplacer("[", ".", "]", "")

func dig(v any, p string) any {
	p = digBrackets.Replace(p)
	for _, part := range strings.Split(p, ".") {
		if part == "" {
			continue
		}
		switch x := v.(type) {
		case map[string]any:
			v = x[part]
		case []any:
			i, err := strconv.Atoi(part)
			if err != nil || i < 0 || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}
