// Package ordered runs tasks on several goroutines and hands what they
// produce back on the caller's goroutine in the order the tasks were
// added, as if they had run one after another: a task is a whole input (a
// file, an S3 object) read by one worker, streaming its results in chunks,
// so that the reading itself (decompression, splitting records) runs on
// every core while the output keeps the sequential order.
//
// engine/decide.Parallel is the other ordered pattern of trailwatch: it
// splits one stream of records into batches, every batch a fixed amount
// of work handed back whole. Here a task's work is unknown in advance (a
// file may hold one record or millions), so a task hands back its results
// as it goes, through a bounded buffer, and memory stays bounded by the
// tasks in flight times that buffer, whatever the inputs.
package ordered

import (
	"context"
	"runtime"
)

// Options adjusts Run.
type Options struct {
	// Workers is the number of goroutines running tasks; 0 means
	// GOMAXPROCS. With 1, every task runs on the caller's goroutine as it
	// is added, its items consumed as they are emitted: no goroutine,
	// nothing buffered.
	Workers int
	// Ahead is how many tasks may be added and not yet consumed, beyond
	// the one being consumed (0: 2 × Workers).
	Ahead int
	// Buffer is how many items a task may emit ahead of the consumer
	// (0: 4). A worker whose task's buffer is full waits.
	Buffer int
}

// Task is one unit of work. It runs once, on a worker, and hands its
// items to emit in order. emit blocks while the task's buffer is full and
// returns an error once the run has stopped; the task should then return
// (its error is then ignored). ctx ends when the run stops.
type Task[T any] func(ctx context.Context, emit func(T) error) error

// Run runs produce, which adds tasks in order with add, and calls consume
// on the caller's goroutine with every item the tasks emit: the items of
// the first task added in the order it emitted them, then the second
// task's, and so on. consume and add are never called concurrently with
// themselves; tasks run concurrently with each other, with produce and
// with consume.
//
// Every task given to add runs exactly once: on a worker or, when the run
// has already stopped, at once on produce's goroutine with an ended ctx
// (so that it can release what it holds); add then returns an error, and
// produce should return.
//
// The run stops at the first of: consume's error (returned at once), a
// task's error (returned once everything emitted before it in the order
// has been consumed), produce's error (likewise, after the items of every
// task it added), or ctx's end (ctx's error). Run returns only after
// produce, every task and every goroutine it started have returned.
func Run[T any](ctx context.Context, opts Options, produce func(ctx context.Context, add func(Task[T]) error) error, consume func(T) error) error {
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	if workers == 1 {
		return runHere(ctx, produce, consume)
	}
	ahead := opts.Ahead
	if ahead <= 0 {
		ahead = 2 * workers
	}
	buffer := opts.Buffer
	if buffer <= 0 {
		buffer = 4
	}

	rctx, stop := context.WithCancel(ctx)
	defer stop()
	type task struct {
		run Task[T]
		out chan T
		err error // set before out is closed
	}
	// order holds the tasks added and not yet consumed, in order; work
	// hands the same tasks to the workers in the same order. A task is
	// sent to work right after order, and never waits there: the tasks not
	// yet taken by a worker are at most those in order, the one being
	// consumed and the one being added.
	order := make(chan *task, ahead)
	work := make(chan *task, ahead+2)
	done := make(chan struct{})
	for range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for t := range work {
				t.err = t.run(rctx, func(item T) error {
					select {
					case t.out <- item:
						return nil
					case <-rctx.Done():
						return rctx.Err()
					}
				})
				close(t.out)
			}
		}()
	}
	produced := make(chan error, 1)
	go func() {
		defer close(order)
		produced <- produce(rctx, func(run Task[T]) error {
			t := &task{run: run, out: make(chan T, buffer)}
			select {
			case order <- t:
				work <- t
				return nil
			case <-rctx.Done():
				_ = run(rctx, func(T) error { return rctx.Err() })
				return rctx.Err()
			}
		})
	}()

	err := func() error {
		for t := range order {
			for item := range t.out {
				if err := consume(item); err != nil {
					return err
				}
			}
			if t.err != nil {
				return t.err
			}
		}
		return <-produced
	}()
	stop()
	// Let produce see the end, then the workers finish (or skip) what was
	// added.
	for range order {
	}
	close(work)
	for range workers {
		<-done
	}
	if err != nil && ctx.Err() != nil {
		// Interrupted: say so, whatever the interruption made fail.
		return ctx.Err()
	}
	return err
}

// runHere is Run with one worker: each task runs as it is added, on
// produce's goroutine, which is the caller's.
func runHere[T any](ctx context.Context, produce func(ctx context.Context, add func(Task[T]) error) error, consume func(T) error) error {
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	var first error
	emit := func(item T) error {
		if err := rctx.Err(); err != nil {
			return err
		}
		return consume(item)
	}
	err := produce(rctx, func(run Task[T]) error {
		if first == nil {
			first = rctx.Err()
		}
		if first != nil {
			_ = run(rctx, func(T) error { return first })
			return first
		}
		if first = run(rctx, emit); first != nil {
			stop()
		}
		return first
	})
	if first == nil {
		first = err
	}
	if first != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}
