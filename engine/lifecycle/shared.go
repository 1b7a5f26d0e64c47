package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/trailwatch/trailwatch/notifiers"
	"github.com/trailwatch/trailwatch/rules"
	"github.com/trailwatch/trailwatch/rules/cloudtrail"
)

// Shared is lifecycle state that several processes read and write: the
// dedup windows and threshold groups (entries, each with a version), and
// the decision taken for each (rule, event) alert. engine/dynamostate
// implements it on a DynamoDB table.
//
// With a Shared store the lifecycle decides each alert in its own
// optimistic transaction: it reads the decision already taken for the
// alert, if any (a batch read again after a crash, a retried Lambda
// batch, or another worker's), and otherwise reads the entries it needs,
// decides, and applies the decision and the changed entries together, on
// condition that no entry changed since it was read and no decision for
// the alert exists. On a conflict it reads again and decides again. So
// two processes that see repeats of one finding at the same moment send
// it once, and a batch read twice gives the same alerts twice, which the
// outbox and the delivery ledger then send once.
type Shared interface {
	// Decision returns the decision recorded for the alert idempotency
	// key idem; found is false when there is none.
	Decision(ctx context.Context, idem string) (data []byte, found bool, err error)
	// Entry returns the entry stored under key and its version; data is
	// nil and version 0 when there is none.
	Entry(ctx context.Context, key string) (data []byte, version int64, err error)
	// Apply records decision under idem and makes writes, all or
	// nothing. It fails with an error wrapping ErrConflict when a
	// decision for idem exists or an entry's version is no longer the
	// one in its write.
	Apply(ctx context.Context, idem string, decision []byte, writes []SharedWrite) error
}

// SharedWrite is one entry change of a decision.
type SharedWrite struct {
	// Key names the entry.
	Key string
	// Data is the entry's new content; nil deletes it.
	Data []byte
	// Version is the version the entry was read at (0: it did not
	// exist). The store writes version+1.
	Version int64
	// Keep is how long past now the entry matters at least (its window);
	// a store may drop it later than that, never sooner.
	Keep time.Duration
}

// ErrConflict is wrapped by Shared.Apply's error when another process
// changed the state first.
var ErrConflict = errors.New("lifecycle state changed by another process")

// maxSharedAttempts bounds how often one alert is decided again after
// conflicts before the batch fails (and is read again later). Between
// attempts the process waits a random time up to conflictBackoff doubled
// per attempt (at most maxConflictBackoff), so that processes racing on
// one key spread out instead of colliding again.
const (
	maxSharedAttempts  = 16
	conflictBackoff    = 5 * time.Millisecond
	maxConflictBackoff = 200 * time.Millisecond
)

// backoff waits before attempt n+1; it reports false when ctx ended.
func backoff(ctx context.Context, n int) bool {
	d := min(conflictBackoff<<min(n, 10), maxConflictBackoff)
	t := time.NewTimer(rand.N(d) + time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// sharedDecision is what the lifecycle made of one alert: whether it is
// sent and, if so, what it changed in it. The alert itself is not stored:
// the evaluator makes the same one from the same record.
type sharedDecision struct {
	Notify     bool                    `json:"notify"`
	DedupKey   string                  `json:"dedup_key,omitempty"`
	Summary    string                  `json:"summary,omitempty"`
	Count      int                     `json:"count,omitempty"`
	Suppressed int                     `json:"suppressed,omitempty"`
	FirstTime  time.Time               `json:"first_time,omitzero"`
	LastTime   time.Time               `json:"last_time,omitzero"`
	Group      []string                `json:"group,omitempty"`
	Samples    []notifiers.EventSample `json:"samples,omitempty"`
	Silence    string                  `json:"silence,omitempty"`
}

func decisionOf(outs []Output, silence *compiledSilence) sharedDecision {
	var d sharedDecision
	if silence != nil {
		d.Silence = silence.ID
	}
	if len(outs) == 0 {
		return d
	}
	a := outs[0].Alert
	return sharedDecision{Notify: true, DedupKey: a.DedupKey, Summary: a.Summary, Count: a.Count,
		Suppressed: a.Suppressed, FirstTime: a.FirstTime, LastTime: a.LastTime, Group: a.Group, Samples: a.Samples}
}

func (d sharedDecision) outputs(a notifiers.Alert, idem string) []Output {
	if !d.Notify {
		return nil
	}
	a.DedupKey, a.Summary, a.Count, a.Suppressed = d.DedupKey, d.Summary, d.Count, d.Suppressed
	a.FirstTime, a.LastTime, a.Group, a.Samples = d.FirstTime, d.LastTime, d.Group, d.Samples
	return []Output{{Key: idem, Alert: a}}
}

// fail records the batch's first shared-state failure.
func (b *Batch) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

func (b *Batch) context() context.Context {
	if b.ctx == nil {
		return context.Background()
	}
	return b.ctx
}

// loadShared reads one entry from the shared store for the current
// decision, remembering the version it was read at.
func (b *Batch) loadShared(key string) *entry {
	e := &entry{Key: key}
	if b.err != nil {
		return e
	}
	data, ver, err := b.l.opts.Shared.Entry(b.context(), key)
	if err != nil {
		b.fail(fmt.Errorf("read lifecycle state: %w", err))
		return e
	}
	if data != nil {
		if err := json.Unmarshal(data, e); err != nil {
			b.fail(fmt.Errorf("read lifecycle state: entry %s: %w", hashKey(key), err))
			return &entry{Key: key}
		}
		e.Key = key
	}
	if b.versions == nil {
		b.versions = map[string]int64{}
	}
	b.versions[key] = ver
	return e
}

// processShared decides one alert against the shared store (see Shared).
func (b *Batch) processShared(a notifiers.Alert, r *rules.Rule, ev *cloudtrail.Event, idem string) []Output {
	sh := b.l.opts.Shared
	ctx := b.context()
	for attempt := 0; attempt < maxSharedAttempts && b.err == nil; attempt++ {
		data, found, err := sh.Decision(ctx, idem)
		if err != nil {
			b.fail(fmt.Errorf("read lifecycle decision: %w", err))
			return nil
		}
		if found {
			var d sharedDecision
			if err := json.Unmarshal(data, &d); err != nil {
				b.fail(fmt.Errorf("read lifecycle decision %s: %w", idem, err))
				return nil
			}
			b.stats.add(&b.stats.replayed, r.ID)
			return d.outputs(a, idem)
		}
		b.dirty, b.order, b.versions = map[string]*entry{}, nil, map[string]int64{}
		var st batchStats
		outs, silence := b.decide(nil, a, r, ev, idem, &st)
		if b.err != nil {
			return nil
		}
		writes := make([]SharedWrite, 0, len(b.order))
		for _, k := range b.order {
			e := b.dirty[k]
			w := SharedWrite{Key: k, Version: b.versions[k], Keep: e.Window}
			if e.Threshold != nil && len(e.Threshold.Times) == 0 && len(e.Samples) == 0 {
				if w.Version == 0 {
					continue // a group that fired on its first event: nothing to keep
				}
			} else if w.Data, err = json.Marshal(e); err != nil {
				b.fail(fmt.Errorf("write lifecycle state: %w", err))
				return nil
			}
			writes = append(writes, w)
		}
		dec, err := json.Marshal(decisionOf(outs, silence))
		if err != nil {
			b.fail(fmt.Errorf("write lifecycle decision: %w", err))
			return nil
		}
		err = sh.Apply(ctx, idem, dec, writes)
		b.dirty, b.order, b.versions = map[string]*entry{}, nil, nil
		if errors.Is(err, ErrConflict) {
			b.l.metrics.conflicts.Inc()
			if !backoff(ctx, attempt) {
				b.fail(fmt.Errorf("write lifecycle state: %w", ctx.Err()))
				return nil
			}
			continue
		}
		if err != nil {
			b.fail(fmt.Errorf("write lifecycle state: %w", err))
			return nil
		}
		// The decision is durable now, whatever becomes of this batch: a
		// batch rolled back and read again elsewhere finds it recorded
		// and counts it as replayed, so it is counted here, not at Commit.
		b.l.metrics.observe(&st)
		if silence != nil {
			b.recordSilenced(silence, r, ev)
		}
		return outs
	}
	b.fail(fmt.Errorf("lifecycle state of rule %s: still changing under this process after %d attempts", r.ID, maxSharedAttempts))
	return nil
}
