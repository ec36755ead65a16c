package jepsen

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/jepsen/history"
)

// registerWorkload runs get / put / compare-and-set / delete on a few keys
// at a time. Each key takes a bounded number of operations and is then
// replaced by a fresh one, which keeps every key's history small enough to
// check. Written values are unique across the run, so a conditional put on
// the version read with value f succeeds exactly when the value is still f.
type registerWorkload struct {
	e      *env
	prefix string
	perKey int

	mu    sync.Mutex
	slots []registerSlot
	next  int
	used  []string
}

type registerSlot struct {
	key string
	ops int
}

func newRegister(e *env, active, perKey int) *registerWorkload {
	w := &registerWorkload{e: e, prefix: "jr/", perKey: perKey}
	for range active {
		w.slots = append(w.slots, registerSlot{key: w.newKey()})
	}
	return w
}

func (w *registerWorkload) newKey() string {
	k := w.prefix + strconv.Itoa(w.next)
	w.next++
	w.used = append(w.used, k)
	return k
}

// pick returns a key to operate on, retiring keys that had their share.
func (w *registerWorkload) pick(wk *worker) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := &w.slots[wk.rng.IntN(len(w.slots))]
	if s.ops >= w.perKey {
		*s = registerSlot{key: w.newKey()}
	}
	s.ops++
	return s.key
}

func (w *registerWorkload) step(ctx context.Context, wk *worker) history.Type {
	key := w.pick(wk)
	switch r := wk.rng.Float64(); {
	case r < 0.5:
		t, _, _ := w.get(ctx, wk, wk.node(w.e), key, "get")
		return t
	case r < 0.75:
		return w.put(ctx, wk, key)
	case r < 0.9:
		return w.cas(ctx, wk, key)
	default:
		return w.del(ctx, wk, key)
	}
}

// get reads key through node i and records it as f.
func (w *registerWorkload) get(ctx context.Context, wk *worker, i int, key, f string) (history.Type, *int, uint64) {
	inv := w.e.rec.Invoke(wk.process, history.Op{F: f, Key: key, Node: w.e.names[i]})
	octx, cancel := w.e.opCtx(ctx)
	b, version, err := w.e.clients[i].Get(octx, key)
	cancel()
	switch {
	case err == nil:
		v, perr := parseInt(b)
		if perr != nil {
			// Garbage: record it as a read of a value nobody wrote.
			w.e.rec.Complete(inv, history.OK, func(op *history.Op) {
				op.Value = history.Int(-1)
				op.Error = "unparsable value " + strconv.Quote(string(b))
			})
			return history.OK, nil, 0
		}
		w.e.rec.Complete(inv, history.OK, func(op *history.Op) { op.Value = v })
		return history.OK, v, version
	case errors.Is(err, client.ErrNotFound):
		w.e.rec.Complete(inv, history.OK, func(op *history.Op) { op.Value = nil })
		return history.OK, nil, 0
	default:
		// A read has no effect: a failed one is simply not an observation.
		w.e.rec.Complete(inv, history.Fail, func(op *history.Op) { op.Value = nil; op.Error = errText(err) })
		return history.Fail, nil, 0
	}
}

func (w *registerWorkload) put(ctx context.Context, wk *worker, key string) history.Type {
	i := wk.node(w.e)
	v := w.e.value()
	inv := w.e.rec.Invoke(wk.process, history.Op{F: "put", Key: key, Value: history.Int(v), Node: w.e.names[i]})
	octx, cancel := w.e.opCtx(ctx)
	_, err := w.e.clients[i].Put(octx, key, []byte(strconv.Itoa(v)))
	cancel()
	t := writeOutcome(err)
	w.e.rec.Complete(inv, t, func(op *history.Op) { op.Error = errText(err) })
	return t
}

// cas reads the key, then writes a new value on condition that the version
// is still the one read. It is recorded as a get followed by a cas whose
// invocation comes after the get's completion: the conditional write's
// effect lies inside the cas's interval.
func (w *registerWorkload) cas(ctx context.Context, wk *worker, key string) history.Type {
	i := wk.node(w.e)
	t, from, version := w.get(ctx, wk, i, key, "get")
	if t != history.OK || from == nil {
		return t // nothing to compare against; the get stands alone
	}
	v := w.e.value()
	inv := w.e.rec.Invoke(wk.process, history.Op{F: "cas", Key: key, From: from, Value: history.Int(v), Node: w.e.names[i]})
	octx, cancel := w.e.opCtx(ctx)
	_, err := w.e.clients[i].Put(octx, key, []byte(strconv.Itoa(v)), client.IfVersion(version))
	cancel()
	t = writeOutcome(err)
	w.e.rec.Complete(inv, t, func(op *history.Op) {
		op.Error = errText(err)
		if errors.Is(err, client.ErrVersionMismatch) {
			op.Error = "version_mismatch"
		}
	})
	return t
}

func (w *registerWorkload) del(ctx context.Context, wk *worker, key string) history.Type {
	i := wk.node(w.e)
	inv := w.e.rec.Invoke(wk.process, history.Op{F: "delete", Key: key, Node: w.e.names[i]})
	octx, cancel := w.e.opCtx(ctx)
	err := w.e.clients[i].Delete(octx, key)
	cancel()
	t := writeOutcome(err)
	if errors.Is(err, client.ErrNotFound) {
		t = history.OK // absent before, absent after: a delete of nothing
	}
	w.e.rec.Complete(inv, t, func(op *history.Op) { op.Error = errText(err) })
	return t
}

// final reads every key the run used through every node, after faults
// are healed: each read must see the key's last state.
func (w *registerWorkload) final(ctx context.Context) error {
	w.mu.Lock()
	keys := append([]string(nil), w.used...)
	w.mu.Unlock()
	var failed int
	for i := range w.e.clients {
		wk := &worker{process: w.e.process()}
		for _, k := range keys {
			if t, _, _ := w.get(ctx, wk, i, k, "get"); t != history.OK {
				failed++
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("register: %d of %d final reads failed", failed, len(keys)*len(w.e.clients))
	}
	return nil
}
