package config

import (
	"github.com/trailwatch/trailwatch/engine/cloudwatch"
	"github.com/trailwatch/trailwatch/engine/dynamostate"
	"github.com/trailwatch/trailwatch/engine/files"
	"github.com/trailwatch/trailwatch/engine/kinesis"
	"github.com/trailwatch/trailwatch/engine/lifecycle"
	"github.com/trailwatch/trailwatch/engine/outbox"
	"github.com/trailwatch/trailwatch/engine/s3sqs"
	"github.com/trailwatch/trailwatch/notifiers/email"
	"github.com/trailwatch/trailwatch/notifiers/pagerduty"
	"github.com/trailwatch/trailwatch/rules"
)

// keyDoc documents one configuration key for docs/configuration.md and
// schemas/config.schema.json, which are generated from the configuration
// structs and this table (go test ./internal/config -run TestConfigReference
// -update). The key's type comes from its Go type; what the table gives is
// for people.
type keyDoc struct {
	// Doc says what the key does, for an operator (one or two sentences,
	// Markdown).
	Doc string
	// Default is the value used when the key is absent: the code's own
	// constant where it has one, so the documentation follows the code.
	// Nil when there is none.
	Default any
	// DefaultText describes a default that is not one value ("the topic
	// ARN's region").
	DefaultText string
	// Example is a YAML value for the key, checked against its type.
	Example string
	// Required marks keys the block cannot do without.
	Required bool
	// Enum lists the accepted values, when they are a closed set.
	Enum []string
}

// reference documents every key a configuration accepts. A key the
// configuration structs accept and this table lacks fails
// TestConfigReference with the key to add.
//
// Keys are dotted paths: `routes[].notify` for a key of each list item,
// `notifiers[slack].channel` for a key of one notifier type.
var reference = map[string]keyDoc{
	// Top level.
	"source": {
		Doc:     "Where CloudTrail records come from, for `run`: exactly one source type. `validate`, `replay`, `test` and the Lambda function do without.",
		Example: "{cloudwatch: {log_groups: [aws-cloudtrail-logs-111122223333]}}",
	},
	"state_dir": {
		Doc:     "Directory of the service's durable state: the read position, the alert outbox (`outbox.db`), dedup and threshold state, silences. Required by `run`; `silence` and `outbox --config` use it.",
		Example: "/var/lib/trailwatch",
	},
	"rules": {
		Doc:         "Rule files, directories (walked for `*.yaml`/`*.yml`) and `builtin:NAME` packs (`builtin` for all of them), as `--rules` takes them; relative paths are relative to the configuration file.",
		DefaultText: "every built-in pack",
		Example:     "[builtin, team-rules/]",
	},
	"listen": {
		Doc:         "Address of the HTTP server for `/metrics`, `/healthz` and `/readyz`.",
		DefaultText: "none (no server)",
		Example:     "127.0.0.1:9090",
	},
	"quiet_after": {
		Doc:         "Raise `trailwatch-log-group-quiet` (severity high) when a log group delivers no record for this long, and `trailwatch-log-group-resumed` when records come back. `source.cloudwatch` only.",
		DefaultText: "0 (off)",
		Example:     "30m",
	},
	"lifecycle": {
		Doc:     "Defaults of the alert lifecycle: dedup window, memory bound, samples.",
		Example: "{dedup_window: 1h}",
	},
	"lists": {
		Doc:     "Replaces named lists that rule files define (a pack's tunables: `allowed_regions`, `trusted_accounts`, ...). Naming a list no rule file defines is an error.",
		Example: "{allowed_regions: [eu-west-1, us-east-1]}",
	},
	"rule_overrides": {
		Doc:     "Enable, disable or re-grade rules (built-in ones included) without copying them; applied in order, a later entry wins. An entry that matches no loaded rule is an error. `trailwatch rules list --config FILE` shows the result.",
		Example: "[{rules: [aws-instance-launched-outside-regions], enabled: true}]",
	},
	"notifiers": {
		Doc:     "The named alert destinations. Each has a `name`, a `type` and the type's own keys (below).",
		Example: "[{name: out, type: file, path: alerts.jsonl}]",
	},
	"routes": {
		Doc:         "Which alerts go to which notifiers. Routes are tried in order and the first match wins, unless it says `continue: true`; a rule's own `notify:` adds to the route's choice. `run` warns when an alert matches no route.",
		DefaultText: "none: every notifier gets every alert",
		Example:     "[{min_severity: high, notify: [page]}]",
	},
	"shared_state": {
		Doc:     "Share deliveries, dedup windows, threshold groups and silences between processes in one DynamoDB table (several `run` instances on one Kinesis stream or one SQS queue). See docs/scale-out.md.",
		Example: "{dynamodb_table: trailwatch-state}",
	},
	"reload": {
		Doc:     "How `run` reloads rules, lists and routes besides SIGHUP.",
		Example: "{watch: true}",
	},
	"outbox": {
		Doc:     "How `run` delivers from its durable outbox.",
		Example: "{send_timeout: 20s}",
	},

	// source.cloudwatch
	"source.cloudwatch": {
		Doc:     "Poll CloudTrail's CloudWatch Logs log groups with FilterLogEvents (5 requests/s per account and region, shared by every group).",
		Example: "{log_groups: [aws-cloudtrail-logs-111122223333], region: eu-west-1}",
	},
	"source.cloudwatch.log_groups": {
		Doc:      "Log groups to read, by name or ARN; each is read whole (every stream).",
		Example:  "[aws-cloudtrail-logs-111122223333]",
		Required: true,
	},
	"source.cloudwatch.region": {
		Doc:         "AWS region of the log groups.",
		DefaultText: "the SDK's chain (AWS_REGION, shared config)",
		Example:     "eu-west-1",
	},
	"source.cloudwatch.poll_interval": {
		Doc:     "How often the recent tail of each log group is read.",
		Default: cloudwatch.DefaultPollInterval,
		Example: "10s",
	},
	"source.cloudwatch.lookback": {
		Doc:     "How late after its eventTime a record may be ingested and still be read; a sweep every lookback/10 re-reads this window. CloudTrail delivers within about 5 minutes on average.",
		Default: cloudwatch.DefaultLookback,
		Example: "20m",
	},
	"source.cloudwatch.start": {
		Doc:     "Where the first run begins when `state_dir` holds no position for a log group: `now`, `beginning`, an RFC 3339 time, or a negative duration such as `-1h`.",
		Default: cloudwatch.DefaultStart,
		Example: "-1h",
	},

	// source.files
	"source.files": {
		Doc:     "Read CloudTrail's log files from local directories (a sync of the trail's bucket, a shipper's spool directory) as `replay` reads them: JSON Lines, `{\"Records\": [...]}` files, gzipped or not, in lexical order (time order in the `AWSLogs/…` layout). Each file is read once; how far is kept in `state_dir/files`, and a file that grows is read on from the record after the last one handled. A file must be whole when it appears under its name (write it elsewhere, or under a hidden name, and rename it).",
		Example: "{paths: [/var/lib/cloudtrail/AWSLogs]}",
	},
	"source.files.paths": {
		Doc:      "Files and directories to read, relative to the configuration file. In a directory, event files (`*.json`, `*.jsonl`, `*.ndjson`, with or without `.gz`) are read, hidden files and directories are not.",
		Example:  "[/var/lib/cloudtrail/AWSLogs]",
		Required: true,
	},
	"source.files.poll_interval": {
		Doc:     "How often the paths are listed again for new files and files that grew (at least 100ms).",
		Default: files.DefaultPollInterval,
		Example: "30s",
	},
	"source.files.batch_records": {
		Doc:     "How many records go to the pipeline in one batch (one outbox transaction and one saved position), 1 to 100000.",
		Default: files.DefaultBatchRecords,
		Example: "500",
	},
	"source.files.start": {
		Doc:     "What the first run (no position in `state_dir`) reads: `beginning`, every file present and every later one; `now`, only the files that appear or grow after it started.",
		Default: files.DefaultStart,
		Enum:    []string{"beginning", "now"},
		Example: "now",
	},

	// source.kinesis
	"source.kinesis": {
		Doc:     "Read a Kinesis data stream that a CloudWatch Logs subscription filter feeds, sharing its shards with every instance that uses the same lease table.",
		Example: "{stream: trailwatch-cloudtrail, lease_table: trailwatch-leases}",
	},
	"source.kinesis.stream": {
		Doc:      "The Kinesis data stream, by name or ARN.",
		Example:  "trailwatch-cloudtrail",
		Required: true,
	},
	"source.kinesis.region": {
		Doc:         "AWS region of the stream and the lease table.",
		DefaultText: "the SDK's chain",
		Example:     "eu-west-1",
	},
	"source.kinesis.lease_table": {
		Doc:      "DynamoDB table of shard leases and checkpoints (partition key `shard_id`, a string), shared by every instance; not the `shared_state` table.",
		Example:  "trailwatch-leases",
		Required: true,
	},
	"source.kinesis.start": {
		Doc:     "Where a shard without a checkpoint is first read: `latest` or `trim_horizon`. Shards created by resharding are always read from their start.",
		Default: kinesis.DefaultStart,
		Example: "trim_horizon",
		Enum:    []string{"latest", "trim_horizon"},
	},
	"source.kinesis.poll_interval": {
		Doc:     "How long a shard's reader waits after a read that found nothing new (Kinesis allows 5 reads/s per shard, shared by every consumer).",
		Default: kinesis.DefaultPollInterval,
		Example: "2s",
	},
	"source.kinesis.lease_duration": {
		Doc:     "How long a lease holds without renewal: how soon the shards of a dead instance are taken over (at least 3s). Leases are renewed every third of it.",
		Default: kinesis.DefaultLeaseDuration,
		Example: "1m",
	},
	"source.kinesis.max_records": {
		Doc:     "Records per GetRecords call, 1 to 10000.",
		Default: kinesis.DefaultMaxRecords,
		Example: "500",
	},
	"source.kinesis.worker_id": {
		Doc:         "This instance's name in the lease table; two running instances must never share one.",
		DefaultText: "the host name and a random suffix",
		Example:     "trailwatch-a",
	},

	// source.s3sqs
	"source.s3sqs": {
		Doc:     "Read CloudTrail's log files from its S3 bucket as the bucket's event notifications announce them on an SQS queue (S3, SNS or EventBridge to SQS, or the trail's own SNS notification), sharing the queue with every instance that reads it. Only keys under `AWSLogs/…/CloudTrail/<region>/` named `*.json` or `*.json.gz` are read; digests, Insights files and other keys are deleted unread. See examples/deploy/s3sqs.",
		Example: "{queue: https://sqs.us-east-1.amazonaws.com/111122223333/trailwatch-s3sqs}",
	},
	"source.s3sqs.queue": {
		Doc:      "The SQS queue the notifications go to, by URL or ARN. It must have a redrive policy: the notifications of log files that cannot be read are moved to its dead-letter queue, with the reason in the `trailwatch-error` message attribute.",
		Example:  "https://sqs.us-east-1.amazonaws.com/111122223333/trailwatch-s3sqs",
		Required: true,
	},
	"source.s3sqs.region": {
		Doc:         "AWS region of the queue. Buckets are read in their own regions whatever this says.",
		DefaultText: "the queue URL's or ARN's, else the SDK's chain",
		Example:     "eu-west-1",
	},
	"source.s3sqs.visibility_timeout": {
		Doc:     "How long a received notification stays hidden from the other instances (3s to 12h, whole seconds); it is extended by as much every third of it while its log file is read, so the work of an instance that died is read again within one timeout.",
		Default: s3sqs.DefaultVisibilityTimeout,
		Example: "10m",
	},
	"source.s3sqs.wait_time": {
		Doc:     "How long one ReceiveMessage call waits for a notification (SQS long polling, 0s to 20s, whole seconds).",
		Default: s3sqs.DefaultWaitTime,
		Example: "10s",
	},
	"source.s3sqs.workers": {
		Doc:     "How many log files are read at once, 1 to 100.",
		Default: s3sqs.DefaultWorkers,
		Example: "8",
	},
	"source.s3sqs.batch_records": {
		Doc:     "How many records of a log file go to the pipeline in one batch (one outbox transaction), 1 to 100000; a larger file comes in several, and its notification is deleted after the last.",
		Default: s3sqs.DefaultBatchRecords,
		Example: "500",
	},

	// shared_state
	"shared_state.dynamodb_table": {
		Doc:      "The DynamoDB table (partition key `pk`, a string; Time to Live on `expires_at`).",
		Example:  "trailwatch-state",
		Required: true,
	},
	"shared_state.region": {
		Doc:         "AWS region of the table.",
		DefaultText: "the source's region (source.kinesis, source.s3sqs) if set, else the SDK's chain",
		Example:     "eu-west-1",
	},
	"shared_state.lease": {
		Doc:     "How long a claimed delivery holds before another process may retake it. It must exceed `outbox.send_timeout` by at least 10s (refused otherwise), so that a claim outlasts its send. Not `source.kinesis.lease_duration`, which is about shards; see docs/scale-out.md.",
		Default: dynamostate.DefaultLease,
		Example: "90s",
	},
	"shared_state.ttl": {
		Doc:     "How long delivery records are kept.",
		Default: dynamostate.DefaultTTL,
		Example: "72h",
	},

	// outbox
	"outbox.send_timeout": {
		Doc:     "Bounds one notification attempt; a notifier that takes longer is tried again later. With `shared_state`, `shared_state.lease` must exceed it by at least 10s.",
		Default: outbox.DefaultAttemptTimeout,
		Example: "20s",
	},

	// reload
	"reload.watch": {
		Doc:     "Also reload when the configuration file or a file under its rule paths changes (as `run --watch`).",
		Default: false,
		Example: "true",
	},
	"reload.debounce": {
		Doc:     "How long the watched files must stay quiet after a change before the reload (so an editor's several writes or a `git pull` make one reload).",
		Default: DefaultReloadDebounce,
		Example: "250ms",
	},

	// lifecycle
	"lifecycle.dedup_window": {
		Doc:         "Dedup window for rules without a `dedup:` block: repeats of an alert within it update a counter, and the next notification says how many were folded.",
		DefaultText: "0 (each match is its own alert)",
		Example:     "1h",
	},
	"lifecycle.max_keys": {
		Doc:     "At most this many dedup keys and threshold groups are held; the least recently used is evicted past it (`trailwatch_lifecycle_evictions_total`).",
		Default: lifecycle.DefaultMaxKeys,
		Example: "50000",
	},
	"lifecycle.samples": {
		Doc:     "How many events a threshold or digest alert carries as samples.",
		Default: lifecycle.DefaultSamples,
		Example: "3",
	},

	// routes
	"routes[].severity": {
		Doc:     "Matches alerts of these severities.",
		Example: "[high, critical]",
	},
	"routes[].min_severity": {
		Doc:     "Matches alerts of this severity and above.",
		Example: "high",
		Enum:    rules.Severities,
	},
	"routes[].tags": {
		Doc:     "Matches alerts whose rule has any of these tags (`*` wildcards).",
		Example: `["attack:*"]`,
	},
	"routes[].rules": {
		Doc:     "Matches alerts of these rule ids (`*` wildcards).",
		Example: `["cis-*"]`,
	},
	"routes[].notify": {
		Doc:      "Notifiers the matching alerts go to, by name.",
		Example:  "[secfeed, mail]",
		Required: true,
	},
	"routes[].continue": {
		Doc:     "Go on trying the routes below after this one matched.",
		Default: false,
		Example: "true",
	},

	// rule_overrides
	"rule_overrides[].rules": {
		Doc:      "Rule ids to change; `*` and `?` are wildcards.",
		Example:  `[cis-cloudwatch-2-no-log-delivery, "aws-key-pair-*"]`,
		Required: true,
	},
	"rule_overrides[].enabled": {
		Doc:         "Enable (`true`) or disable (`false`) the rules.",
		DefaultText: "unchanged",
		Example:     "true",
	},
	"rule_overrides[].severity": {
		Doc:         "Replace the rules' severity.",
		DefaultText: "unchanged",
		Example:     "critical",
		Enum:        rules.Severities,
	},

	// notifiers: every type
	"notifiers[].name": {
		Doc:      "The notifier's name, which routes and rules' `notify:` use; unique.",
		Example:  "secfeed",
		Required: true,
	},
	"notifiers[].type": {
		Doc:      "The kind of notifier; its own keys are below.",
		Example:  "slack",
		Required: true,
	},
	"notifiers[].rate_limit": {
		Doc:         "Storm control: at most `max` alerts per `per` go out one by one; the others are folded into a digest sent every `digest_every` (never dropped).",
		DefaultText: "none (no limit)",
		Example:     "{max: 30, per: 1m, digest_every: 5m}",
	},
	"notifiers[].rate_limit.max": {
		Doc:      "Alerts sent one by one per `per`, at least 1.",
		Example:  "30",
		Required: true,
	},
	"notifiers[].rate_limit.per": {
		Doc:      "The window of `max`, in event time.",
		Example:  "1m",
		Required: true,
	},
	"notifiers[].rate_limit.digest_every": {
		Doc:         "How often the digest of folded alerts is sent.",
		DefaultText: "`per`",
		Example:     "5m",
	},

	// notifiers: slack
	"notifiers[slack].webhook_url": {
		Doc:     "Incoming webhook URL (a secret: write `${ENV}` or use `webhook_url_file`). Give one of `webhook_url`, `webhook_url_file`, `token`, `token_file`.",
		Example: "${SLACK_WEBHOOK_URL}",
	},
	"notifiers[slack].webhook_url_file": {
		Doc:     "File whose content is the webhook URL.",
		Example: "/run/secrets/slack-webhook",
	},
	"notifiers[slack].token": {
		Doc:     "Bot token (`xoxb-...`, scope `chat:write`) for chat.postMessage; a secret. Needs `channel`.",
		Example: "${SLACK_BOT_TOKEN}",
	},
	"notifiers[slack].token_file": {
		Doc:     "File whose content is the bot token.",
		Example: "/run/secrets/slack-token",
	},
	"notifiers[slack].channel": {
		Doc:     "Channel ID or name the bot posts to (with `token` only: a webhook posts to its own channel).",
		Example: "C0123456789",
	},

	// notifiers: email
	"notifiers[email].transport": {
		Doc:     "`smtp` (a relay) or `ses` (Amazon SES, through the SDK's credentials).",
		Default: email.TransportSMTP,
		Example: "ses",
		Enum:    []string{email.TransportSMTP, email.TransportSES},
	},
	"notifiers[email].smtp_host": {
		Doc:     "SMTP relay host (transport smtp; required there).",
		Example: "smtp.example.com",
	},
	"notifiers[email].smtp_port": {
		Doc:         "SMTP relay port.",
		DefaultText: "587 for starttls, 465 for tls, 25 for none",
		Example:     "587",
	},
	"notifiers[email].tls": {
		Doc:     "`starttls`, `tls` (implicit TLS) or `none`.",
		Default: email.TLSStartTLS,
		Example: "tls",
		Enum:    []string{email.TLSStartTLS, email.TLSImplicit, email.TLSNone},
	},
	"notifiers[email].tls_ca_file": {
		Doc:         "PEM bundle that replaces the system roots for the relay's certificate (private relays).",
		DefaultText: "the system roots",
		Example:     "/etc/ssl/private-ca.pem",
	},
	"notifiers[email].tls_insecure_skip_verify": {
		Doc:     "Turn certificate verification off. For tests only.",
		Default: false,
		Example: "false",
	},
	"notifiers[email].username": {
		Doc:     "SMTP AUTH user; with `password` or `password_file`.",
		Example: "trailwatch",
	},
	"notifiers[email].password": {
		Doc:     "SMTP AUTH password; a secret: write `${ENV}`.",
		Example: "${SMTP_PASSWORD}",
	},
	"notifiers[email].password_file": {
		Doc:     "File whose content is the SMTP password.",
		Example: "/run/secrets/smtp-password",
	},
	"notifiers[email].auth_mechanism": {
		Doc:     "SMTP AUTH mechanism.",
		Default: "plain",
		Example: "login",
		Enum:    []string{"plain", "login", "cram-md5"},
	},
	"notifiers[email].from": {
		Doc:      "Sender address (with SES, a verified identity).",
		Example:  `"trailwatch <trailwatch@example.com>"`,
		Required: true,
	},
	"notifiers[email].to": {
		Doc:      "Recipients.",
		Example:  "[secops@example.com]",
		Required: true,
	},
	"notifiers[email].region": {
		Doc:         "SES region (transport ses).",
		DefaultText: "the SDK's chain",
		Example:     "eu-west-1",
	},
	"notifiers[email].ses_configuration_set": {
		Doc:     "SES configuration set to send with (transport ses).",
		Example: "trailwatch",
	},
	"notifiers[email].ses_raw": {
		Doc:     "Send the same MIME message as SMTP (Message-ID, threading headers) as SES raw content (transport ses).",
		Default: false,
		Example: "true",
	},
	"notifiers[email].timeout": {
		Doc:     "Bound on one delivery attempt.",
		Default: email.DefaultTimeout,
		Example: "1m",
	},

	// notifiers: sns
	"notifiers[sns].topic_arn": {
		Doc:      "Topic to publish to (a `.fifo` topic too).",
		Example:  "arn:aws:sns:eu-west-1:111122223333:trailwatch-alerts",
		Required: true,
	},
	"notifiers[sns].region": {
		Doc:         "Must agree with the topic ARN's region.",
		DefaultText: "the topic ARN's region",
		Example:     "eu-west-1",
	},

	// notifiers: pagerduty
	"notifiers[pagerduty].routing_key": {
		Doc:     "Events API v2 integration key; a secret: write `${ENV}` or use `routing_key_file`. Give one of the two.",
		Example: "${PAGERDUTY_ROUTING_KEY}",
	},
	"notifiers[pagerduty].routing_key_file": {
		Doc:     "File whose content is the routing key.",
		Example: "/run/secrets/pagerduty-routing-key",
	},
	"notifiers[pagerduty].url": {
		Doc:     "Events API endpoint (the EU service region, or a test server).",
		Default: pagerduty.DefaultURL,
		Example: "https://events.eu.pagerduty.com/v2/enqueue",
	},

	// notifiers: webhook
	"notifiers[webhook].url": {
		Doc:     "URL that receives a JSON POST of the alert's public form (https; often a secret: write `${ENV}` or use `url_file`). Give one of `url` and `url_file`.",
		Example: "${ALERT_WEBHOOK_URL}",
	},
	"notifiers[webhook].url_file": {
		Doc:     "File whose content is the URL.",
		Example: "/run/secrets/webhook-url",
	},
	"notifiers[webhook].headers": {
		Doc:     "Headers added to every request; values may be secrets (`${ENV}`) and are never logged.",
		Example: `{Authorization: "Bearer ${WEBHOOK_TOKEN}"}`,
	},

	// notifiers: file
	"notifiers[file].path": {
		Doc:      "File the alerts are appended to as JSON Lines (created with mode 0600), or `-` for standard output.",
		Example:  "alerts.jsonl",
		Required: true,
	},
	"notifiers[file].fsync": {
		Doc:     "Flush every alert to stable storage before it counts as delivered.",
		Default: false,
		Example: "true",
	},
}
