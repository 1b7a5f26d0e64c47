// Package search answers the questions of CloudTrail's Event History over
// trailwatch's sources: which records carry an access key, an event name, an
// event source, an event id, a user, a resource type or a resource name,
// whether they were read-only, and (beyond Event History) any condition in
// the rule expression language, within a time range.
//
// A Query holds the constraints. Query.Match is the exact, local check and
// always has the last word. Query.FilterPattern renders the constraints as a
// CloudWatch Logs JSON filter pattern so that FilterLogEvents sends only
// candidate records; the pattern is a necessary condition, never a
// sufficient one, because a server may filter loosely or not at all (moto
// ignores filter patterns), so every record it returns is checked again.
//
// A Searcher reads records from local files and CloudTrail S3-layout trees
// (through engine/files, pruning directories and files whose names put them
// outside the time range before they are opened) or from CloudWatch Logs log
// groups, deduplicates matches by eventID and keeps them newest first, as
// Event History lists them, bounded by a limit. Render prints the results as
// a table sized to the terminal, as JSON or JSON Lines, or as Event
// History's detail pane.
//
// # Resource types
//
// Event History's resource type comes from the record's resources list.
// Many management events carry none, so a record also has the resource
// types that ResourceMappings assigns to its eventSource and eventName, with
// names read from the request parameters and response elements. A record
// matches a resource type or name from either place.
package search
