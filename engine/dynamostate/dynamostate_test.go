package dynamostate_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/trailwatch/trailwatch/engine/dynamostate"
	"github.com/trailwatch/trailwatch/internal/testservers"
)

// fakeClock is a settable clock, safe for concurrent use.
type fakeClock struct{ ns atomic.Int64 }

func newClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2024, 5, 1, 8, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

var tableSeq atomic.Int64

// newStore returns a store on a fresh table of client's server, with a
// fake clock.
func newStore(t *testing.T, client *dynamodb.Client, opts dynamostate.Options) (*dynamostate.Store, *fakeClock) {
	t.Helper()
	ctx := context.Background()
	table := fmt.Sprintf("trailwatch-deliveries-%d", tableSeq.Add(1))
	if err := dynamostate.CreateTable(ctx, client, table); err != nil {
		t.Fatal(err)
	}
	clock := newClock()
	opts.Now = clock.Now
	// moto applies a conditional write in several steps, so two racing
	// requests can both pass the condition; DynamoDB does not allow that.
	// Requests go one at a time here, so the tests check the store's
	// conditions (claims still race each other in the store's own code).
	st, err := dynamostate.New(&serialAPI{api: client}, table, opts)
	if err != nil {
		t.Fatal(err)
	}
	return st, clock
}

func motoClient(t *testing.T) *dynamodb.Client {
	t.Helper()
	m := testservers.StartMoto(t)
	t.Setenv("AWS_ENDPOINT_URL", m.Endpoint)
	client, err := dynamostate.NewClient(context.Background(), "us-east-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

func mustClaim(t *testing.T, st *dynamostate.Store, key, notifier string, want dynamostate.Status) dynamostate.Claim {
	t.Helper()
	c, err := st.Claim(context.Background(), key, notifier, "rule-1")
	if err != nil {
		t.Fatalf("Claim(%s, %s): %v", key, notifier, err)
	}
	if c.Status != want {
		t.Fatalf("Claim(%s, %s) status = %v, want %v", key, notifier, c.Status, want)
	}
	return c
}

func TestStore(t *testing.T) {
	client := motoClient(t)
	ctx := context.Background()
	lease, ttl := 30*time.Second, time.Hour

	tests := []struct {
		name string
		run  func(t *testing.T, st *dynamostate.Store, clock *fakeClock)
	}{
		{"a fresh claim is held, and a second claimant sees it busy", func(t *testing.T, st *dynamostate.Store, clock *fakeClock) {
			c := mustClaim(t, st, "k1", "slack", dynamostate.Claimed)
			if got, want := c.Until, clock.Now().Add(lease); !got.Equal(want) {
				t.Errorf("Until = %v, want %v", got, want)
			}
			b := mustClaim(t, st, "k1", "slack", dynamostate.Busy)
			if got, want := b.Until.UnixMilli(), c.Until.UnixMilli(); got != want {
				t.Errorf("busy Until = %d, want the holder's %d", got, want)
			}
		}},
		{"a delivered alert is never claimed again", func(t *testing.T, st *dynamostate.Store, clock *fakeClock) {
			c := mustClaim(t, st, "k1", "slack", dynamostate.Claimed)
			if err := st.Delivered(ctx, c); err != nil {
				t.Fatal(err)
			}
			mustClaim(t, st, "k1", "slack", dynamostate.AlreadyDelivered)
			clock.Advance(lease * 10) // leases do not matter once delivered
			mustClaim(t, st, "k1", "slack", dynamostate.AlreadyDelivered)
		}},
		{"notifiers and keys are independent", func(t *testing.T, st *dynamostate.Store, _ *fakeClock) {
			c := mustClaim(t, st, "k1", "slack", dynamostate.Claimed)
			if err := st.Delivered(ctx, c); err != nil {
				t.Fatal(err)
			}
			mustClaim(t, st, "k1", "email", dynamostate.Claimed)
			mustClaim(t, st, "k2", "slack", dynamostate.Claimed)
		}},
		{"a released claim can be taken at once", func(t *testing.T, st *dynamostate.Store, _ *fakeClock) {
			c := mustClaim(t, st, "k1", "slack", dynamostate.Claimed)
			if err := st.Release(ctx, c); err != nil {
				t.Fatal(err)
			}
			mustClaim(t, st, "k1", "slack", dynamostate.Claimed)
		}},
		{"a stale claim is retaken after the lease, and the old holder learns it", func(t *testing.T, st *dynamostate.Store, clock *fakeClock) {
			old := mustClaim(t, st, "k1", "slack", dynamostate.Claimed)
			clock.Advance(lease - time.Second)
			mustClaim(t, st, "k1", "slack", dynamostate.Busy)
			clock.Advance(2 * time.Second)
			nw := mustClaim(t, st, "k1", "slack", dynamostate.Claimed)
			if err := st.Delivered(ctx, old); !errors.Is(err, dynamostate.ErrLeaseLost) {
				t.Errorf("Delivered(old claim) = %v, want ErrLeaseLost", err)
			}
			// Releasing a lost claim leaves the new holder's alone.
			if err := st.Release(ctx, old); err != nil {
				t.Fatal(err)
			}
			mustClaim(t, st, "k1", "slack", dynamostate.Busy)
			if err := st.Delivered(ctx, nw); err != nil {
				t.Fatal(err)
			}
			mustClaim(t, st, "k1", "slack", dynamostate.AlreadyDelivered)
		}},
		{"a record past its TTL counts as absent before DynamoDB sweeps it", func(t *testing.T, st *dynamostate.Store, clock *fakeClock) {
			c := mustClaim(t, st, "k1", "slack", dynamostate.Claimed)
			if err := st.Delivered(ctx, c); err != nil {
				t.Fatal(err)
			}
			clock.Advance(ttl + time.Second)
			mustClaim(t, st, "k1", "slack", dynamostate.Claimed)
		}},
		{"marking an unheld claim is an error", func(t *testing.T, st *dynamostate.Store, _ *fakeClock) {
			mustClaim(t, st, "k1", "slack", dynamostate.Claimed)
			busy := mustClaim(t, st, "k1", "slack", dynamostate.Busy)
			if err := st.Delivered(ctx, busy); err == nil {
				t.Error("Delivered(busy claim) = nil, want an error")
			}
			if err := st.Release(ctx, busy); err != nil {
				t.Errorf("Release(busy claim) = %v, want nil (nothing to release)", err)
			}
			mustClaim(t, st, "k1", "slack", dynamostate.Busy) // the first claim still holds
		}},
		{"of many concurrent claimants exactly one wins", func(t *testing.T, st *dynamostate.Store, _ *fakeClock) {
			const workers = 8
			var wg sync.WaitGroup
			var won, busy atomic.Int64
			errs := make(chan error, workers)
			for range workers {
				wg.Go(func() {
					c, err := st.Claim(ctx, "k-race", "slack", "rule-1")
					if err != nil {
						errs <- err
						return
					}
					switch c.Status {
					case dynamostate.Claimed:
						won.Add(1)
					case dynamostate.Busy:
						busy.Add(1)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if won.Load() != 1 || busy.Load() != workers-1 {
				t.Errorf("claimed %d, busy %d; want 1 and %d", won.Load(), busy.Load(), workers-1)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, clock := newStore(t, client, dynamostate.Options{Lease: lease, TTL: ttl})
			tt.run(t, st, clock)
		})
	}
}

func TestCreateTableEnablesTTL(t *testing.T) {
	client := motoClient(t)
	ctx := context.Background()
	if err := dynamostate.CreateTable(ctx, client, "deliveries"); err != nil {
		t.Fatal(err)
	}
	out, err := client.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String("deliveries")})
	if err != nil {
		t.Fatal(err)
	}
	d := out.TimeToLiveDescription
	if got := aws.ToString(d.AttributeName); got != dynamostate.AttrTTL {
		t.Errorf("TTL attribute = %q, want %q", got, dynamostate.AttrTTL)
	}
	if got := string(d.TimeToLiveStatus); got != "ENABLED" {
		t.Errorf("TTL status = %q, want ENABLED", got)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name  string
		table string
		opts  dynamostate.Options
	}{
		{"empty table", "", dynamostate.Options{}},
		{"negative lease", "t", dynamostate.Options{Lease: -time.Second}},
		{"negative ttl", "t", dynamostate.Options{TTL: -time.Second}},
		{"ttl shorter than lease", "t", dynamostate.Options{Lease: time.Hour, TTL: time.Minute}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := dynamostate.New(nil, tt.table, tt.opts); err == nil {
				t.Error("New = nil error, want one")
			}
		})
	}
}

// serialAPI sends one request to moto at a time (see newStore).
type serialAPI struct {
	mu  sync.Mutex
	api dynamostate.API
}

func (s *serialAPI) PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.api.PutItem(ctx, in, opts...)
}

func (s *serialAPI) GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.api.GetItem(ctx, in, opts...)
}

func (s *serialAPI) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.api.UpdateItem(ctx, in, opts...)
}

func (s *serialAPI) DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.api.DeleteItem(ctx, in, opts...)
}
