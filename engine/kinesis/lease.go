package kinesis

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Attribute names of a lease item.
const (
	// AttrShardID is the lease table's partition key (a string).
	AttrShardID = "shard_id"

	attrOwner      = "owner"
	attrCounter    = "lease_counter"
	attrExpires    = "expires_at" // Unix milliseconds; not a DynamoDB TTL
	attrCheckpoint = "checkpoint"
	attrParents    = "parent_shards"
	attrUpdated    = "updated_at"
)

// Special checkpoints. Any other checkpoint is the sequence number of the
// last record handled.
const (
	// CheckpointTrimHorizon means nothing of the shard was handled yet and
	// reading starts at its oldest record.
	CheckpointTrimHorizon = "TRIM_HORIZON"
	// CheckpointLatest means nothing of the shard was handled yet and
	// reading starts at its newest record.
	CheckpointLatest = "LATEST"
	// CheckpointShardEnd means the shard is closed and every record of it
	// was handled: its children may be read.
	CheckpointShardEnd = "SHARD_END"

	// checkpointAtPrefix starts a checkpoint meaning nothing of the shard
	// was handled yet and reading starts at the records that arrived at
	// or after a time: "AT_TIMESTAMP:<Unix milliseconds>".
	checkpointAtPrefix = "AT_TIMESTAMP:"
)

// AtTimestamp returns the checkpoint of a shard nothing of which was
// handled yet, to be read from the records that arrived at or after t.
func AtTimestamp(t time.Time) string {
	return checkpointAtPrefix + strconv.FormatInt(t.UnixMilli(), 10)
}

// atTimestamp reports the time of an AtTimestamp checkpoint.
func atTimestamp(cp string) (time.Time, bool) {
	ms, ok := strings.CutPrefix(cp, checkpointAtPrefix)
	if !ok {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(n), true
}

// ErrLeaseLost is returned when a conditional write on a lease fails
// because another worker took it (or it changed since it was read).
var ErrLeaseLost = errors.New("shard lease lost to another worker")

// DynamoDB is the part of the DynamoDB client the lease table uses.
type DynamoDB interface {
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	Scan(ctx context.Context, in *dynamodb.ScanInput, opts ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
}

// Lease is one shard's item in the lease table.
type Lease struct {
	// ShardID names the shard.
	ShardID string
	// Owner is the worker holding the lease; empty when free.
	Owner string
	// Counter goes up on every write by the owner (take, renew,
	// checkpoint, release): a conditional write on it fails when anyone
	// else wrote in between.
	Counter int64
	// ExpiresAt is when the lease runs out unless renewed.
	ExpiresAt time.Time
	// Checkpoint is the sequence number of the last record handled, one
	// of the Checkpoint constants, or an AtTimestamp.
	Checkpoint string
	// Parents are the shards this one was split or merged from.
	Parents []string
}

// Expired reports whether the lease is free or has run out at now.
func (l Lease) Expired(now time.Time) bool {
	return l.Owner == "" || !now.Before(l.ExpiresAt)
}

// Finished reports whether every record of the shard was handled.
func (l Lease) Finished() bool { return l.Checkpoint == CheckpointShardEnd }

// Leases is the lease table of one stream's consumers: each worker takes
// free or expired shard leases with conditional writes, renews them, and
// checkpoints under them. It is safe for concurrent use, but writes on one
// lease must not race each other (the counter condition would fail one).
type Leases struct {
	api      DynamoDB
	table    string
	worker   string
	duration time.Duration
	now      func() time.Time
}

// NewLeases returns the lease table table for worker; a lease it takes
// or renews holds for duration. now is the clock (nil: time.Now).
func NewLeases(api DynamoDB, table, worker string, duration time.Duration, now func() time.Time) (*Leases, error) {
	switch {
	case table == "":
		return nil, errors.New("open lease table: table name is empty")
	case worker == "":
		return nil, errors.New("open lease table: worker id is empty")
	case duration <= 0:
		return nil, errors.New("open lease table: lease duration must be positive")
	}
	if now == nil {
		now = time.Now
	}
	return &Leases{api: api, table: table, worker: worker, duration: duration, now: now}, nil
}

// Worker returns the worker id the leases are taken for.
func (m *Leases) Worker() string { return m.worker }

func sv(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
func nv(v int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}

// Ensure creates the lease of a shard unless it exists, free, with
// checkpoint as its starting point.
func (m *Leases) Ensure(ctx context.Context, shardID string, parents []string, checkpoint string) error {
	item := map[string]types.AttributeValue{
		AttrShardID:    sv(shardID),
		attrCounter:    nv(0),
		attrExpires:    nv(0),
		attrCheckpoint: sv(checkpoint),
		attrUpdated:    sv(m.now().UTC().Format(time.RFC3339Nano)),
	}
	if len(parents) > 0 {
		item[attrParents] = &types.AttributeValueMemberSS{Value: parents}
	}
	_, err := m.api.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                aws.String(m.table),
		Item:                     item,
		ConditionExpression:      aws.String("attribute_not_exists(#id)"),
		ExpressionAttributeNames: map[string]string{"#id": AttrShardID},
	})
	var ccf *types.ConditionalCheckFailedException
	if err != nil && !errors.As(err, &ccf) {
		return fmt.Errorf("create lease of shard %s: %w", shardID, err)
	}
	return nil
}

// List returns every lease of the table, sorted by shard id, with a
// strongly consistent read.
func (m *Leases) List(ctx context.Context) ([]Lease, error) {
	var out []Lease
	var start map[string]types.AttributeValue
	for {
		page, err := m.api.Scan(ctx, &dynamodb.ScanInput{
			TableName:         aws.String(m.table),
			ConsistentRead:    aws.Bool(true),
			ExclusiveStartKey: start,
		})
		if err != nil {
			return nil, fmt.Errorf("list leases: scan %s: %w", m.table, err)
		}
		for _, it := range page.Items {
			out = append(out, fromItem(it))
		}
		if len(page.LastEvaluatedKey) == 0 {
			break
		}
		start = page.LastEvaluatedKey
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ShardID < out[j].ShardID })
	return out, nil
}

func fromItem(it map[string]types.AttributeValue) Lease {
	l := Lease{
		ShardID:    str(it[AttrShardID]),
		Owner:      str(it[attrOwner]),
		Counter:    num(it[attrCounter]),
		ExpiresAt:  time.UnixMilli(num(it[attrExpires])),
		Checkpoint: str(it[attrCheckpoint]),
	}
	if ss, ok := it[attrParents].(*types.AttributeValueMemberSS); ok {
		l.Parents = append([]string(nil), ss.Value...)
		sort.Strings(l.Parents)
	}
	return l
}

// Take makes the worker the owner of l, as it was read: it fails with
// ErrLeaseLost when anyone wrote the lease since. Taking a lease held by
// another, unexpired worker is stealing it; the caller decides when that
// is fair.
func (m *Leases) Take(ctx context.Context, l Lease) (Lease, error) {
	return m.update(ctx, "take", l, "#ctr = :ctr", "SET #owner = :me", nil)
}

// Renew extends a lease the worker holds.
func (m *Leases) Renew(ctx context.Context, l Lease) (Lease, error) {
	return m.update(ctx, "renew", l, "#owner = :me AND #ctr = :ctr", "SET #owner = :me", nil)
}

// Checkpoint records that every record of the shard up to and including
// seq was handled (or CheckpointShardEnd), and renews the lease; it fails
// with ErrLeaseLost unless the worker still holds the lease.
func (m *Leases) Checkpoint(ctx context.Context, l Lease, seq string) (Lease, error) {
	nl, err := m.update(ctx, "checkpoint", l, "#owner = :me AND #ctr = :ctr", "SET #owner = :me, #cp = :cp",
		map[string]types.AttributeValue{":cp": sv(seq)})
	if err == nil {
		nl.Checkpoint = seq
	}
	return nl, err
}

// Release gives a held lease up, so another worker may take it at once.
func (m *Leases) Release(ctx context.Context, l Lease) error {
	for attempt := 0; ; attempt++ {
		now := m.now()
		_, err := m.api.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:           aws.String(m.table),
			Key:                 map[string]types.AttributeValue{AttrShardID: sv(l.ShardID)},
			ConditionExpression: aws.String("#owner = :me AND #ctr = :ctr"),
			UpdateExpression:    aws.String("SET #ctr = :next, #exp = :zero, #upd = :upd REMOVE #owner"),
			ExpressionAttributeNames: map[string]string{
				"#owner": attrOwner, "#ctr": attrCounter, "#exp": attrExpires, "#upd": attrUpdated,
			},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":me": sv(m.worker), ":ctr": nv(l.Counter), ":next": nv(l.Counter + 1), ":zero": nv(0),
				":upd": sv(now.UTC().Format(time.RFC3339Nano)),
			},
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		})
		var ccf *types.ConditionalCheckFailedException
		switch {
		case errors.As(err, &ccf):
			if cur, ok := m.stillMine(ccf, l); ok && attempt == 0 {
				l = cur
				continue
			}
			return fmt.Errorf("release lease of shard %s: %w", l.ShardID, ErrLeaseLost)
		case err != nil:
			return fmt.Errorf("release lease of shard %s: %w", l.ShardID, err)
		}
		return nil
	}
}

// stillMine tells a lease that changed under us by our own hand (a write
// whose response was lost, e.g. cancelled after DynamoDB applied it) from
// one another worker took: only this worker writes its own id as owner, so
// a lease still naming it is still its own, at the counter it now has.
func (m *Leases) stillMine(ccf *types.ConditionalCheckFailedException, l Lease) (Lease, bool) {
	if ccf.Item == nil {
		return l, false
	}
	cur := fromItem(ccf.Item)
	if cur.Owner != m.worker || cur.ShardID != l.ShardID {
		return l, false
	}
	return cur, true
}

// update is a conditional write that bumps the counter and the expiry.
func (m *Leases) update(ctx context.Context, op string, l Lease, cond, set string, vals map[string]types.AttributeValue) (Lease, error) {
	return m.updateOnce(ctx, op, l, cond, set, vals, false)
}

func (m *Leases) updateOnce(ctx context.Context, op string, l Lease, cond, set string, vals map[string]types.AttributeValue, retried bool) (Lease, error) {
	now := m.now()
	exp := now.Add(m.duration)
	values := map[string]types.AttributeValue{
		":me": sv(m.worker), ":ctr": nv(l.Counter), ":next": nv(l.Counter + 1),
		":exp": nv(exp.UnixMilli()), ":upd": sv(now.UTC().Format(time.RFC3339Nano)),
	}
	for k, v := range vals {
		values[k] = v
	}
	names := map[string]string{
		"#owner": attrOwner, "#ctr": attrCounter, "#exp": attrExpires, "#upd": attrUpdated,
	}
	if vals[":cp"] != nil {
		names["#cp"] = attrCheckpoint
	}
	_, err := m.api.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                           aws.String(m.table),
		Key:                                 map[string]types.AttributeValue{AttrShardID: sv(l.ShardID)},
		ConditionExpression:                 aws.String("attribute_exists(#id) AND " + cond),
		UpdateExpression:                    aws.String(set + ", #ctr = :next, #exp = :exp, #upd = :upd"),
		ExpressionAttributeNames:            withID(names),
		ExpressionAttributeValues:           values,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	var ccf *types.ConditionalCheckFailedException
	switch {
	case errors.As(err, &ccf):
		if cur, ok := m.stillMine(ccf, l); ok && !retried {
			cur.Checkpoint = l.Checkpoint
			return m.updateOnce(ctx, op, cur, cond, set, vals, true)
		}
		return l, fmt.Errorf("%s lease of shard %s: %w", op, l.ShardID, ErrLeaseLost)
	case err != nil:
		return l, fmt.Errorf("%s lease of shard %s: %w", op, l.ShardID, err)
	}
	l.Owner, l.Counter, l.ExpiresAt = m.worker, l.Counter+1, time.UnixMilli(exp.UnixMilli())
	return l, nil
}

func withID(names map[string]string) map[string]string {
	names["#id"] = AttrShardID
	return names
}

// CreateLeaseTable creates a lease table (on-demand capacity, partition
// key AttrShardID) and waits until it is active.
func CreateLeaseTable(ctx context.Context, client *dynamodb.Client, table string) error {
	_, err := client.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(AttrShardID), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(AttrShardID), KeyType: types.KeyTypeHash}},
	})
	if err != nil {
		return fmt.Errorf("create lease table %q: %w", table, err)
	}
	w := dynamodb.NewTableExistsWaiter(client)
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)}, 2*time.Minute); err != nil {
		return fmt.Errorf("create lease table %q: wait until active: %w", table, err)
	}
	return nil
}

func str(v types.AttributeValue) string {
	if s, ok := v.(*types.AttributeValueMemberS); ok {
		return s.Value
	}
	return ""
}

func num(v types.AttributeValue) int64 {
	if n, ok := v.(*types.AttributeValueMemberN); ok {
		x, _ := strconv.ParseInt(n.Value, 10, 64)
		return x
	}
	return 0
}

// plan decides which leases a worker should take now: the free or expired
// ones whose parents are finished, up to its fair share of the unfinished
// shards among the live workers; when none is free and a worker holds
// more than its share, one of that worker's leases (stealing, one at a
// time, so the fleet converges without thrashing).
func plan(leases []Lease, me string, now time.Time) (take []Lease, steal *Lease) {
	byID := make(map[string]Lease, len(leases))
	for _, l := range leases {
		byID[l.ShardID] = l
	}
	held := map[string][]Lease{}
	active := 0
	var free []Lease
	for _, l := range leases {
		if l.Finished() {
			continue
		}
		active++
		if !l.Expired(now) {
			held[l.Owner] = append(held[l.Owner], l)
			continue
		}
		if parentsFinished(l, byID) {
			free = append(free, l)
		}
	}
	workers := len(held)
	if _, ok := held[me]; !ok {
		workers++
	}
	share := (active + workers - 1) / workers
	want := share - len(held[me])
	if want <= 0 {
		return nil, nil
	}
	if len(free) > want {
		free = free[:want]
	}
	if len(free) > 0 {
		return free, nil
	}
	// Steal from the most loaded worker if it holds more than its share
	// and we hold at least one fewer than share, so two workers never
	// trade a lease back and forth.
	var victim string
	for w, ls := range held {
		if w == me {
			continue
		}
		if len(ls) > share && (victim == "" || len(ls) > len(held[victim]) || (len(ls) == len(held[victim]) && w < victim)) {
			victim = w
		}
	}
	if victim == "" || len(held[me])+1 > share {
		return nil, nil
	}
	ls := held[victim]
	l := ls[len(ls)-1]
	return nil, &l
}

// parentsFinished reports whether every parent of l that is in the lease
// table has been read to its end. A parent missing from the table is
// taken as finished: it aged out of the stream before any lease was made.
func parentsFinished(l Lease, byID map[string]Lease) bool {
	for _, p := range l.Parents {
		if pl, ok := byID[p]; ok && !pl.Finished() {
			return false
		}
	}
	return true
}
