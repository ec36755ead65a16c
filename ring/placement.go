package ring

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// NodeID names a node.
type NodeID string

// Placement says which nodes hold each shard's replicas.
type Placement struct {
	Epoch    uint64
	Replicas map[ShardID][]NodeID // each list sorted
}

// Place computes a fresh placement of shards on nodes with r replicas each
// (fewer when there are fewer nodes).
func Place(shards []ShardID, nodes []NodeID, r int) (Placement, error) {
	empty := Placement{Replicas: map[ShardID][]NodeID{}}
	for _, id := range shards {
		empty.Replicas[id] = nil
	}
	return empty.Rebalance(nodes, r)
}

// Rebalance returns the placement for the given live nodes at the next epoch.
// It drops replicas on nodes that are gone, fills shards that have fewer than
// r replicas onto the least-loaded nodes, then moves replicas from the most
// to the least loaded nodes until loads differ by at most one. Nothing else
// moves. The result depends only on the inputs, so every node computes the
// same one.
func (p Placement) Rebalance(nodes []NodeID, r int) (Placement, error) {
	if r < 1 {
		return Placement{}, fmt.Errorf("%w: replication factor %d", ErrInvalid, r)
	}
	live := map[NodeID]bool{}
	for _, n := range nodes {
		if n == "" || live[n] {
			return Placement{}, fmt.Errorf("%w: node list has an empty or repeated name", ErrInvalid)
		}
		live[n] = true
	}
	if len(live) == 0 {
		return Placement{}, fmt.Errorf("%w: no nodes", ErrInvalid)
	}
	r = min(r, len(live))
	out := Placement{Epoch: p.Epoch + 1, Replicas: make(map[ShardID][]NodeID, len(p.Replicas))}
	load := map[NodeID]int{}
	for n := range live {
		load[n] = 0
	}
	shards := slices.Sorted(maps.Keys(p.Replicas))
	for _, id := range shards {
		var keep []NodeID
		for _, n := range p.Replicas[id] {
			if live[n] && !slices.Contains(keep, n) && len(keep) < r {
				keep = append(keep, n)
				load[n]++
			}
		}
		out.Replicas[id] = keep
	}
	// Fill under-replicated shards.
	for _, id := range shards {
		for len(out.Replicas[id]) < r {
			n := pick(load, id, func(n NodeID) bool { return !slices.Contains(out.Replicas[id], n) }, less)
			out.Replicas[id] = append(out.Replicas[id], n)
			load[n]++
		}
	}
	// Even out: move one replica at a time from a most-loaded node to a
	// least-loaded node that does not hold that shard yet.
	for {
		hi := pick(load, 0, func(NodeID) bool { return true }, more)
		lo := pick(load, 0, func(NodeID) bool { return true }, less)
		if load[hi]-load[lo] <= 1 || !move(out, load, hi) {
			break
		}
	}
	for _, id := range shards {
		slices.Sort(out.Replicas[id])
	}
	return out, nil
}

// move moves one replica off node from, onto the least-loaded node that can
// take it, choosing the shard deterministically. It reports whether it could.
func move(p Placement, load map[NodeID]int, from NodeID) bool {
	for _, id := range slices.Sorted(maps.Keys(p.Replicas)) {
		i := slices.Index(p.Replicas[id], from)
		if i < 0 {
			continue
		}
		to := pick(load, id, func(n NodeID) bool { return !slices.Contains(p.Replicas[id], n) }, less)
		if to == "" || load[from]-load[to] <= 1 {
			continue
		}
		p.Replicas[id][i] = to
		load[from]--
		load[to]++
		return true
	}
	return false
}

func less(a, b int) bool { return a < b }
func more(a, b int) bool { return a > b }

// pick returns the eligible node whose load is best by better, breaking ties
// by a hash of (node, shard) so that replicas of different shards spread
// over equally loaded nodes; "" if none is eligible.
func pick(load map[NodeID]int, shard ShardID, eligible func(NodeID) bool, better func(a, b int) bool) NodeID {
	var best NodeID
	var bestTie uint64
	for _, n := range slices.Sorted(maps.Keys(load)) {
		if !eligible(n) {
			continue
		}
		tie := tieBreak(n, shard)
		if best == "" || better(load[n], load[best]) || (load[n] == load[best] && cmp.Less(tie, bestTie)) {
			best, bestTie = n, tie
		}
	}
	return best
}

func tieBreak(n NodeID, shard ShardID) uint64 {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(shard))
	d := xxhash.New()
	d.Write(b[:])
	d.WriteString(string(n))
	return d.Sum64()
}
