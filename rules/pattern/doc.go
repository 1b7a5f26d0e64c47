// Package pattern parses, evaluates and renders CloudWatch Logs JSON filter
// patterns, the `{ $.eventName = ConsoleLogin && ... }` language of metric
// filters, subscription filters and FilterLogEvents, so that a trailwatch rule
// can be written as a pattern and fire on exactly the CloudTrail records the
// same pattern would count in CloudWatch (the CIS AWS Foundations monitoring
// controls are published as such patterns).
//
// The syntax and semantics follow the AWS CloudWatch Logs User Guide, "Filter
// pattern syntax for metric filters, subscription filters, filter log events,
// and Live Tail", section "Using filter patterns to match terms in JSON log
// events" (current text; the archived awsdocs/amazon-cloudwatch-logs-user-guide
// doc_source/FilterAndPatternSyntax.md adds the "JSON Special Considerations"
// and the wildcard examples quoted below). Only JSON patterns are supported;
// unstructured and space-delimited patterns are rejected.
//
// # Syntax
//
//	pattern    = "{" or "}"
//	or         = and { "||" and }
//	and        = primary { "&&" primary }          // && binds tighter than ||
//	primary    = "(" or ")" | condition
//	condition  = selector ( op value | "IS" ("NULL"|"TRUE"|"FALSE") | "NOT" "EXISTS" )
//	op         = "=" | "!=" | "<" | ">" | "<=" | ">="
//	selector   = "$" step { step | "[" digits "]" | "[*]" | "['key']" }
//	step       = "." ( name | "*" | "['key']" )
//
// A property name is ASCII letters, digits, '-' and '_'; other keys use the
// bracket notation `$.['cluster.name']`. `[*]` selects any array element and
// `.*` any object field; AWS allows one wildcard per selector and three per
// pattern, and so does Parse. Keywords are case-insensitive. `EXISTS` and
// `IS NOT` are rejected because the AWS guide says they "currently aren't
// supported"; use `NOT EXISTS`, or `= *` to require a value.
//
// A value is a double-quoted string (`\"` and `\\` are its only escapes), a
// bare word (letters, digits and `_ - . * : / + @`), a number (optional sign,
// decimal, optional exponent) or a regular expression between percent signs,
// `%...%`, restricted to the characters the guide lists (at most two per
// pattern; unanchored, RE2 syntax). The relational operators need a number.
//
// # Semantics
//
//   - A comparison applies only when its selector reaches a value node, a
//     string or a number. An absent field, null, a boolean, an object or an
//     array makes every comparison false, `!=` included. The guide says so for
//     arrays and objects ("both {$.users = 1} and {$.users != 1} will fail to
//     match"), and `aws logs test-metric-filter` shows the same for an absent
//     field (DataBiosphere/azul issue 5884: `$.userIdentity.invokedBy !=
//     "cloudfront.amazonaws.com"` does not match a record without invokedBy;
//     azul PR 8228 adds an explicit `NOT EXISTS` alternative for that reason).
//     So CIS CloudWatch.3's `$.additionalEventData.MFAUsed != "Yes"` does not
//     fire on a ConsoleLogin record that has no MFAUsed field.
//   - String values compare with the record's string, or with a number's JSON
//     text. A `*` at the start and/or end of a string value is a wildcard
//     (suffix, prefix, or substring match); an interior `*` is literal, as the
//     guide states ("Ev*ent will only match the actual string Ev*ent"), and
//     `*` alone matches any value node.
//   - A number with `=` or `!=` compares numerically with a JSON number and
//     textually with a JSON string: `$.recipientAccountId = 123456789012`
//     matches the string "123456789012" (the guide's own example) but not
//     "0123456789012". `<`, `>`, `<=`, `>=` compare numerically, reading a
//     JSON string as a number when it is one.
//   - `IS TRUE` and `IS FALSE` match JSON booleans only, and `= true` is a
//     string comparison that never matches a boolean (the guide offers only
//     IS for booleans). `IS NULL` matches an explicit null; `NOT EXISTS`
//     matches when the selector reaches nothing at all (a null is present).
//   - With a wildcard selector a condition holds when it holds for any one of
//     the selected values; `NOT EXISTS` holds when nothing is selected.
//
// Records are the maps produced by encoding/json, with or without
// Decoder.UseNumber; Go integer types are accepted too for hand-built records.
// A number's "JSON text" is its json.Number text as written in the record, or
// for a float64 its shortest decimal form (so 1e3 reads as "1000"); decode
// with UseNumber to compare numbers exactly as CloudTrail wrote them.
//
// Matching allocates nothing, and a long || of exact equalities on one
// selector (CIS CloudWatch.4 has sixteen) is evaluated as one set lookup.
package pattern
