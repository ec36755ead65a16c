package node

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/shard"
)

// leaderCounts returns how many data shards each running node of tc leads.
func (tc *testCluster) leaderCounts(shards int) map[string]int {
	counts := map[string]int{}
	for name := range tc.nodes {
		counts[name] = 0
	}
	for id := fsm.ShardID(1); id <= fsm.ShardID(shards); id++ {
		for name, n := range tc.nodes {
			if s := n.localShard(id); s != nil {
				if _, _, self := s.Leader(); self {
					counts[name]++
				}
			}
		}
	}
	return counts
}

func spread(counts map[string]int) int {
	vals := slices.Collect(maps.Values(counts))
	return slices.Max(vals) - slices.Min(vals)
}

func (tc *testCluster) balanceMoves() uint64 {
	var sum uint64
	for _, n := range tc.nodes {
		sum += n.balancer.moves.Load()
	}
	return sum
}

// Data shard leaderships spread over the nodes by themselves: piled on one
// node, and again after a node restarts (leading nothing), seven shards on
// three nodes end three, two and two, and stay there (a node leading one
// more than another does not hand it over, or they would pass it back and
// forth).
func TestLeaderBalance(t *testing.T) {
	const shards, interval = 7, time.Second
	tc := startCluster(t, 3, shards, func(c *Config) { c.LeaderBalanceInterval = interval })
	waitFor(t, "placement realized", 60*time.Second, tc.realized)
	n1 := tc.nodes["n1"]

	// Hand every data shard to n1, with the balancers held meanwhile: on a
	// busy machine a transfer can take longer than the interval, and a
	// balancer would start spreading the pile before it is complete.
	hold := func(until time.Time) {
		for _, n := range tc.nodes {
			n.balancer.mu.Lock()
			n.balancer.lastMove = until
			n.balancer.mu.Unlock()
		}
	}
	hold(time.Now().Add(time.Hour))
	for id := fsm.ShardID(1); id <= shards; id++ {
		waitFor(t, fmt.Sprintf("n1 leads shard %v", id), 30*time.Second, func() error {
			for _, n := range tc.nodes {
				s := n.localShard(id)
				if _, _, self := s.Leader(); !self {
					continue
				}
				if n == n1 {
					return nil
				}
				return s.TransferLeadership(t.Context(), shard.Replica{ID: "n1", Addr: n1.RaftAddr()})
			}
			return fmt.Errorf("no leader of %v", id)
		})
	}
	// A shard can be between leaders for a moment (the tests' election
	// timeout is 150 ms).
	waitFor(t, "leaders piled on n1", 10*time.Second, func() error {
		if c := tc.leaderCounts(shards); c["n1"] < shards-1 {
			return fmt.Errorf("leaders after handing every shard to n1: %v", c)
		}
		return nil
	})
	hold(time.Time{})
	balanced := func() error {
		if c := tc.leaderCounts(shards); spread(c) > 1 {
			return fmt.Errorf("leaders per node %v", c)
		}
		return nil
	}
	waitFor(t, "leaders spread from n1", 60*time.Second, balanced)
	// Settled: no more moves over three intervals.
	moves := tc.balanceMoves()
	if moves < 3 {
		t.Fatalf("%d balancing moves from %d shards on n1, want at least 3", moves, shards)
	}
	deadline := time.Now().Add(3 * interval)
	for time.Now().Before(deadline) {
		if err := balanced(); err != nil {
			t.Fatalf("balance lost without a fault: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // sampling the counts over the period
	}
	if m := tc.balanceMoves(); m != moves {
		t.Fatalf("%d more moves once balanced", m-moves)
	}

	// A node that restarts leads nothing until leaderships come back to it.
	victim := "n2"
	cfg := tc.cfgs[victim]
	tc.nodes[victim].Close()
	delete(tc.nodes, victim)
	waitFor(t, "n1 and n3 lead every shard", 60*time.Second, func() error {
		if c := tc.leaderCounts(shards); c["n1"]+c["n3"] != shards {
			return fmt.Errorf("leaders per node %v", c)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	n, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	tc.nodes[victim] = n
	tc.waitReady()
	waitFor(t, "leaders spread to the restarted node", 60*time.Second, balanced)
}
