package consumer

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"
)

// Handler applies changes to a sink.
//
// Handle gets the records of one partition in offset order and returns nil once
// every record is applied. It must be all-or-nothing or idempotent: after a crash
// or a rebalance the same records are delivered again. Handle must return soon
// after ctx is cancelled (the partition is being revoked or the process stops).
//
// Name identifies the handler in metrics, logs, dead letters and its default
// consumer group ("kanal-<name>"); it must stay stable across releases.
type Handler interface {
	Name() string
	Handle(ctx context.Context, b Batch) error
}

// OffsetStore is implemented by handlers that keep their consumer offsets in the
// sink, written in the same transaction as the batch (Batch.NextOffset). When the
// Runner is assigned partitions it asks LoadOffsets where to resume and seeks there,
// ignoring offsets committed to Kafka (it still commits them, for lag tools). That
// makes non-idempotent sinks (sums of deltas) exactly-once.
type OffsetStore interface {
	Handler
	// LoadOffsets returns, per topic and partition, the next offset to read, for
	// those of the given partitions the sink has an offset for. Partitions it has
	// none for start where a new group starts (Config.Start).
	LoadOffsets(ctx context.Context, group string, partitions map[string][]int32) (map[string]map[int32]int64, error)
}

// OffsetResetter is implemented by handlers that keep per-partition progress in
// their sink — the offsets of an OffsetStore, or the Redis materialiser's
// partition watermarks — so that `kanal offsets reset` can move it with the
// group's Kafka offsets. ResetOffsets sets the next offset of each given
// partition.
type OffsetResetter interface {
	ResetOffsets(ctx context.Context, group string, offsets map[string]map[int32]int64) error
}

// UpdateBeforeUser is implemented by handlers that say whether they read the
// before image of updates (Change.Before of a change with OpUpdate). When no
// handler of a consumer group reads it, and none is wrapped by route middleware
// (which might), the group decodes updates without it: Change.Before is nil for
// updates, saving a row's worth of decoding per update. The image is still
// checked, so a record is applied or dead-lettered exactly as before. A handler
// that does not implement it is taken to read it.
type UpdateBeforeUser interface {
	UsesUpdateBefore() bool
}

// BatchSizer is implemented by handlers that set their own bound on the records
// of one batch, because each batch costs them much besides its records (a
// database transaction with its round trips and statements), so bigger batches
// cost less per record. When every handler of a consumer group implements it
// with a positive bound, the group's batches hold up to the smallest of them
// instead of the Runner's BatchMaxRecords, never more than QueueMaxRecords. A
// batch still holds only what has arrived: it is never held back to fill up.
type BatchSizer interface {
	BatchMaxRecords() int
}

// HandlerFunc adapts a function to a Handler.
type HandlerFunc struct {
	HandlerName string
	Fn          func(ctx context.Context, b Batch) error
}

// Name returns HandlerName.
func (f HandlerFunc) Name() string { return f.HandlerName }

// Handle calls Fn.
func (f HandlerFunc) Handle(ctx context.Context, b Batch) error { return f.Fn(ctx, b) }

// Middleware wraps a handler, for cross-cutting concerns (logging, tracing,
// timeouts). A middleware must keep Name unchanged; wrap with Wrap to get that for
// free.
type Middleware func(Handler) Handler

// Wrap returns a handler named like h whose Handle is fn.
func Wrap(h Handler, fn func(ctx context.Context, b Batch) error) Handler {
	return wrapped{h: h, fn: fn}
}

type wrapped struct {
	h  Handler
	fn func(ctx context.Context, b Batch) error
}

func (w wrapped) Name() string                              { return w.h.Name() }
func (w wrapped) Handle(ctx context.Context, b Batch) error { return w.fn(ctx, b) }

// Chain applies middleware so that the first one is the outermost.
func Chain(h Handler, mws ...Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// PanicError is returned by Recover when a handler panicked.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("handler panicked: %v", e.Value) }

// Recover turns a panic in Handle into a *PanicError, which is retried and then
// treated per the route's failure policy like any other error. The Runner always
// installs it outermost, so a bug in one handler cannot take the process down.
func Recover() Middleware {
	return func(h Handler) Handler {
		return Wrap(h, func(ctx context.Context, b Batch) (err error) {
			defer func() {
				if v := recover(); v != nil {
					err = &PanicError{Value: v, Stack: debug.Stack()}
				}
			}()
			return h.Handle(ctx, b)
		})
	}
}

// Logging logs every batch at debug level and every failed batch at warn level,
// with the handler, topic, partition and offsets.
func Logging(log *slog.Logger) Middleware {
	return func(h Handler) Handler {
		return Wrap(h, func(ctx context.Context, b Batch) error {
			start := time.Now()
			err := h.Handle(ctx, b)
			attrs := []any{"handler", h.Name(), "topic", b.Topic, "partition", b.Partition,
				"records", len(b.Records), "took", time.Since(start)}
			if len(b.Records) > 0 {
				attrs = append(attrs, "first_offset", b.Records[0].Offset, "last_offset", b.Records[len(b.Records)-1].Offset)
			}
			if err != nil {
				log.WarnContext(ctx, "batch failed", append(attrs, "err", err)...)
			} else {
				log.DebugContext(ctx, "batch applied", attrs...)
			}
			return err
		})
	}
}

// Timeout bounds each Handle call: its context is cancelled after d.
func Timeout(d time.Duration) Middleware {
	return func(h Handler) Handler {
		return Wrap(h, func(ctx context.Context, b Batch) error {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			return h.Handle(ctx, b)
		})
	}
}
