package rules

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// FuzzDecodeEvent feeds arbitrary bytes to the record decoder and every
// built-in rule: nothing may panic, and a decoded event must evaluate.
func FuzzDecodeEvent(f *testing.F) {
	for _, s := range []string{
		`{"eventVersion":"1.08","eventID":"1","eventName":"ConsoleLogin","userIdentity":{"type":"Root"},"responseElements":{"ConsoleLogin":"Success"}}`,
		`{"eventVersion":"1.08","readOnly":"True","requestParameters":"{\"a\":1}"}`,
		`{"eventVersion":"1.08","resources":{"ARN":"x"},"userIdentity":null,"eventTime":"bad"}`,
		`{"eventVersion":1,"eventID":2,"errorCode":[1,2]}`,
		`{"Records":[]}`,
	} {
		f.Add([]byte(s))
	}
	set, err := Load("builtin")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := cloudtrail.DecodeEvent(data)
		if err != nil {
			return
		}
		set.Match(ev, nil, nil)
		for _, r := range set.Rules() {
			r.Summary(ev)
		}
	})
}

// FuzzLoadRules feeds arbitrary rule files to the loader: it must return
// rules or an ErrorList, never panic.
func FuzzLoadRules(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.yaml")
	builtin, _ := filepath.Glob("builtin/*/*.y*ml")
	sigmaRules, _ := filepath.Glob("testdata/sigma/*.yml")
	for _, p := range append(append(seeds, builtin...), sigmaRules...) {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("rules:\n  - {id: a, title: t, severity: low, when: 'eventName == \"A\"', summary: '{{ eventName }}'}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := LoadFiles([]File{{Name: "fuzz.yaml", Data: data, ReadRelative: func(string) ([]byte, error) { return nil, os.ErrNotExist }}})
		if err == nil {
			set.RunTests()
		}
	})
}
