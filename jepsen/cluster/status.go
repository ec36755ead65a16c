package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// ClusterStatus is one node's view of the cluster (GET /v1/cluster), with
// the fields a fault harness needs.
type ClusterStatus struct {
	Node           string `json:"node"`
	ClusterID      string `json:"cluster_id"`
	RingEpoch      uint64 `json:"ring_epoch"`
	PlacementEpoch uint64 `json:"placement_epoch"`
	Replicas       int    `json:"replication_factor"`
	// Ready: the node knows the layout and a leader for every shard;
	// otherwise NotReady says what is missing.
	Ready    bool          `json:"ready"`
	NotReady string        `json:"not_ready"`
	Nodes    []NodeStatus  `json:"nodes"`
	Shards   []ShardStatus `json:"shards"`
}

// NodeStatus is a node as the registry (Registered) and gossip (Alive) see
// it.
type NodeStatus struct {
	Name       string   `json:"name"`
	RaftAddr   string   `json:"raft_addr"`
	HTTPAddr   string   `json:"http_addr"`
	GossipAddr string   `json:"gossip_addr"`
	Registered bool     `json:"registered"`
	Alive      bool     `json:"alive"`
	Leads      []uint64 `json:"leads"`
	RingEpoch  uint64   `json:"ring_epoch"`
}

// ShardStatus is a shard (0 is the meta group): its placed replicas, its
// leader as the node knows it, and the node's own replica, if any.
type ShardStatus struct {
	Shard    uint64         `json:"shard"`
	Replicas []string       `json:"replicas"`
	Leader   string         `json:"leader"`
	Local    *ReplicaStatus `json:"local"`
}

// ReplicaStatus is a node's own replica of a shard.
type ReplicaStatus struct {
	Role        string          `json:"role"` // leader, follower, candidate, shutdown
	Term        uint64          `json:"term"`
	CommitIndex uint64          `json:"commit_index"`
	Applied     uint64          `json:"applied_index"`
	LastIndex   uint64          `json:"last_index"`
	Ready       bool            `json:"ready"`
	Members     []ReplicaMember `json:"replicas"`
}

// ReplicaMember is a member of a shard's raft configuration.
type ReplicaMember struct {
	ID    string `json:"id"`
	Voter bool   `json:"voter"`
}

// Status returns node i's view of the cluster.
func (c *Cluster) Status(ctx context.Context, i int) (ClusterStatus, error) {
	var st ClusterStatus
	if err := c.check(i); err != nil {
		return st, err
	}
	err := c.getJSON(ctx, i, "/v1/cluster", &st)
	return st, err
}

// ReplicaState is one of a node's replicas as GET /v1/cluster/replicas
// reports it: replicas of a shard at one applied index must have one hash.
type ReplicaState struct {
	Shard     uint64 `json:"shard"`
	Role      string `json:"role"`
	Applied   uint64 `json:"applied_index"`
	StateHash string `json:"state_hash"`
	Error     string `json:"error"`
}

// Replicas returns the applied index and state hash of each of node i's
// replicas.
func (c *Cluster) Replicas(ctx context.Context, i int) ([]ReplicaState, error) {
	if err := c.check(i); err != nil {
		return nil, err
	}
	var body struct {
		Replicas []ReplicaState `json:"replicas"`
	}
	if err := c.getJSON(ctx, i, "/v1/cluster/replicas", &body); err != nil {
		return nil, err
	}
	return body.Replicas, nil
}

// getJSON fetches path from node i and decodes a 200 answer into v.
func (c *Cluster) getJSON(ctx context.Context, i int, path string, v any) error {
	code, body, err := c.get(ctx, i, path)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("cluster: GET %s from %s: %d %s", path, c.nodes[i-1].Name, code, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("cluster: GET %s from %s: %w", path, c.nodes[i-1].Name, err)
	}
	return nil
}

// get fetches path from node i, returning the status code and body.
func (c *Cluster) get(ctx context.Context, i int, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.nodes[i-1].HTTPAddr+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("cluster: GET %s from %s: %w", path, c.nodes[i-1].Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("cluster: GET %s from %s: %w", path, c.nodes[i-1].Name, err)
	}
	return resp.StatusCode, body, nil
}

// ShardLeaders returns, for every shard whose leader is known, the index of
// the node that leads it, asking every node that runs and is not paused.
// A node's claim to lead a shard itself wins over what others report; of
// two claims (a deposed leader that has not noticed yet), the higher term
// wins.
func (c *Cluster) ShardLeaders(ctx context.Context) (map[uint64]int, error) {
	up := c.up()
	if len(up) == 0 {
		return nil, errors.New("cluster: no node is up")
	}
	views := make([]*ClusterStatus, len(up))
	errs := make([]error, len(up))
	var wg sync.WaitGroup
	for k, i := range up {
		wg.Go(func() {
			qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			st, err := c.Status(qctx, i)
			if err == nil {
				views[k] = &st
			}
			errs[k] = err
		})
	}
	wg.Wait()
	index := map[string]int{}
	for _, n := range c.nodes {
		index[n.Name] = n.Index
	}
	type claim struct{ node, term int }
	claims := map[uint64]claim{}
	reported := map[uint64]map[int]int{} // shard → leader index → reports
	answered := 0
	for k, st := range views {
		if st == nil {
			continue
		}
		answered++
		for _, sh := range st.Shards {
			if sh.Local != nil && sh.Local.Role == "leader" {
				if cl, ok := claims[sh.Shard]; !ok || int(sh.Local.Term) > cl.term {
					claims[sh.Shard] = claim{up[k], int(sh.Local.Term)}
				}
			}
			if i, ok := index[sh.Leader]; ok {
				if reported[sh.Shard] == nil {
					reported[sh.Shard] = map[int]int{}
				}
				reported[sh.Shard][i]++
			}
		}
	}
	if answered == 0 {
		return nil, fmt.Errorf("cluster: no node answered: %w", errors.Join(errs...))
	}
	out := map[uint64]int{}
	for shard, votes := range reported {
		best, most := 0, 0
		for i, n := range votes {
			if n > most || n == most && i < best {
				best, most = i, n
			}
		}
		out[shard] = best
	}
	for shard, cl := range claims {
		out[shard] = cl.node
	}
	return out, nil
}

// WaitReady waits until each given node (every node if none is given) runs
// and answers GET /readyz with 200: it knows the layout and a leader for
// every shard.
func (c *Cluster) WaitReady(ctx context.Context, nodes ...int) error {
	if len(nodes) == 0 {
		for i := 1; i <= len(c.nodes); i++ {
			nodes = append(nodes, i)
		}
	}
	return c.poll(ctx, func() error {
		for _, i := range nodes {
			if err := c.nodeReady(ctx, i); err != nil {
				return err
			}
		}
		return nil
	})
}

// WaitHealthy waits until every node runs, is ready, and sees every node
// registered and alive and a leader for every shard (what Start waits for).
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	return c.poll(ctx, func() error {
		for i := 1; i <= len(c.nodes); i++ {
			if err := c.nodeHealthy(ctx, i); err != nil {
				return err
			}
		}
		return nil
	})
}

// errFatal marks a condition that waiting cannot change.
type errFatal struct{ error }

func (e errFatal) Unwrap() error { return e.error }

// poll calls cond until it returns nil, a fatal error, or ctx ends.
func (c *Cluster) poll(ctx context.Context, cond func() error) error {
	const interval = 100 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return nil
		}
		var fatal errFatal
		if errors.As(err, &fatal) {
			return fatal.error
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w; last: %w", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// alive fails fatally when node i's process is gone or paused.
func (c *Cluster) alive(i int) error {
	if err := c.check(i); err != nil {
		return errFatal{err}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p, err := c.running(i)
	if err != nil {
		if p := c.procs[i-1]; p != nil && p.exited() {
			err = fmt.Errorf("cluster: %s exited (%s); end of %s:\n%s", c.nodes[i-1].Name, exitStatus(p.err), c.nodes[i-1].LogPath, logTail(c.nodes[i-1].LogPath, 3000))
		}
		return errFatal{err}
	}
	if p.paused {
		return errFatal{fmt.Errorf("cluster: %s is paused", c.nodes[i-1].Name)}
	}
	return nil
}

func (c *Cluster) nodeReady(ctx context.Context, i int) error {
	if err := c.alive(i); err != nil {
		return err
	}
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	code, body, err := c.get(qctx, i, "/readyz")
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("cluster: %s /readyz: %d %s", c.nodes[i-1].Name, code, strings.TrimSpace(string(body)))
	}
	return nil
}

func (c *Cluster) nodeHealthy(ctx context.Context, i int) error {
	if err := c.nodeReady(ctx, i); err != nil {
		return err
	}
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := c.Status(qctx, i)
	if err != nil {
		return err
	}
	name := c.nodes[i-1].Name
	for _, n := range c.nodes {
		k := slices.IndexFunc(st.Nodes, func(s NodeStatus) bool { return s.Name == n.Name })
		if k < 0 || !st.Nodes[k].Registered || !st.Nodes[k].Alive {
			return fmt.Errorf("cluster: %s does not see %s registered and alive", name, n.Name)
		}
	}
	if st.ClusterID == "" || len(st.Shards) < 2 {
		return fmt.Errorf("cluster: %s has no layout yet", name)
	}
	for _, sh := range st.Shards {
		if sh.Leader == "" {
			return fmt.Errorf("cluster: %s knows no leader of shard %d", name, sh.Shard)
		}
	}
	return nil
}

// logTail returns about the last n bytes of a file.
func logTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		_, _ = f.Seek(fi.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}
