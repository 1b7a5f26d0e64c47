package rules

import (
	"sort"
	"strings"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// Record helpers: principal (who made the call) and leaves (every value
// under a path of nested maps and lists, as Sigma rules match them).
func init() {
	registerHelper("principal", func(params ...any) (any, error) {
		// One owner for "who made the call": cloudtrail.Event.Principal.
		var ev cloudtrail.Event
		switch u := params[0].(type) {
		case cloudtrail.UserIdentity:
			ev.UserIdentity = u
		case *cloudtrail.UserIdentity:
			if u != nil {
				ev.UserIdentity = *u
			}
		}
		return ev.Principal(), nil
	}, new(func(any) string))
	registerHelper("leaves", func(params ...any) (any, error) {
		return leaves(params[0], params[1].(string)), nil
	}, new(func(any, string) []any))
}

// leaves returns every scalar (string, number, bool) at path in v: the
// dotted path is walked into every element of a list met on the way (as
// search engines flatten nested records), and a map or list at the end of
// it gives all the scalars inside it. An empty path starts at v itself.
func leaves(v any, path string) []any {
	var out []any
	var parts []string
	if path != "" {
		parts = strings.Split(path, ".")
	}
	var walk func(v any, parts []string)
	walk = func(v any, parts []string) {
		switch x := v.(type) {
		case nil:
		case []any:
			for _, e := range x {
				walk(e, parts)
			}
		case map[string]any:
			if len(parts) == 0 {
				keys := make([]string, 0, len(x))
				for k := range x {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				for _, k := range keys {
					walk(x[k], nil)
				}
				return
			}
			walk(x[parts[0]], parts[1:])
		default:
			if len(parts) == 0 {
				out = append(out, x)
			}
		}
	}
	walk(v, parts)
	return out
}
