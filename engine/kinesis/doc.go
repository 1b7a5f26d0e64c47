// Package kinesis is trailwatch's Kinesis source: it reads a Kinesis data
// stream that a CloudWatch Logs subscription filter feeds with CloudTrail
// records, and shares the stream's shards among any number of `trailwatch
// run` instances through leases in a DynamoDB table, the way the Kinesis
// Client Library does.
//
// # Leases
//
// The lease table holds one item per shard: shard_id, owner (a worker id),
// lease_counter, expires_at (Unix milliseconds), checkpoint (the sequence
// number of the last record handled, or TRIM_HORIZON, AT_TIMESTAMP:<ms>,
// SHARD_END) and parent_shards. Every refresh (a third of the lease duration) a
// worker renews the leases it holds, creates the leases of shards it sees
// for the first time, and takes free or expired leases up to its fair
// share of the unfinished shards among the live workers; when none is
// free and another worker holds more than its share, it takes one of
// that worker's leases. Every write is conditional on lease_counter (and,
// for renewals and checkpoints, on the owner), so of two workers racing
// for a lease exactly one wins, and a worker that lost a lease finds out
// on its next write.
//
// A child shard (after a split or a merge) is not read before every
// parent that is still in the lease table has been read to its end
// (checkpoint SHARD_END), so records of one key stay in order.
//
// # Checkpoints and what is guaranteed
//
// A shard is read with GetRecords from AFTER_SEQUENCE_NUMBER of its
// checkpoint. Its checkpoint moves past a read only after the handler
// returned nil for every batch of it, and only while the worker still owns
// the lease. A worker that dies mid-batch leaves the checkpoint where it
// was; the next owner reads that batch again once the lease expires: each
// record is handled at least once. The alerts of a batch read twice by two
// processes are kept from reaching a notifier twice by the shared
// delivery ledger (engine/dynamostate), not by this package.
//
// A shard with no checkpoint starts at the configured start:
// trim_horizon, or latest, which is stored as a fixed time (a minute
// before the lease was created, for clock skew) rather than as LATEST, so
// that a reader dying before its first checkpoint does not make the next
// one skip what arrived in between. Children of a reshard always start at
// TRIM_HORIZON.
//
// Leases of shards that aged out of the stream stay in the table (a few
// bytes each); delete them by hand after a reshard if they bother you.
package kinesis
