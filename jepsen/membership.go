package jepsen

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cairndb/cairn/jepsen/cluster"
)

// MembershipResult says whether faults changed who votes in each shard.
// The harness never asks for a membership change, so the placement must
// keep its epoch and every shard's raft voters must stay the placed
// replicas: gossip declaring nodes dead (killed, paused, cut off) must
// never shrink a voter set.
type MembershipResult struct {
	Valid          bool     `json:"valid"`
	Shards         int      `json:"shards"`
	PlacementEpoch uint64   `json:"placement_epoch"`
	Problems       []string `json:"problems,omitempty"`
}

func (r MembershipResult) String() string {
	if r.Valid {
		return fmt.Sprintf("membership: ok (%d shards: voters are the placed replicas; placement epoch %d)", r.Shards, r.PlacementEpoch)
	}
	return "membership: FAILED: " + strings.Join(r.Problems, "; ")
}

// placementOf reads the placement (epoch and replicas per shard) from the
// first node that answers.
func placementOf(ctx context.Context, c *cluster.Cluster) (uint64, map[uint64][]string, error) {
	var errs []string
	for _, n := range c.Nodes() {
		st, err := c.Status(ctx, n.Index)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		placed := map[uint64][]string{}
		for _, sh := range st.Shards {
			placed[sh.Shard] = slices.Sorted(slices.Values(sh.Replicas))
		}
		return st.PlacementEpoch, placed, nil
	}
	return 0, nil, fmt.Errorf("no node answered: %s", strings.Join(errs, "; "))
}

// checkMembership compares every shard's voters, as its leader reports
// them, with the placement read before the faults began. When the run
// moved replicas on purpose (moved), the placement may have changed: then
// every node must be registered again, and the voters must match the
// placement the cluster holds now.
func checkMembership(ctx context.Context, c *cluster.Cluster, epoch uint64, placed map[uint64][]string, moved bool, deadline time.Duration) MembershipResult {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	for {
		var res MembershipResult
		if moved {
			e, p, err := placementOf(ctx, c)
			if err != nil {
				res.Problems = append(res.Problems, err.Error())
			}
			epoch, placed = e, p
			holders := placedNodes(p)
			for _, n := range c.Nodes() {
				if !slices.Contains(holders, n.Name) {
					res.Problems = append(res.Problems, fmt.Sprintf("%s holds no replica in the final placement", n.Name))
				}
			}
		}
		res.PlacementEpoch, res.Shards = epoch, len(placed)
		seen := map[uint64]bool{}
		for _, n := range c.Nodes() {
			st, err := c.Status(ctx, n.Index)
			if err != nil {
				res.Problems = append(res.Problems, fmt.Sprintf("%s: %v", n.Name, err))
				continue
			}
			if st.PlacementEpoch != epoch {
				res.Problems = append(res.Problems, fmt.Sprintf("%s is at placement epoch %d, the run began at %d", n.Name, st.PlacementEpoch, epoch))
			}
			for _, sh := range st.Shards {
				if sh.Local == nil || sh.Local.Role != "leader" {
					continue
				}
				var voters []string
				for _, m := range sh.Local.Members {
					if m.Voter {
						voters = append(voters, m.ID)
					}
				}
				slices.Sort(voters)
				if want := placed[sh.Shard]; !slices.Equal(voters, want) {
					res.Problems = append(res.Problems, fmt.Sprintf("shard %d: voters %v, placed on %v", sh.Shard, voters, want))
				}
				seen[sh.Shard] = true
			}
		}
		for id := range placed {
			if !seen[id] {
				res.Problems = append(res.Problems, fmt.Sprintf("shard %d: no leader reports its voters", id))
			}
		}
		if len(res.Problems) == 0 && len(placed) > 0 {
			res.Valid = true
			return res
		}
		if sleepCtx(ctx, 500*time.Millisecond) != nil {
			return res
		}
	}
}

// placedNodes lists the nodes that hold at least one replica.
func placedNodes(placed map[uint64][]string) []string {
	var out []string
	for _, names := range placed {
		for _, n := range names {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}
