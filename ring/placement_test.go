package ring

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func nodesN(n int) []NodeID {
	ns := make([]NodeID, n)
	for i := range ns {
		ns[i] = NodeID(fmt.Sprintf("node-%d", i+1))
	}
	return ns
}

// checkPlacement asserts every shard has min(r, nodes) distinct live
// replicas and node loads differ by at most one.
func checkPlacement(t *testing.T, p Placement, shards []ShardID, nodes []NodeID, r int) {
	t.Helper()
	want := min(r, len(nodes))
	load := map[NodeID]int{}
	for _, id := range shards {
		reps := p.Replicas[id]
		if len(reps) != want {
			t.Fatalf("%v has %d replicas, want %d: %v", id, len(reps), want, reps)
		}
		for i, n := range reps {
			if !slices.Contains(nodes, n) {
				t.Fatalf("%v placed on unknown node %s", id, n)
			}
			if i > 0 && reps[i-1] == n {
				t.Fatalf("%v placed twice on %s", id, n)
			}
			load[n]++
		}
	}
	lo, hi := 1<<30, 0
	for _, n := range nodes {
		lo, hi = min(lo, load[n]), max(hi, load[n])
	}
	if hi-lo > 1 {
		t.Fatalf("unbalanced: loads from %d to %d: %v", lo, hi, load)
	}
}

// moves lists (shard, from-node) replicas present in a but not in b, and the
// nodes that gained them.
func moves(a, b Placement) (lost map[NodeID]int, gained map[NodeID]int) {
	lost, gained = map[NodeID]int{}, map[NodeID]int{}
	for id, reps := range b.Replicas {
		for _, n := range reps {
			if !slices.Contains(a.Replicas[id], n) {
				gained[n]++
			}
		}
		for _, n := range a.Replicas[id] {
			if !slices.Contains(reps, n) {
				lost[n]++
			}
		}
	}
	return lost, gained
}

func TestPlacementBalancedAndMinimal(t *testing.T) {
	for _, tc := range []struct{ shards, nodes, r int }{
		{1, 1, 3}, {4, 3, 3}, {16, 3, 3}, {16, 5, 3}, {17, 7, 3}, {64, 9, 3}, {10, 4, 5},
	} {
		t.Run(fmt.Sprintf("shards=%d,nodes=%d,r=%d", tc.shards, tc.nodes, tc.r), func(t *testing.T) {
			shards, nodes := shardsN(tc.shards), nodesN(tc.nodes)
			p, err := Place(shards, nodes, tc.r)
			if err != nil {
				t.Fatal(err)
			}
			checkPlacement(t, p, shards, nodes, tc.r)
			reversed := slices.Clone(nodes)
			slices.Reverse(reversed)
			again, _ := Place(shards, reversed, tc.r)
			if fmt.Sprint(again.Replicas) != fmt.Sprint(p.Replicas) {
				t.Fatal("placement depends on the order nodes are listed in")
			}
			if same, _ := p.Rebalance(nodes, tc.r); fmt.Sprint(same.Replicas) != fmt.Sprint(p.Replicas) || same.Epoch != p.Epoch+1 {
				t.Fatal("rebalancing a balanced placement moved replicas")
			}

			// A node joins: replicas move only onto it, and only enough of
			// them to even the load.
			grown := append(slices.Clone(nodes), "node-new")
			q, err := p.Rebalance(grown, tc.r)
			if err != nil {
				t.Fatal(err)
			}
			checkPlacement(t, q, shards, grown, tc.r)
			lost, gained := moves(p, q)
			for n, k := range gained {
				if n != "node-new" {
					t.Fatalf("%d replicas moved onto existing node %s", k, n)
				}
			}
			total := min(tc.r, len(grown)) * tc.shards
			if max := (total + len(grown) - 1) / len(grown); gained["node-new"] > max {
				t.Fatalf("%d replicas moved to the new node, at most %d needed", gained["node-new"], max)
			}
			for n, k := range lost {
				if gained["node-new"] == 0 || k > gained["node-new"] {
					t.Fatalf("%s lost %d replicas, more than the new node gained", n, k)
				}
			}

			// A node leaves: only its replicas move.
			if tc.nodes < 2 {
				return
			}
			gone := nodes[0]
			shrunk := nodes[1:]
			s, err := p.Rebalance(shrunk, tc.r)
			if err != nil {
				t.Fatal(err)
			}
			checkPlacement(t, s, shards, shrunk, tc.r)
			// Its replicas must move; beyond them, only the few moves that
			// restore balance when a shard's replicas cannot all go to the
			// least-loaded nodes (a node holds a shard at most once).
			lost, _ = moves(p, s)
			extra := 0
			for n, k := range lost {
				if n != gone {
					extra += k
				}
			}
			t.Logf("node leaves: %d replicas re-placed, %d balancing moves", lost[gone], extra)
			if extra > len(shrunk) {
				t.Fatalf("%d moves beyond the departed node's %d replicas (at most %d expected)", extra, lost[gone], len(shrunk))
			}
		})
	}
}

func TestPlacementRejectsBadInput(t *testing.T) {
	for name, f := range map[string]func() error{
		"no nodes":  func() error { _, err := Place(shardsN(2), nil, 3); return err },
		"r=0":       func() error { _, err := Place(shardsN(2), nodesN(3), 0); return err },
		"duplicate": func() error { _, err := Place(shardsN(2), []NodeID{"a", "a"}, 1); return err },
		"empty":     func() error { _, err := Place(shardsN(2), []NodeID{""}, 1); return err },
	} {
		if err := f(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
}

// TestPlacementUnderChurn applies a seeded sequence of joins and departures
// and checks every placement along the way.
func TestPlacementUnderChurn(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	shards := shardsN(24)
	nodes := nodesN(4)
	p, err := Place(shards, nodes, 3)
	if err != nil {
		t.Fatal(err)
	}
	next := 5
	for step := range 200 {
		var q Placement
		if len(nodes) > 1 && rng.IntN(2) == 0 {
			i := rng.IntN(len(nodes))
			nodes = slices.Delete(slices.Clone(nodes), i, i+1)
			if q, err = p.Rebalance(nodes, 3); err != nil {
				t.Fatal(err)
			}
		} else {
			joiner := NodeID(fmt.Sprintf("node-%d", next))
			next++
			nodes = append(slices.Clone(nodes), joiner)
			if q, err = p.Rebalance(nodes, 3); err != nil {
				t.Fatal(err)
			}
			if _, gained := moves(p, q); len(gained) > 1 || (len(gained) == 1 && gained[joiner] == 0) {
				t.Fatalf("step %d: a join moved replicas onto existing nodes: %v", step, gained)
			}
		}
		checkPlacement(t, q, shards, nodes, 3)
		if q.Epoch != p.Epoch+1 {
			t.Fatalf("step %d: epoch %d after %d", step, q.Epoch, p.Epoch)
		}
		p = q
	}
}
