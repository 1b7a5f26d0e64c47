//go:build goexperiment.jsonv2

package decodebench

import (
	jsonv2 "encoding/json/v2"

	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// With GOEXPERIMENT=jsonv2 (Go 1.26: an experiment, off by default) the
// standard library's own encoding/json/v2 is measured too, and
// encoding/json itself runs on it.
func init() {
	candidates = append(candidates, candidate{"stdlib-json-v2", withFallback(func(data []byte, ev *cloudtrail.Event) error {
		return jsonv2.Unmarshal(data, ev, jsonv2.MatchCaseInsensitiveNames(true))
	}), true})
}
