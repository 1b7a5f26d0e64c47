package sigma

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"
)

// kind is how a Sigma field name resolves against the typed record.
type kind int

const (
	// kindString is a typed string field: the expression reads it directly
	// and an absent field reads as "".
	kindString kind = iota
	// kindBool is a typed boolean field (readOnly, managementEvent).
	kindBool
	// kindFree is a path into a free-form part of the record
	// (requestParameters, responseElements, ...): matched through leaves().
	kindFree
	// kindListString is a string field of every element of a typed list
	// (resources.ARN).
	kindListString
)

// field is a resolved Sigma field.
type field struct {
	name string
	kind kind
	// expr reads the field: the typed field's path (kindString, kindBool),
	// the free-form value the path starts in (kindFree), or the list
	// (kindListString).
	expr string
	// rest is the path inside the free-form value (kindFree) or the
	// element's field (kindListString).
	rest string
}

var (
	timeType = reflect.TypeOf(time.Time{})
	mapType  = reflect.TypeOf(map[string]any(nil))
)

// resolve finds a dotted field name in the typed record t, whose fields
// are named by their `expr` tags (CloudTrail's own JSON names).
func resolve(t reflect.Type, name string) (field, error) {
	parts := strings.Split(name, ".")
	for _, p := range parts {
		if p == "" {
			return field{}, fmt.Errorf("field name %q has an empty part", name)
		}
	}
	cur := t
	for i, p := range parts {
		path := strings.Join(parts[:i+1], ".")
		f, ok := fieldByTag(cur, p)
		if !ok {
			return field{}, unknownField(cur, parts[:i], p)
		}
		ft := f.Type
		last := i == len(parts)-1
		switch {
		case ft == mapType || (ft.Kind() == reflect.Map && ft.Key().Kind() == reflect.String):
			return field{name: name, kind: kindFree, expr: path, rest: strings.Join(parts[i+1:], ".")}, nil
		case ft == timeType:
			return field{}, fmt.Errorf("field %q is a time: matching on it is not supported", path)
		case ft.Kind() == reflect.String:
			if !last {
				return field{}, fmt.Errorf("field %q is a string: it has no field %q", path, parts[i+1])
			}
			return field{name: name, kind: kindString, expr: path}, nil
		case ft.Kind() == reflect.Bool:
			if !last {
				return field{}, fmt.Errorf("field %q is a boolean: it has no field %q", path, parts[i+1])
			}
			return field{name: name, kind: kindBool, expr: path}, nil
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			if last || i+2 != len(parts) {
				return field{}, fmt.Errorf("field %q is a list of objects: name one of their fields (%s)", path, strings.Join(tagNames(ft.Elem()), ", "))
			}
			ef, ok := fieldByTag(ft.Elem(), parts[i+1])
			if !ok || ef.Type.Kind() != reflect.String {
				return field{}, unknownField(ft.Elem(), parts[:i+1], parts[i+1])
			}
			return field{name: name, kind: kindListString, expr: path, rest: parts[i+1]}, nil
		case ft.Kind() == reflect.Struct:
			if last {
				return field{}, fmt.Errorf("field %q is an object: name one of its fields (%s)", path, strings.Join(tagNames(ft), ", "))
			}
			cur = ft
		default:
			return field{}, fmt.Errorf("field %q has a type (%s) Sigma rules cannot match", path, ft)
		}
	}
	return field{}, fmt.Errorf("field %q cannot be resolved", name)
}

func fieldByTag(t reflect.Type, tag string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.IsExported() && f.Tag.Get("expr") == tag {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func tagNames(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		if tag := t.Field(i).Tag.Get("expr"); tag != "" && t.Field(i).IsExported() {
			out = append(out, tag)
		}
	}
	sort.Strings(out)
	return out
}

// unknownField explains a name the typed record does not have, with the
// field it probably meant when only the case differs.
func unknownField(t reflect.Type, parent []string, name string) error {
	where := "a CloudTrail record"
	if len(parent) > 0 {
		where = strings.Join(parent, ".")
	}
	for _, n := range tagNames(t) {
		if strings.EqualFold(n, name) {
			return fmt.Errorf("unknown field %q in %s (field names are case-sensitive: did you mean %q?)", name, where, n)
		}
	}
	if len(parent) == 0 {
		return fmt.Errorf("unknown field %q: a CloudTrail record has no such field (top-level fields: %s)", name, strings.Join(tagNames(t), ", "))
	}
	return fmt.Errorf("unknown field %q in %s (it has %s)", name, where, strings.Join(tagNames(t), ", "))
}
