package node

import (
	"context"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairndb/cairn/shard"
)

// leaderBalancer spreads the leadership of data shards over the nodes that
// hold them. A leader does a shard's writes, its linearizable reads and
// its replication, so with leaders bunched on a few nodes the others idle
// while those saturate. Raft leaves the spread to chance: whoever wins an
// election, and a node that restarts leads nothing until one happens.
//
// Each node acts only on the shards it leads: once the leader counts it
// sees (from its own replicas, what peers answered and gossip) have held
// still for the interval, and it leads at least two data shards more than
// the node of another voter of such a shard, it hands that shard to the
// voter leading the fewest. A move takes one leadership from the most
// loaded node to a less loaded one, so the spread only narrows; at most
// one move per node per interval, and the counts must have settled again
// before the next, which keeps nodes acting on stale counts from chasing
// each other. The meta group is not counted: it carries little load.
type leaderBalancer struct {
	mu       sync.Mutex
	counts   map[string]int // leaders per raft address, as reconcile last saw them
	since    time.Time      // when counts last changed
	lastMove time.Time
	moves    atomic.Uint64 // transfers started
}

// observe records the leader counts of one reconcile pass (nil when some
// data shard's leader is unknown): a change restarts the wait for them to
// hold still.
func (b *leaderBalancer) observe(counts map[string]int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if counts == nil || !maps.Equal(counts, b.counts) {
		b.counts, b.since = counts, time.Now()
	}
}

// leaderCounts returns how many data shards lead on each raft address as
// far as this node knows, or nil if it knows no leader for some shard (an
// election may be under way).
func (n *Node) leaderCounts(v *view) map[string]int {
	counts := map[string]int{}
	for _, id := range v.ring.Shards() {
		addr := n.leaderAddr(id)
		if addr == "" {
			return nil
		}
		counts[addr]++
	}
	return counts
}

// balanceStep is the last step of convergeStep for a data shard s this node
// leads whose membership matches the placement. It decides on the counts
// reconcile observed last.
func (n *Node) balanceStep(ctx context.Context, s *shard.Shard) error {
	interval := n.cfg.LeaderBalanceInterval
	if interval <= 0 || s.ID() == MetaShard {
		return nil
	}
	b := &n.balancer
	b.mu.Lock()
	now := time.Now()
	if b.counts == nil || now.Sub(b.since) < interval || now.Sub(b.lastMove) < interval {
		b.mu.Unlock()
		return nil
	}
	alive := n.aliveNodes()
	mine := b.counts[n.raftAddr]
	var to shard.Replica
	fewest := mine - 1 // a move needs a node leading at most mine-2
	for _, r := range s.Status().Replicas {
		if !r.Voter || r.ID == n.cfg.Name || !alive[r.ID] {
			continue
		}
		if c := b.counts[r.Addr]; c < fewest {
			to, fewest = r, c
		}
	}
	if to.ID == "" {
		b.mu.Unlock()
		return nil
	}
	b.lastMove, b.since = now, now
	b.moves.Add(1)
	b.mu.Unlock()
	n.logger.Info("balancing leaders: handing a shard to a node that leads fewer",
		"shard", uint64(s.ID()), "to", to.ID, "leads", mine, "to_leads", fewest)
	return s.TransferLeadership(ctx, to)
}
