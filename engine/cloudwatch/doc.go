// Package cloudwatch is trailwatch's CloudWatch Logs source: it reads the
// CloudTrail records that a trail delivers to one or more log groups, with
// FilterLogEvents over every stream of each group, and hands each record on
// once.
//
// # Windows, late records and what is guaranteed
//
// A CloudTrail log event's timestamp is the time of the API call; CloudWatch
// ingests it some minutes later (about five, with no upper bound).
// FilterLogEvents selects by timestamp, so a record can appear in a time
// range that was already read. Each log group therefore keeps a position P
// (milliseconds): every record stamped at or after P-lookback that was
// visible when P was reached has been handed on. Two kinds of query run:
//
//   - A sweep reads [P-lookback, now] and then moves P to now. Sweeps run
//     every SweepInterval (default lookback/10, 90 s for the default 15 m).
//     They carry the guarantee.
//   - A tail poll reads the last TailSpan (default 5 m, CloudTrail's usual
//     delay) every poll_interval and leaves P alone. It only makes records
//     arrive sooner; it re-reads a short span rather than the whole
//     lookback, which keeps the read cost (requests, pages, the 5
//     requests/s account limit) near one page per poll for ordinary trails.
//
// Guarantee: a record ingested no later than lookback after its timestamp is
// handed on, exactly once in normal operation. A record ingested later than
// that may be missed; when one is seen anyway (its ingestionTime minus
// timestamp exceeds the lookback) it is still handed on, counted in
// trailwatch_source_late_records_total and logged. Clock skew between this
// host and AWS eats into the lookback by the amount of the skew.
//
// Every record read is deduplicated against a window of the keys already
// handed on: the CloudTrail eventID, or CloudWatch's own event id for a log
// event without one. Only records stamped at or after P-lookback are kept,
// because no later query reads further back, so memory is bounded by the
// number of records in one lookback plus one sweep interval, not by uptime.
// A key seen again with the same CloudWatch event id is a re-read (counted
// in trailwatch_source_rereads_total); with a different one it is a second
// delivery of the same CloudTrail record (trailwatch_source_duplicates_total).
// Deduplication is per log group. Anyone allowed to write to the log group
// can forge eventIDs and so suppress records; the log group must be written
// by CloudTrail only.
//
// # Durability
//
// The position and the dedup window are saved in the state dir, one JSON
// file per log group, atomically (temp file, fsync, rename, fsync of the
// directory), after every batch handle accepted and after every sweep.
// Position only moves once handle returned nil for everything before it. A
// restart, or a crash at any point, resumes at the saved position: records
// written while trailwatch was down are read by the first sweep, in chunks
// of at most MaxChunk of timestamps so the window stays bounded. A batch
// whose handler succeeded but whose state save was lost is handed on again;
// the outbox downstream is idempotent per alert key, so this is safe, and
// nothing is ever lost for it.
//
// # First run
//
// With no saved state, `start` says where to begin: "now" and a time T (RFC
// 3339, or a negative duration such as -1h relative to now) skip records
// both stamped and ingested before T — a record stamped just before T but
// ingested after it is new and is handed on; "beginning" reads everything
// the group can hold (from 14 days before it was created, the furthest
// CloudWatch Logs accepts a backdated timestamp).
//
// # Rate limits and errors
//
// FilterLogEvents is limited to 5 requests/s per account and region: every
// request waits on one rate.Limiter that the caller shares between all
// sources of the account and region. The SDK's retryer is switched off for
// FilterLogEvents so that throttling reaches this package, which counts it
// and retries it, 5xx responses and network errors with jittered
// exponential backoff, for as long as needed, never ignoring cancellation.
// Any other error (a missing log group, refused credentials, a bad request)
// stops Read (and Run). Check reports missing log groups and bad credentials at
// start-up.
//
// Messages are passed through untouched, whatever they hold: the engine
// decides what is a CloudTrail record. StartLiveTail is not used: it samples
// under load.
package cloudwatch
