package jepsen

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/jepsen/checker"
	"github.com/cairndb/cairn/jepsen/history"
)

// setWorkload inserts unique elements, each as its own key under one
// prefix (so the set spans every shard), and reads the whole set with a
// paged scan now and then. After the faults are healed every node reads
// the set once more (final-read). The same workload runs on documents
// (newDocSet), with its own event names.
type setWorkload struct {
	e        *env
	fprefix  string        // put before the event names ("" for the key set)
	every    time.Duration // at most one read per this period
	lastRead atomic.Int64  // unix nanoseconds
	// add stores element el through c; page reads one page of the set
	// after cursor ("" first) and returns its elements and the next
	// cursor ("" at the end).
	add  func(ctx context.Context, c *client.Client, el int) error
	page func(ctx context.Context, c *client.Client, cursor string) ([]int, string, error)
}

const setPrefix = "js/"

func newSet(e *env, readEvery time.Duration) *setWorkload {
	return &setWorkload{e: e, every: readEvery,
		add: func(ctx context.Context, c *client.Client, el int) error {
			_, err := c.Put(ctx, fmt.Sprintf("%s%010d", setPrefix, el), []byte(strconv.Itoa(el)))
			return err
		},
		page: func(ctx context.Context, c *client.Client, cursor string) ([]int, string, error) {
			p, err := c.Scan(ctx, client.ScanRequest{Prefix: setPrefix, Limit: 1000, Cursor: cursor})
			if err != nil {
				return nil, "", err
			}
			els := make([]int, len(p.Items))
			for i, it := range p.Items {
				if els[i], err = strconv.Atoi(string(it.Value)); err != nil {
					els[i] = -1 // an element nobody added: the checker reports it
				}
			}
			return els, p.Cursor, nil
		},
	}
}

func (w *setWorkload) step(ctx context.Context, wk *worker) history.Type {
	now := time.Now().UnixNano()
	if last := w.lastRead.Load(); now-last >= int64(w.every) && w.lastRead.CompareAndSwap(last, now) {
		return w.read(ctx, wk, wk.node(w.e), w.fprefix+"read")
	}
	i := wk.node(w.e)
	el := w.e.value()
	inv := w.e.rec.Invoke(wk.process, history.Op{F: w.fprefix + checker.FAdd, Element: history.Int(el), Node: w.e.names[i]})
	octx, cancel := w.e.opCtx(ctx)
	err := w.add(octx, w.e.clients[i], el)
	cancel()
	t := writeOutcome(err)
	w.e.rec.Complete(inv, t, func(op *history.Op) { op.Error = errText(err) })
	return t
}

// read reads the whole set through node i. Reads take longer than other
// operations as the set grows, so they get a timeout per page.
func (w *setWorkload) read(ctx context.Context, wk *worker, i int, f string) history.Type {
	inv := w.e.rec.Invoke(wk.process, history.Op{F: f, Node: w.e.names[i]})
	els := []int{}
	cursor := ""
	for {
		octx, cancel := w.e.opCtx(ctx)
		page, next, err := w.page(octx, w.e.clients[i], cursor)
		cancel()
		if err != nil {
			w.e.rec.Complete(inv, history.Fail, func(op *history.Op) { op.Error = errText(err) })
			return history.Fail
		}
		els = append(els, page...)
		if cursor = next; cursor == "" {
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
		for w.read(ctx, wk, i, w.fprefix+"final-read") != history.OK {
			if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
				return fmt.Errorf("%sset: no final read from %s: %w", w.fprefix, w.e.names[i], err)
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
