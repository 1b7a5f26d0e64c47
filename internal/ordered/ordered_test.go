package ordered

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// work is a task that emits n items "task.i", yielding now and then so
// that tasks finish out of order.
func work(task, n int) Task[string] {
	return func(ctx context.Context, emit func(string) error) error {
		for i := range n {
			if (task+i)%3 == 0 {
				runtime.Gosched()
			}
			if err := emit(fmt.Sprintf("%d.%d", task, i)); err != nil {
				return err
			}
		}
		return nil
	}
}

func TestRunKeepsTheOrder(t *testing.T) {
	before := goleak.IgnoreCurrent()
	var want []string
	sizes := []int{0, 5, 1, 40, 0, 0, 7, 100, 3, 1, 0, 25}
	for task, n := range sizes {
		for i := range n {
			want = append(want, fmt.Sprintf("%d.%d", task, i))
		}
	}
	for _, opts := range []Options{{Workers: 1}, {Workers: 2}, {Workers: 3, Ahead: 1, Buffer: 1}, {Workers: 8, Ahead: 20, Buffer: 2}} {
		t.Run(fmt.Sprintf("%+v", opts), func(t *testing.T) {
			var got []string
			err := Run(context.Background(), opts, func(ctx context.Context, add func(Task[string]) error) error {
				for task, n := range sizes {
					if err := add(work(task, n)); err != nil {
						return err
					}
				}
				return nil
			}, func(s string) error {
				got = append(got, s)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("got\n%v\nwant\n%v", got, want)
			}
			goleak.VerifyNone(t, before)
		})
	}
}

// TestRunStops stops runs every way they stop early and checks the error,
// that everything before the failure was consumed, that every task added
// ran once, and that no goroutine is left.
func TestRunStops(t *testing.T) {
	before := goleak.IgnoreCurrent()
	errTask, errProduce, errConsume := errors.New("task failed"), errors.New("produce failed"), errors.New("consume failed")
	for _, tt := range []struct {
		name     string
		failTask int // this task fails after its items
		failProd int // produce fails after adding this many tasks
		failCons string
		cancelAt string // cancel the context when consuming this item
		want     error
		last     string // the last item consumed
	}{
		{name: "task error", failTask: 4, failProd: -1, want: errTask, last: "4.9"},
		{name: "produce error", failTask: -1, failProd: 6, want: errProduce, last: "5.9"},
		{name: "consume error", failTask: -1, failProd: -1, failCons: "3.2", want: errConsume, last: "3.2"},
		{name: "cancelled", failTask: -1, failProd: -1, cancelAt: "2.5", want: context.Canceled},
	} {
		for _, workers := range []int{1, 2, 4} {
			t.Run(fmt.Sprintf("%s/%d workers", tt.name, workers), func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				var added, ran atomic.Int64
				var last string
				err := Run(ctx, Options{Workers: workers, Ahead: 2, Buffer: 1}, func(ctx context.Context, add func(Task[string]) error) error {
					for task := range 1000 {
						if task == tt.failProd {
							return errProduce
						}
						w := work(task, 10)
						added.Add(1)
						err := add(func(ctx context.Context, emit func(string) error) error {
							ran.Add(1)
							if err := w(ctx, emit); err != nil {
								return err
							}
							if task == tt.failTask {
								return errTask
							}
							return nil
						})
						if err != nil {
							return err
						}
					}
					return nil
				}, func(s string) error {
					last = s
					if s == tt.cancelAt {
						cancel()
					}
					if s == tt.failCons {
						return errConsume
					}
					return nil
				})
				if !errors.Is(err, tt.want) {
					t.Errorf("got %v, want %v", err, tt.want)
				}
				if tt.last != "" && last != tt.last {
					t.Errorf("last item consumed %s, want %s", last, tt.last)
				}
				if added.Load() != ran.Load() {
					t.Errorf("%d tasks added, %d ran", added.Load(), ran.Load())
				}
				if added.Load() > 20 {
					t.Errorf("%d tasks added: the run did not stop", added.Load())
				}
				goleak.VerifyNone(t, before)
			})
		}
	}
}

// TestRunBoundsWhatIsInFlight checks that workers wait for a slow
// consumer: items emitted and not yet consumed stay within what Ahead
// and Buffer allow.
func TestRunBoundsWhatIsInFlight(t *testing.T) {
	opts := Options{Workers: 4, Ahead: 3, Buffer: 2}
	var pending, most atomic.Int64
	err := Run(context.Background(), opts, func(ctx context.Context, add func(Task[int]) error) error {
		for range 50 {
			err := add(func(ctx context.Context, emit func(int) error) error {
				for i := range 30 {
					n := pending.Add(1)
					for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
					}
					if err := emit(i); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	}, func(int) error {
		runtime.Gosched() // a consumer slower than the workers
		pending.Add(-1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Tasks holding items: those waiting in order, the one consumed and
	// the one being added; each holds its buffer plus the item it is
	// trying to hand over.
	if limit := int64((opts.Ahead + 2) * (opts.Buffer + 1)); most.Load() > limit {
		t.Errorf("%d items were in flight at once, want at most %d", most.Load(), limit)
	}
	if most.Load() < 2 {
		t.Errorf("at most %d item in flight: the workers did not run ahead", most.Load())
	}
}

// TestRunRunsTasksAtOnce checks that tasks do run concurrently: each of
// the first Workers tasks waits until all of them have started, which
// only happens if they run at the same time (else the deadline ends the
// run and the test fails).
func TestRunRunsTasksAtOnce(t *testing.T) {
	for _, workers := range []int{2, 3, 5} {
		t.Run(fmt.Sprint(workers, " workers"), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var started sync.WaitGroup
			started.Add(workers)
			all := make(chan struct{})
			go func() { started.Wait(); close(all) }()
			err := Run(ctx, Options{Workers: workers}, func(ctx context.Context, add func(Task[int]) error) error {
				for i := range workers {
					err := add(func(ctx context.Context, emit func(int) error) error {
						started.Done()
						select {
						case <-all:
						case <-ctx.Done():
							return ctx.Err()
						}
						return emit(i)
					})
					if err != nil {
						return err
					}
				}
				return nil
			}, func(int) error { return nil })
			if err != nil {
				t.Fatalf("the first %d tasks did not run at once: %v", workers, err)
			}
		})
	}
}
