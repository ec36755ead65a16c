package checker

import (
	"fmt"

	"github.com/cairndb/cairn/jepsen/history"
)

// hist builds histories by hand: every event gets the next index and a time
// 10ns after the previous one, and completions copy the fields of their
// process's open invocation, as the Recorder does.
type hist struct {
	ops  []history.Op
	open map[int]history.Op
}

func newHist() *hist { return &hist{open: map[int]history.Op{}} }

func (h *hist) add(op history.Op) {
	op.Index = len(h.ops)
	op.Time = int64(len(h.ops)+1) * 10
	h.ops = append(h.ops, op)
}

func (h *hist) invoke(p int, op history.Op) *hist {
	if _, busy := h.open[p]; busy {
		panic(fmt.Sprintf("process %d is busy", p))
	}
	op.Process, op.Type = p, history.Invoke
	h.open[p] = op
	h.add(op)
	return h
}

func (h *hist) complete(p int, t history.Type, fill func(*history.Op)) *hist {
	inv, ok := h.open[p]
	if !ok {
		panic(fmt.Sprintf("process %d has nothing open", p))
	}
	delete(h.open, p)
	op := history.Op{Process: p, Type: t, F: inv.F, Key: inv.Key, Value: inv.Value, From: inv.From, Element: inv.Element, Node: inv.Node}
	if fill != nil {
		fill(&op)
	}
	h.add(op)
	return h
}

// Register invocations.
func (h *hist) get(p int, k string) *hist { return h.invoke(p, history.Op{F: FGet, Key: k}) }
func (h *hist) put(p int, k string, v int) *hist {
	return h.invoke(p, history.Op{F: FPut, Key: k, Value: history.Int(v)})
}
func (h *hist) del(p int, k string) *hist { return h.invoke(p, history.Op{F: FDelete, Key: k}) }
func (h *hist) cas(p int, k string, from, to int) *hist {
	return h.invoke(p, history.Op{F: FCas, Key: k, From: history.Int(from), Value: history.Int(to)})
}

// Completions.
func (h *hist) ok(p int) *hist { return h.complete(p, history.OK, nil) }
func (h *hist) info(p int) *hist {
	return h.complete(p, history.Info, func(o *history.Op) { o.Error = "timeout" })
}
func (h *hist) fail(p int, err string) *hist {
	return h.complete(p, history.Fail, func(o *history.Op) { o.Error = err })
}

// read completes an open get with v (nil: absent).
func (h *hist) read(p int, v *int) *hist {
	return h.complete(p, history.OK, func(o *history.Op) { o.Value = v })
}

// Sequential shorthands: invoke and complete at once.
func (h *hist) sPut(p int, k string, v int) *hist { return h.put(p, k, v).ok(p) }
func (h *hist) sGet(p int, k string, v *int) *hist {
	return h.get(p, k).read(p, v)
}
func (h *hist) sDel(p int, k string) *hist { return h.del(p, k).ok(p) }

// Set operations.
func (h *hist) addE(p, e int) *hist { return h.invoke(p, history.Op{F: FAdd, Element: history.Int(e)}) }
func (h *hist) readSet(p int, final bool, node string) *hist {
	f := FRead
	if final {
		f = FFinalRead
	}
	return h.invoke(p, history.Op{F: f, Node: node})
}
func (h *hist) elems(p int, es ...int) *hist {
	return h.complete(p, history.OK, func(o *history.Op) { o.Elements = es })
}

func (h *hist) nemesis(f, desc string) *hist {
	h.add(history.Op{Process: history.NemesisProcess, Type: history.Info, F: f, Desc: desc})
	return h
}

func iv(v int) *int { return history.Int(v) }
