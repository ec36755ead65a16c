package jepsen

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/cairndb/cairn/jepsen/cluster"
)

// ConvergenceResult says whether every shard's replicas reached the same
// state: the same hash at the same applied index.
type ConvergenceResult struct {
	Valid    bool              `json:"valid"`
	Shards   int               `json:"shards"`
	Replicas int               `json:"replicas"`
	Diverged []string          `json:"diverged,omitempty"` // shards whose replicas differ at one index
	Detail   map[string]string `json:"detail,omitempty"`   // shard → replica states at the last poll
	Problem  string            `json:"problem,omitempty"`
}

func (r ConvergenceResult) String() string {
	if r.Valid {
		return fmt.Sprintf("convergence: ok (%d shards, %d replicas: equal hashes at equal applied indexes)", r.Shards, r.Replicas)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "convergence: FAILED: %s", r.Problem)
	for _, id := range slices.Sorted(maps.Keys(r.Detail)) {
		fmt.Fprintf(&b, "\n  shard %s: %s", id, r.Detail[id])
	}
	return b.String()
}

// checkConvergence polls every node's replica states until each shard's
// replicas sit at one applied index (no writes run any more, so they get
// there once every replica has caught up), then compares their hashes.
// Replicas at one index with different hashes have diverged: that fails at
// once. Replicas that never reach one index by the deadline fail too.
func checkConvergence(ctx context.Context, c *cluster.Cluster, deadline time.Duration) ConvergenceResult {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	for {
		res := pollConvergence(ctx, c)
		if res.Valid || len(res.Diverged) > 0 || sleepCtx(ctx, 500*time.Millisecond) != nil {
			return res
		}
	}
}

// pollConvergence compares the replica states every node reports now.
func pollConvergence(ctx context.Context, c *cluster.Cluster) ConvergenceResult {
	var res ConvergenceResult
	type state struct {
		node string
		cluster.ReplicaState
	}
	byShard := map[uint64][]state{}
	for _, n := range c.Nodes() {
		rs, err := c.Replicas(ctx, n.Index)
		if err != nil {
			res.Problem = err.Error()
			return res
		}
		for _, r := range rs {
			if r.Error != "" {
				res.Problem = fmt.Sprintf("%s shard %d: %s", n.Name, r.Shard, r.Error)
				return res
			}
			byShard[r.Shard] = append(byShard[r.Shard], state{n.Name, r})
		}
	}
	res.Detail = map[string]string{}
	for id, rs := range byShard {
		res.Shards++
		res.Replicas += len(rs)
		settled, same := true, true
		for _, r := range rs[1:] {
			settled = settled && r.Applied == rs[0].Applied
			same = same && r.StateHash == rs[0].StateHash
		}
		switch {
		case settled && same:
			continue
		case settled:
			res.Diverged = append(res.Diverged, fmt.Sprint(id))
		}
		var desc []string
		for _, r := range rs {
			desc = append(desc, fmt.Sprintf("%s %s@%d:%.12s", r.node, r.Role, r.Applied, r.StateHash))
		}
		res.Detail[fmt.Sprint(id)] = strings.Join(desc, ", ")
	}
	switch {
	case len(res.Diverged) > 0:
		slices.Sort(res.Diverged)
		res.Problem = "replicas at the same applied index hold different state: shards " + strings.Join(res.Diverged, ", ")
	case len(res.Detail) > 0:
		res.Problem = "replicas did not reach one applied index"
	default:
		res.Valid, res.Detail = true, nil
	}
	return res
}
