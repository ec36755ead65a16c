package elle

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// A cycle search walks the graph with a small state recording what the
// path so far is made of, so that it can insist on, say, exactly one rw
// edge. The state packs the number of rw edges (0, 1, 2 or more), whether a
// wr edge was used and whether a process or real-time edge was used.
const numStates = 12

type searchState uint8

func (s searchState) rw() int     { return int(s) % 3 }
func (s searchState) wr() bool    { return (s/3)%2 == 1 }
func (s searchState) extra() bool { return s/6 == 1 }

func (s searchState) advance(k edgeKind) searchState {
	rw, wr, extra := s.rw(), s.wr(), s.extra()
	switch k {
	case kindRW:
		rw = min(rw+1, 2)
	case kindWR:
		wr = true
	case kindProcess, kindRealtime:
		extra = true
	}
	out := searchState(rw)
	if wr {
		out += 3
	}
	if extra {
		out += 6
	}
	return out
}

// cycleType names a cycle made of the given mix of edges.
func cycleType(rw int, wr, extra bool, suffix string) AnomalyType {
	var t AnomalyType
	switch {
	case rw == 0 && !wr:
		t = G0
	case rw == 0:
		t = G1c
	case rw == 1:
		t = GSingle
	default:
		t = G2Item
	}
	if extra {
		t += AnomalyType(suffix)
	}
	return t
}

// target is one type of cycle to look for. The search starts with an edge
// of a required kind (so the cycle has at least one), follows only allowed
// kinds, and gives up on paths with more than maxRW rw edges.
type target struct {
	want     AnomalyType // "" accepts any cycle
	allowed  edgeKind
	required edgeKind
	maxRW    int
}

// step is one edge of a cycle, with the single kind the search used.
type step struct {
	from, to int32
	kind     edgeKind
}

// targets lists the cycle types to look for in each component, most
// serious first, then the same types needing the model's extra edges.
func (c *checker) targets() []target {
	ts := []target{
		{G0, kindWW, kindWW, 0},
		{G1c, kindWW | kindWR, kindWR, 0},
		{GSingle, kindData, kindRW, 1},
		{G2Item, kindData, kindRW, 2},
	}
	extra, suffix := c.opts.Model.extraEdges()
	if extra == 0 {
		return ts
	}
	for _, t := range ts[:4] {
		ts = append(ts, target{t.want + AnomalyType(suffix), t.allowed | extra, extra, t.maxRW})
	}
	return ts
}

// findCycles reports, for every strongly connected component, one cycle
// of each type it can find within the search budget, and at least one
// cycle in any case.
func (c *checker) findCycles(comps [][]int32) {
	if len(comps) == 0 {
		return
	}
	compOf := make([]int32, c.g.n)
	local := make([]int32, c.g.n)
	for i := range compOf {
		compOf[i] = -1
	}
	extra, suffix := c.opts.Model.extraEdges()
	targets := c.targets()
	for id, comp := range comps {
		for i, v := range comp {
			compOf[v], local[v] = int32(id), int32(i)
		}
		s := &searcher{
			g: c.g, comp: comp, id: int32(id), compOf: compOf, local: local, suffix: suffix,
			stamp:  make([]uint32, len(comp)*numStates),
			parent: make([]int32, len(comp)*numStates),
			via:    make([]edgeKind, len(comp)*numStates),
		}
		found := false
		for _, t := range targets {
			if cyc := s.find(t, c.opts.SearchBudget); cyc != nil {
				c.reportCycle(t.want, cyc)
				found = true
			}
		}
		if !found {
			// Budgets ran out: settle for any cycle. A plain search in a
			// strongly connected component always finds one.
			anyCycle := target{allowed: kindData | extra, required: kindData | extra, maxRW: 2}
			if cyc := s.find(anyCycle, math.MaxInt); cyc != nil {
				c.reportCycle(s.classify(cyc), cyc)
			}
		}
	}
}

// searcher looks for cycles inside one component. Search nodes are
// (transaction, state) pairs, numbered local index × numStates + state.
type searcher struct {
	g      *graph
	comp   []int32
	id     int32
	compOf []int32
	local  []int32
	suffix string

	gen    uint32
	stamp  []uint32 // stamp[n] == gen: n was reached in the current search
	parent []int32
	via    []edgeKind
	queue  []int32
}

// find returns a simple cycle of type t.want, or nil if none turned up
// within budget visited search nodes.
func (s *searcher) find(t target, budget int) []step {
	for _, u := range s.comp {
		for e := s.g.start[u]; e < s.g.start[u+1]; e++ {
			v := s.g.to[e]
			if s.compOf[v] != s.id {
				continue
			}
			for _, k := range kindList(s.g.kinds[e] & t.required) {
				first := step{u, v, k}
				start := searchState(0).advance(k)
				if start.rw() > t.maxRW {
					continue
				}
				path, spent := s.path(v, start, u, t, budget)
				budget -= spent
				if path != nil {
					walk := append([]step{first}, path...)
					for _, cyc := range decompose(walk) {
						if t.want == "" || s.classify(cyc) == t.want {
							return cyc
						}
					}
				}
				if budget <= 0 {
					return nil
				}
			}
		}
	}
	return nil
}

// path finds a shortest path, in search nodes, from v in state start to u
// in a state whose cycle type is t.want. It returns the path and the number
// of search nodes it visited.
func (s *searcher) path(v int32, start searchState, u int32, t target, budget int) ([]step, int) {
	s.gen++
	s.queue = s.queue[:0]
	origin := s.local[v]*numStates + int32(start)
	s.stamp[origin] = s.gen
	s.parent[origin] = -1
	s.queue = append(s.queue, origin)
	for head := 0; head < len(s.queue); head++ {
		if head >= budget {
			return nil, head
		}
		cur := s.queue[head]
		x, st := s.comp[cur/numStates], searchState(cur%numStates)
		for e := s.g.start[x]; e < s.g.start[x+1]; e++ {
			y := s.g.to[e]
			if s.compOf[y] != s.id {
				continue
			}
			for _, k := range kindList(s.g.kinds[e] & t.allowed) {
				ns := st.advance(k)
				if ns.rw() > t.maxRW {
					continue
				}
				n := s.local[y]*numStates + int32(ns)
				if s.stamp[n] == s.gen {
					continue
				}
				s.stamp[n], s.parent[n], s.via[n] = s.gen, cur, k
				if y == u && (t.want == "" || cycleType(ns.rw(), ns.wr(), ns.extra(), s.suffix) == t.want) {
					return s.trace(n), head + 1
				}
				s.queue = append(s.queue, n)
			}
		}
	}
	return nil, len(s.queue)
}

// trace follows parents back from search node n to the origin.
func (s *searcher) trace(n int32) []step {
	var out []step
	for s.parent[n] >= 0 {
		p := s.parent[n]
		out = append(out, step{s.comp[p/numStates], s.comp[n/numStates], s.via[n]})
		n = p
	}
	slices.Reverse(out)
	return out
}

func (s *searcher) classify(cyc []step) AnomalyType {
	rw, wr, extra := 0, false, false
	for _, st := range cyc {
		switch st.kind {
		case kindRW:
			rw++
		case kindWR:
			wr = true
		case kindProcess, kindRealtime:
			extra = true
		}
	}
	return cycleType(rw, wr, extra, s.suffix)
}

// kindList splits a kind set into single kinds, data kinds first, so a
// pair related both by data and by time is explained by its data.
func kindList(k edgeKind) []edgeKind {
	var out []edgeKind
	k.each(func(one edgeKind) { out = append(out, one) })
	return out
}

// decompose splits a closed walk into simple cycles. The search state lets
// a walk pass a transaction twice; every walk is a union of simple cycles,
// which are cut out as soon as a transaction repeats.
func decompose(walk []step) [][]step {
	var (
		out   [][]step
		stack []step
		at    = map[int32]int{walk[0].from: 0} // transaction → stack index of the step leaving it
	)
	for _, st := range walk {
		stack = append(stack, st)
		i, seen := at[st.to]
		if !seen {
			at[st.to] = len(stack)
			continue
		}
		cyc := slices.Clone(stack[i:])
		for _, c := range cyc[1:] {
			delete(at, c.from)
		}
		stack = stack[:i]
		out = append(out, cyc)
	}
	return out
}

// reportCycle turns a cycle into an anomaly with its explanation.
func (c *checker) reportCycle(typ AnomalyType, cyc []step) {
	c.report(typ, func() Anomaly {
		// Start at the transaction invoked first so reports are stable.
		first := 0
		for i, st := range cyc {
			if st.from < cyc[first].from {
				first = i
			}
		}
		cyc = append(slices.Clone(cyc[first:]), cyc[:first]...)

		ids := make([]int32, len(cyc))
		ops := make([]Op, len(cyc))
		edges := make([]Edge, len(cyc))
		names := make([]string, 0, len(cyc)+1)
		var keys []string
		for i, st := range cyc {
			ids[i], ops[i] = st.from, c.opOf(st.from)
			names = append(names, c.name(st.from))
			why, key := c.explainEdge(st)
			edges[i] = Edge{From: c.name(st.from), To: c.name(st.to), Kind: st.kind.String(), Why: why}
			if key != "" && !slices.Contains(keys, key) {
				keys = append(keys, key)
			}
		}
		names = append(names, names[0])
		var b strings.Builder
		fmt.Fprintf(&b, "%s (%s).\n", typ, typ.Describe())
		fmt.Fprintf(&b, "Cycle: %s. Each edge means the first transaction must take effect before the second:\n", strings.Join(names, " < "))
		for _, e := range edges {
			fmt.Fprintf(&b, "  %s < %s (%s): %s\n", e.From, e.To, e.Kind, e.Why)
		}
		fmt.Fprintf(&b, "Following the edges leads from %s back to itself, so no order of these transactions satisfies them all.\n", names[0])
		b.WriteString(c.legend(keys, ids...))
		return Anomaly{Ops: ops, Cycle: edges, Explanation: b.String()}
	})
}

// explainEdge finds the evidence for one edge again: keeping it for every
// edge while building the graph would cost memory on every history, while
// only the few edges in reported cycles need it. It returns the evidence
// and the key it concerns ("" for process and real-time edges).
func (c *checker) explainEdge(st step) (string, string) {
	from, to := &c.txns[st.from], &c.txns[st.to]
	switch st.kind {
	case kindWW:
		for _, m := range from.mops {
			if m.F != FuncAppend {
				continue
			}
			k := c.keys[m.Key]
			p := k.position(m.Value)
			if p < 0 || p+1 >= len(k.order) {
				continue
			}
			next := k.order[p+1]
			if w, _ := k.writer(next); w == st.to {
				return fmt.Sprintf("%s appended %d to %s, and the next value in %s's order (%s) is %d, appended by %s",
					from.name, m.Value, m.Key, m.Key, c.orderExcerpt(k, p), next, to.name), m.Key
			}
		}
	case kindWR:
		for _, r := range c.externalReads(st.to) {
			if len(r.Read) == 0 {
				continue
			}
			last := r.Read[len(r.Read)-1]
			if w, _ := c.keys[r.Key].writer(last); w == st.from {
				return fmt.Sprintf("%s read %s = %s, whose last value %d was appended by %s",
					to.name, r.Key, shortList(r.Read), last, from.name), r.Key
			}
		}
	case kindRW:
		for _, r := range c.externalReads(st.from) {
			k := c.keys[r.Key]
			n := len(r.Read)
			if n >= len(k.order) || !isPrefix(r.Read, k.order) {
				continue
			}
			next := k.order[n]
			if w, _ := k.writer(next); w == st.to {
				if n == 0 {
					return fmt.Sprintf("%s read %s = [], missing %d, the first value of %s's order, which %s appended",
						from.name, r.Key, next, r.Key, to.name), r.Key
				}
				return fmt.Sprintf("%s read %s = %s, missing %d, which %s appended right after %d (%s's order: %s)",
					from.name, r.Key, shortList(r.Read), next, to.name, r.Read[n-1], r.Key, c.orderExcerpt(k, n-1)), r.Key
			}
		}
	case kindProcess:
		return fmt.Sprintf("process %d ran %s, then %s", from.process, from.name, to.name), ""
	case kindRealtime:
		return fmt.Sprintf("%s completed (%s) before %s was invoked (%s)",
			from.name, c.eventLabel(from.complete), to.name, c.eventLabel(to.invoke)), ""
	}
	return "no evidence found (a bug in the checker)", ""
}

// externalReads returns the reads of a committed transaction that were
// its first operation on their key, in transaction order.
func (c *checker) externalReads(t int32) []Mop {
	tx := &c.txns[t]
	if tx.status != OK {
		return nil
	}
	var out []Mop
	touched := make(map[string]bool)
	for _, m := range tx.mops {
		if m.F == FuncRead && !touched[m.Key] {
			out = append(out, m)
		}
		touched[m.Key] = true
	}
	return out
}

// orderExcerpt shows a key's order around position p, eliding the rest of
// long lists.
func (c *checker) orderExcerpt(k *keyInfo, p int) string {
	const around = 3
	lo, hi := max(0, p-around), min(len(k.order), p+around+2)
	s := shortList(k.order[lo:hi])
	if lo > 0 {
		s = "[... " + s[1:]
	}
	if hi < len(k.order) {
		s = s[:len(s)-1] + " ...]"
	}
	return s
}

// eventLabel names a history event for explanations.
func (c *checker) eventLabel(pos int) string {
	op := c.history[pos]
	label := fmt.Sprintf("event %d", pos)
	if c.useIndex {
		label = fmt.Sprintf("event index %d", op.Index)
	}
	if op.Time != 0 {
		label += fmt.Sprintf(", time %d", op.Time)
	}
	return label
}
