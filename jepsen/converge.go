package jepsen

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
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

type replicaState struct {
	Shard     uint64 `json:"shard"`
	Role      string `json:"role"`
	Applied   uint64 `json:"applied_index"`
	StateHash string `json:"state_hash"`
	Error     string `json:"error"`
}

// checkConvergence polls every node's replica states until each shard's
// replicas sit at one applied index (no writes run any more, so they get
// there once every replica has caught up), then compares their hashes.
// Replicas at one index with different hashes have diverged: that fails at
// once. Replicas that never reach one index by the deadline fail too.
func checkConvergence(ctx context.Context, addrs, names []string, deadline time.Duration) ConvergenceResult {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	hc := &http.Client{Timeout: 10 * time.Second}
	var res ConvergenceResult
	for {
		res = ConvergenceResult{Detail: map[string]string{}}
		byShard := map[uint64][]string{}
		settled, ok := true, true
		states := map[uint64][]replicaState{}
		for i, a := range addrs {
			rs, err := fetchReplicas(ctx, hc, a)
			if err != nil {
				res.Problem = fmt.Sprintf("%s: %v", names[i], err)
				ok = false
				break
			}
			for _, r := range rs {
				if r.Error != "" {
					res.Problem = fmt.Sprintf("%s shard %d: %s", names[i], r.Shard, r.Error)
					ok = false
				}
				states[r.Shard] = append(states[r.Shard], r)
				byShard[r.Shard] = append(byShard[r.Shard], fmt.Sprintf("%s %s@%d:%.12s", names[i], r.Role, r.Applied, r.StateHash))
			}
		}
		if ok {
			for id, rs := range states {
				res.Shards++
				res.Replicas += len(rs)
				res.Detail[fmt.Sprint(id)] = strings.Join(byShard[id], ", ")
				same := true
				for _, r := range rs[1:] {
					if r.Applied != rs[0].Applied {
						settled = false
						same = false
					} else if r.StateHash != rs[0].StateHash {
						res.Diverged = append(res.Diverged, fmt.Sprint(id))
						same = false
					}
				}
				if same {
					delete(res.Detail, fmt.Sprint(id))
				}
			}
			if len(res.Diverged) > 0 {
				res.Problem = "replicas at the same applied index hold different state: shards " + strings.Join(res.Diverged, ", ")
				return res
			}
			if settled {
				res.Valid = true
				res.Detail = nil
				return res
			}
			res.Problem = "replicas did not reach one applied index"
		}
		if sleepCtx(ctx, 500*time.Millisecond) != nil {
			return res
		}
	}
}

func fetchReplicas(ctx context.Context, hc *http.Client, addr string) ([]replicaState, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/cluster/replicas", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/cluster/replicas: %d %s", resp.StatusCode, b)
	}
	var body struct {
		Replicas []replicaState `json:"replicas"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		return nil, err
	}
	return body.Replicas, nil
}
