// Package s3files reads recorded CloudTrail events straight from S3, for
// trailwatch replay and search: s3://bucket/prefix is read like a local
// directory (every event file under it, in key order, which is the order
// of a local copy of the tree) and s3://bucket/key like a local file.
//
// Listing follows CloudTrail's layout (engine/awslogs). Without a time
// range the prefix is listed page by page, a thousand keys a call. With
// one, each folder is listed on its own so that folders whose delivery
// days cannot hold the range are never listed, and under a
// CloudTrail/<region>/ folder only the day folders the range needs are
// listed, one call each, without listing years and months first.
//
// Reading fetches several objects ahead of the one being read (each
// object's first megabytes are held in memory, the rest streams when its
// turn comes) and hands each, in order, to engine/files' one reader of
// record documents, so a record read from S3 is exactly the record read
// from a local copy. A connection that fails mid-object is resumed from
// where it stopped (a ranged GET on the same ETag); an object that cannot
// be read is reported and skipped, like a corrupt local file.
package s3files
