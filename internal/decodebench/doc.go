// Package decodebench measures, in one benchmark binary, the JSON decoders
// that trailwatch could decode CloudTrail records with: encoding/json (what
// the whole decode uses), github.com/goccy/go-json, github.com/bytedance/sonic,
// encoding/json/v2 (as github.com/go-json-experiment/json, the same code,
// which builds without GOEXPERIMENT; and the standard library's own when
// built with GOEXPERIMENT=jsonv2), and the lazy decoding trailwatch adopted
// (cloudtrail.DecodeHeader, then only the fields the matched rules read).
//
// It is a module of its own so that the candidates it measures are not
// dependencies of trailwatch. Run from this directory:
//
//	go test -run '^$' -bench . -benchmem -cpu 1 -count 5 .
//	go test -run TestCandidatesAgree -v .
//
// See docs/performance.md for the figures and the choice.
package decodebench
