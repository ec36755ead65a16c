package elle

import (
	"cmp"
	"math/bits"
	"slices"
)

// edgeKind is a set of reasons one transaction precedes another.
type edgeKind uint8

const (
	kindWW edgeKind = 1 << iota
	kindWR
	kindRW
	kindProcess
	kindRealtime

	kindData = kindWW | kindWR | kindRW
	kindAll  = kindData | kindProcess | kindRealtime
)

func (k edgeKind) String() string {
	switch k {
	case kindWW:
		return "ww"
	case kindWR:
		return "wr"
	case kindRW:
		return "rw"
	case kindProcess:
		return "process"
	case kindRealtime:
		return "realtime"
	}
	return "mixed"
}

// each calls f for every single kind in the set, lowest bit first.
func (k edgeKind) each(f func(edgeKind)) {
	for k != 0 {
		bit := edgeKind(1) << bits.TrailingZeros8(uint8(k))
		f(bit)
		k &^= bit
	}
}

// graph is the dependency graph over transactions, in compressed sparse
// row form once built: the edges leaving node v are to[start[v]:start[v+1]],
// sorted by target, each with the set of kinds relating the pair.
type graph struct {
	n       int
	pending []rawEdge
	start   []int32
	to      []int32
	kinds   []edgeKind
}

type rawEdge struct {
	from, to int32
	kind     edgeKind
}

func newGraph(n int) *graph { return &graph{n: n} }

// add records that from precedes to. Self edges say nothing and are dropped.
func (g *graph) add(from, to int32, k edgeKind) {
	if from == to {
		return
	}
	g.pending = append(g.pending, rawEdge{from, to, k})
}

// build turns the recorded edges into the compressed form, merging
// duplicates. A counting sort by source keeps it linear apart from the
// small per-node sorts.
func (g *graph) build() {
	g.start = make([]int32, g.n+1)
	for _, e := range g.pending {
		g.start[e.from+1]++
	}
	for v := range g.n {
		g.start[v+1] += g.start[v]
	}
	sorted := make([]rawEdge, len(g.pending))
	next := slices.Clone(g.start[:g.n])
	for _, e := range g.pending {
		sorted[next[e.from]] = e
		next[e.from]++
	}
	g.pending = nil

	g.to = make([]int32, 0, len(sorted))
	g.kinds = make([]edgeKind, 0, len(sorted))
	newStart := make([]int32, g.n+1)
	for v := range g.n {
		out := sorted[g.start[v]:g.start[v+1]]
		slices.SortFunc(out, func(a, b rawEdge) int { return cmp.Compare(a.to, b.to) })
		for i, e := range out {
			if i > 0 && out[i-1].to == e.to {
				g.kinds[len(g.kinds)-1] |= e.kind
				continue
			}
			g.to = append(g.to, e.to)
			g.kinds = append(g.kinds, e.kind)
		}
		newStart[v+1] = int32(len(g.to))
	}
	g.start = newStart
}

// edges returns the number of distinct ordered pairs.
func (g *graph) edges() int { return len(g.to) }

// components returns the strongly connected components with more than one
// node, found with Tarjan's algorithm run on an explicit stack so deep
// graphs cannot overflow the goroutine stack. Each component is sorted.
func (g *graph) components() [][]int32 {
	const unvisited = -1
	index := make([]int32, g.n)
	low := make([]int32, g.n)
	onStack := make([]bool, g.n)
	for i := range index {
		index[i] = unvisited
	}
	type frame struct {
		v    int32
		edge int32 // next edge of v to look at
	}
	var (
		counter int32
		stack   []int32
		calls   []frame
		out     [][]int32
	)
	visit := func(v int32) {
		index[v], low[v] = counter, counter
		counter++
		stack = append(stack, v)
		onStack[v] = true
		calls = append(calls, frame{v, g.start[v]})
	}
	for root := range int32(g.n) {
		if index[root] != unvisited {
			continue
		}
		visit(root)
		for len(calls) > 0 {
			top := &calls[len(calls)-1]
			v := top.v
			if top.edge < g.start[v+1] {
				w := g.to[top.edge]
				top.edge++
				if index[w] == unvisited {
					visit(w)
				} else if onStack[w] {
					low[v] = min(low[v], index[w])
				}
				continue
			}
			calls = calls[:len(calls)-1]
			if len(calls) > 0 {
				parent := calls[len(calls)-1].v
				low[parent] = min(low[parent], low[v])
			}
			if low[v] != index[v] {
				continue
			}
			i := len(stack) - 1
			for stack[i] != v {
				i--
			}
			comp := stack[i:]
			for _, w := range comp {
				onStack[w] = false
			}
			if len(comp) > 1 {
				c := slices.Clone(comp)
				slices.Sort(c)
				out = append(out, c)
			}
			stack = stack[:i]
		}
	}
	return out
}
