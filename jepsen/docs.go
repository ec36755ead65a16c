package jepsen

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/jepsen/checker"
	"github.com/cairndb/cairn/jepsen/history"
)

// Document workloads: the set workload on documents (each element a
// document of its own, read back with a paged query of the collection),
// and concurrent inserts of one value into a unique index.

const (
	docSetColl  = "jepsen_set"
	docSetIndex = "by_el"
	docSetF     = "doc-" // put before the document set's event names
	uniqueColl  = "jepsen_unique"
	uniqueIndex = "by_value"
)

// newDocSet is the set workload on documents: each element is a document
// (_id from the element), the set is read with paged queries of the
// collection, and the events are named "doc-add", "doc-read" and
// "doc-final-read" so that they stay apart from the key set's. Reads take
// turns between two plans: a scan of the collection, and the collection
// in element order through an index on el (the index's entries, then the
// documents they name, every read of a shard after its first in a query
// served without another leadership check). The plan rides in the
// cursor, so a read keeps its plan from page to page.
func newDocSet(e *env, readEvery time.Duration) *setWorkload {
	var reads atomic.Uint64
	return &setWorkload{e: e, fprefix: docSetF, every: readEvery,
		add: func(ctx context.Context, c *client.Client, el int) error {
			_, _, err := c.InsertDoc(ctx, docSetColl, map[string]any{"_id": fmt.Sprintf("e%010d", el), "el": el})
			return err
		},
		page: func(ctx context.Context, c *client.Client, cursor string) ([]int, string, error) {
			plan := cursor
			if plan == "" {
				plan = "scan/"
				if reads.Add(1)%2 == 0 {
					plan = "index/"
				}
			} else if i := strings.IndexByte(cursor, '/'); i >= 0 {
				plan, cursor = cursor[:i+1], cursor[i+1:]
			}
			q := client.FindRequest{Cursor: cursor, Fields: []string{"el"}}
			if plan == "index/" {
				q.Sort, q.Limit, q.Hint = []string{"el"}, 500, "_sort:"+docSetIndex
			}
			docs, next, err := c.FindDocs(ctx, docSetColl, q)
			if err != nil {
				return nil, "", err
			}
			els := make([]int, len(docs))
			for i, d := range docs {
				if els[i], err = strconv.Atoi(fmt.Sprint(d["el"])); err != nil {
					els[i] = -1 // an element nobody added: the checker reports it
				}
			}
			if next != "" {
				next = plan + next
			}
			return els, next, nil
		},
	}
}

// setupDocSet creates the document set's index on el.
func setupDocSet(ctx context.Context, e *env) error {
	for {
		octx, cancel := e.opCtx(ctx)
		_, err := e.clients[0].CreateIndex(octx, docSetColl, docSetIndex, "el")
		cancel()
		if err == nil {
			return nil
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return fmt.Errorf("docset: create the index: %w", err)
		}
	}
}

// checkDocSet runs the set checker on the document set's events alone.
func checkDocSet(ops []history.Op) checker.SetResult {
	var mine []history.Op
	for _, op := range ops {
		if strings.HasPrefix(op.F, docSetF) {
			op.F = strings.TrimPrefix(op.F, docSetF)
			mine = append(mine, op)
		}
	}
	return checker.CheckSet(mine)
}

// uniqueWorkload: every client inserts documents whose value is the
// current round's (a new round every Interval/4), under _ids of its own,
// into a collection with a unique index on the value; at most one insert
// per value may be acknowledged and visible.
type uniqueWorkload struct {
	e     *env
	start time.Time
	round time.Duration
}

func newUnique(e *env, round time.Duration) *uniqueWorkload {
	return &uniqueWorkload{e: e, start: time.Now(), round: round}
}

func (w *uniqueWorkload) setup(ctx context.Context) error {
	for {
		octx, cancel := w.e.opCtx(ctx)
		_, err := w.e.clients[0].CreateUniqueIndex(octx, uniqueColl, uniqueIndex, "v")
		cancel()
		if err == nil {
			return nil
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return fmt.Errorf("unique: create the index: %w", err)
		}
	}
}

func (w *uniqueWorkload) step(ctx context.Context, wk *worker) history.Type {
	i := wk.node(w.e)
	v := int(time.Since(w.start) / w.round)
	id := w.e.value()
	inv := w.e.rec.Invoke(wk.process, history.Op{F: "unique-insert", Element: history.Int(id), Value: history.Int(v), Node: w.e.names[i]})
	octx, cancel := w.e.opCtx(ctx)
	_, _, err := w.e.clients[i].InsertDoc(octx, uniqueColl, map[string]any{"_id": fmt.Sprintf("u%010d", id), "v": v})
	cancel()
	t := writeOutcome(err)
	if errors.Is(err, client.ErrUniqueViolation) {
		t = history.Fail
	}
	w.e.rec.Complete(inv, t, func(op *history.Op) { op.Error = errText(err) })
	return t
}

// final reads the collection through every node.
func (w *uniqueWorkload) final(ctx context.Context) error {
	for i := range w.e.clients {
		for {
			wk := &worker{process: w.e.process()}
			inv := w.e.rec.Invoke(wk.process, history.Op{F: "unique-final-read", Node: w.e.names[i]})
			var els, vals []int
			cursor := ""
			var err error
			for {
				octx, cancel := w.e.opCtx(ctx)
				var docs []client.Doc
				docs, cursor, err = w.e.clients[i].FindDocs(octx, uniqueColl, client.FindRequest{Cursor: cursor, Hint: "_scan"})
				cancel()
				if err != nil {
					break
				}
				for _, d := range docs {
					id, _ := strconv.Atoi(strings.TrimPrefix(fmt.Sprint(d["_id"]), "u"))
					v, _ := strconv.Atoi(fmt.Sprint(d["v"]))
					els, vals = append(els, id), append(vals, v)
				}
				if cursor == "" {
					break
				}
			}
			if err == nil {
				w.e.rec.Complete(inv, history.OK, func(op *history.Op) { op.Elements, op.Values = els, vals })
				break
			}
			w.e.rec.Complete(inv, history.Fail, func(op *history.Op) { op.Error = errText(err) })
			if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
				return fmt.Errorf("unique: no final read from %s: %w", w.e.names[i], err)
			}
		}
	}
	return nil
}

// UniqueResult: per value, the inserts acknowledged and the documents the
// final reads saw.
type UniqueResult struct {
	Valid    bool     `json:"valid"`
	Values   int      `json:"values"`   // values tried
	Inserts  int      `json:"inserts"`  // insert attempts
	Acked    int      `json:"acked"`    // acknowledged
	Visible  int      `json:"visible"`  // documents in the final reads (of the first node)
	Problems []string `json:"problems"` // what broke the rule
}

func (r UniqueResult) String() string {
	if r.Valid {
		return fmt.Sprintf("unique: valid — %d values, %d inserts, %d acknowledged, %d visible, never two per value", r.Values, r.Inserts, r.Acked, r.Visible)
	}
	return fmt.Sprintf("unique: INVALID — %s", strings.Join(r.Problems, "; "))
}

// checkUnique: for every value at most one insert acknowledged and at most
// one document visible (on every node); an acknowledged insert's document
// is the visible one; a visible document's insert did not fail.
func checkUnique(ops []history.Op) UniqueResult {
	res := UniqueResult{Valid: true}
	pairs, err := history.Pairs(ops)
	if err != nil {
		return UniqueResult{Problems: []string{err.Error()}}
	}
	outcome := map[int]history.Type{} // insert id → outcome
	acked := map[int][]int{}          // value → acknowledged ids
	values := map[int]bool{}
	var finals [][2][]int
	for _, p := range pairs {
		switch p.Invoke.F {
		case "unique-insert":
			if p.Invoke.Element == nil || p.Invoke.Value == nil {
				continue
			}
			res.Inserts++
			id, v := *p.Invoke.Element, *p.Invoke.Value
			values[v] = true
			outcome[id] = p.Outcome()
			if p.Outcome() == history.OK {
				res.Acked++
				acked[v] = append(acked[v], id)
			}
		case "unique-final-read":
			if p.Outcome() == history.OK {
				finals = append(finals, [2][]int{p.Completion.Elements, p.Completion.Values})
			}
		}
	}
	res.Values = len(values)
	problem := func(f string, a ...any) {
		res.Valid = false
		if len(res.Problems) < 20 {
			res.Problems = append(res.Problems, fmt.Sprintf(f, a...))
		}
	}
	for v, ids := range acked {
		if len(ids) > 1 {
			sort.Ints(ids)
			problem("value %d: %d inserts acknowledged (%v)", v, len(ids), ids)
		}
	}
	if len(finals) == 0 {
		problem("no final read")
	}
	for n, f := range finals {
		visible := map[int][]int{}
		for i, id := range f[0] {
			visible[f[1][i]] = append(visible[f[1][i]], id)
			if outcome[id] == history.Fail {
				problem("final read %d: document u%010d of a failed insert is visible", n, id)
			}
		}
		if n == 0 {
			res.Visible = len(f[0])
		}
		for v, ids := range visible {
			if len(ids) > 1 {
				problem("final read %d: value %d held by %d documents %v", n, v, len(ids), ids)
			}
		}
		for v, ids := range acked {
			if got := visible[v]; len(got) != 1 || got[0] != ids[0] {
				problem("final read %d: value %d acknowledged for u%010d, visible %v", n, v, ids[0], got)
			}
		}
	}
	return res
}
