// Package sigma reads Sigma rules (https://sigmahq.io, logsource product
// aws, service cloudtrail) as trailwatch rules. A Sigma rule is translated,
// once at load time, into the trailwatch rule it stands for: its detection
// and condition become one expression in trailwatch's rule language, which
// the rule loader then compiles and type-checks against the CloudTrail
// record exactly as it does a hand-written `when:`. There is one
// evaluation path: a Sigma rule is indexed, tested, excepted, deduplicated
// and reported like any other rule.
//
// Semantics follow the Sigma specification and pySigma, the reference
// implementation:
//
//   - A detection is a map (every field must match) or a list of maps (any
//     of them); a field's list of values matches when any value does (all,
//     with the `all` modifier).
//   - Plain strings compare case-insensitively, with `*` and `?` wildcards
//     and `\` escaping them; `re` is a case-sensitive RE2 search unless
//     `i` is added; `cased` compares case-sensitively.
//   - null matches an absent or null field; a value matches only a field
//     that is present, so `field: '*'` means "has a value".
//   - Conditions take and, or, not, parentheses, `1 of x*`, `any of x*`,
//     `all of x*` and `them` (which leaves out identifiers starting with
//     an underscore).
//
// CloudTrail-specific choices: eventName values without wildcards are
// compared exactly (CloudTrail writes API names in one case), so a rule
// that names its events is offered only those records by the rule index.
// Dotted field names walk the record: a typed field (userIdentity.arn) is
// compared directly; inside the free-form parts (requestParameters.x,
// responseElements.y) the path is followed into every element of a list on
// the way, and a map or list at its end matches when any value inside it
// does. An absent typed string field reads as "", which counts as absent.
//
// Anything trailwatch cannot evaluate faithfully — a modifier it does not
// implement, keyword (field-less) detections, aggregation pipes,
// correlation rules, an unknown CloudTrail field — is a load error naming
// the construct and its place.
package sigma
