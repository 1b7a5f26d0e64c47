package yamlerr

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestLocate(t *testing.T) {
	tests := []struct {
		name      string
		doc       string
		line, col int
		want      string
	}{
		{"key indented one space too far", "source:\n  cloudwatch:\n    log_groups: [a]\n     region: x\nstate_dir: /x\n", 4, 6, "check the indentation"},
		{"key indented less than its siblings", "source:\n  cloudwatch:\n    log_groups: [a]\n   region: x\nstate_dir: /x\n", 4, 4, "check the indentation"},
		{"list item key out of line", "notifiers:\n  - name: a\n    type: file\n   path: x\n", 4, 4, "check the indentation"},
		{"key indented further than the one above", "notifiers:\n  - name: out\n    type: file\n      path: out.jsonl\n", 4, 7, "check the indentation"},
		{"nested key indented further than its sibling", "a:\n  b:\n    c: 1\n      d: 2\n", 4, 7, "check the indentation"},
		{"unclosed flow list", "a: [b\nc: d\n", 2, 1, "']'"},
		{"tab indentation", "a:\n\tb: c\n", 2, 1, "not tabs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n yaml.Node
			err := yaml.Unmarshal([]byte(tt.doc), &n)
			if err == nil {
				t.Fatal("yaml.v3 accepted the document")
			}
			line, col, msg := Locate([]byte(tt.doc), err)
			if line != tt.line || col != tt.col || !strings.Contains(msg, tt.want) {
				t.Errorf("Locate = %d:%d %q, want %d:%d and a message containing %q (yaml.v3 said %v)", line, col, msg, tt.line, tt.col, tt.want, err)
			}
		})
	}
}
