// Package s3sqs is trailwatch's source for CloudTrail logs delivered to S3:
// it reads the bucket's event notifications from an SQS queue and, for
// each new CloudTrail log file they announce, streams and decompresses
// the object and hands its records to the pipeline.
package s3sqs
