package rules

import (
	"errors"
	"io"
	"reflect"

	"gopkg.in/yaml.v3"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
	"github.com/trailwatch/trailwatch/rules/sigma"
)

// sigmaFile loads a Sigma rule (see package sigma): it is translated into
// the trailwatch rule it stands for, whose nodes keep their places in the
// Sigma file, and then loaded exactly like a rule from a rule file.
func (l *loader) sigmaFile(f File, root *yaml.Node, dec *yaml.Decoder) {
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		pos := &next
		if len(next.Content) > 0 {
			pos = next.Content[0]
		}
		l.errorf(f.Name, pos, "", "a Sigma rule file holds one rule: rule collections (several YAML documents) are not supported")
	case !errors.Is(err, io.EOF):
		l.yamlError(f.Name, err)
	}
	rule, id, errs := sigma.Convert(root, sigma.Options{Event: reflect.TypeOf(cloudtrail.Event{}), FileName: f.Name})
	for _, e := range errs {
		l.errs = append(l.errs, &Error{Pos: Position{File: f.Name, Line: e.Line, Column: e.Column}, RuleID: id, Msg: e.Msg})
	}
	if rule != nil {
		l.pending = append(l.pending, pendingRule{f: f, n: rule})
	}
}
