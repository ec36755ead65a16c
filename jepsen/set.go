package jepsen

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/jepsen/history"
)

// setWorkload inserts unique elements, each as its own key under one
// prefix (so the set spans every shard), and reads the whole set with a
// paged scan now and then. After the faults are healed every node reads
// the set once more (final-read).
type setWorkload struct {
	e        *env
	prefix   string
	every    time.Duration // at most one read per this period
	lastRead atomic.Int64  // unix nanoseconds
}

func newSet(e *env, readEvery time.Duration) *setWorkload {
	return &setWorkload{e: e, prefix: "js/", every: readEvery}
}

func (w *setWorkload) key(el int) string { return fmt.Sprintf("%s%010d", w.prefix, el) }

func (w *setWorkload) step(ctx context.Context, wk *worker) history.Type {
	now := time.Now().UnixNano()
	if last := w.lastRead.Load(); now-last >= int64(w.every) && w.lastRead.CompareAndSwap(last, now) {
		return w.read(ctx, wk, wk.node(w.e), "read")
	}
	i := wk.node(w.e)
	el := w.e.value()
	inv := w.e.rec.Invoke(wk.process, history.Op{F: "add", Element: history.Int(el), Node: w.e.names[i]})
	octx, cancel := w.e.opCtx(ctx)
	_, err := w.e.clients[i].Put(octx, w.key(el), []byte(strconv.Itoa(el)))
	cancel()
	t := writeOutcome(err)
	w.e.rec.Complete(inv, t, func(op *history.Op) { op.Error = errText(err) })
	return t
}

// read scans the whole set through node i. Reads take longer than other
// operations as the set grows, so they get a timeout per page.
func (w *setWorkload) read(ctx context.Context, wk *worker, i int, f string) history.Type {
	inv := w.e.rec.Invoke(wk.process, history.Op{F: f, Node: w.e.names[i]})
	els := []int{}
	cursor := ""
	for {
		octx, cancel := w.e.opCtx(ctx)
		page, err := w.e.clients[i].Scan(octx, client.ScanRequest{Prefix: w.prefix, Limit: 1000, Cursor: cursor})
		cancel()
		if err != nil {
			w.e.rec.Complete(inv, history.Fail, func(op *history.Op) { op.Error = errText(err) })
			return history.Fail
		}
		for _, it := range page.Items {
			v, err := strconv.Atoi(string(it.Value))
			if err != nil {
				v = -1 // an element nobody added: the checker reports it
			}
			els = append(els, v)
		}
		if cursor = page.Cursor; cursor == "" {
			break
		}
	}
	w.e.rec.Complete(inv, history.OK, func(op *history.Op) { op.Elements = els })
	return history.OK
}

// final reads the set through every node, retrying a node until it
// answers or ctx ends.
func (w *setWorkload) final(ctx context.Context) error {
	for i := range w.e.clients {
		wk := &worker{process: w.e.process()}
		for w.read(ctx, wk, i, "final-read") != history.OK {
			if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
				return fmt.Errorf("set: no final read from %s: %w", w.e.names[i], err)
			}
		}
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
