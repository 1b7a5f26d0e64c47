// Package schemas holds the JSON Schemas of trailwatch's files, for
// editors (completion, hover documentation, checking as you type) and
// for tools: config.schema.json for the configuration file, generated
// from the configuration structs (go test ./internal/config -run
// TestConfigReference -update), and rules.schema.json for rule files,
// checked against the rule loader's keys. docs/configuration.md says how
// to use them with VS Code's YAML extension.
package schemas

import _ "embed"

// Config is the JSON Schema (draft-07) of a configuration file.
//
//go:embed config.schema.json
var Config []byte

// Rules is the JSON Schema (draft-07) of a rule file.
//
//go:embed rules.schema.json
var Rules []byte
