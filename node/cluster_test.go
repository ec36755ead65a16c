package node

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/ring"
	"github.com/cairndb/cairn/shard"
)

// testCluster is a cluster of in-process nodes on loopback.
type testCluster struct {
	t     *testing.T
	nodes map[string]*Node
	cfgs  map[string]Config
	seed  string
}

func clusterConfig(t *testing.T, name string, expect int, seeds []string) Config {
	c := testNodeConfig(filepath.Join(t.TempDir(), name))
	c.Name = name
	c.Join = seeds
	c.BootstrapExpect = expect
	c.ReconcileInterval = 100 * time.Millisecond
	c.Shard.SnapshotInterval = time.Hour // keep logs: catch-up by log
	// Many tests put leaders where they want them; TestLeaderBalance and
	// the process-level tests (kvnode's default) run the balancer.
	c.LeaderBalanceInterval = 0
	return c
}

// startCluster starts k nodes that form one cluster together; mutate, if
// given, adjusts each node's configuration.
func startCluster(t *testing.T, k, shards int, mutate ...func(*Config)) *testCluster {
	t.Helper()
	tc := &testCluster{t: t, nodes: map[string]*Node{}, cfgs: map[string]Config{}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	first := clusterConfig(t, "n1", k, []string{"127.0.0.1:1"}) // no one there: n1 is the seed
	first.Shards = shards
	for _, m := range mutate {
		m(&first)
	}
	n1, err := Start(t.Context(), first)
	if err != nil {
		t.Fatal(err)
	}
	first.RaftAddr, first.GossipAddr = n1.RaftAddr(), n1.GossipAddr()
	tc.nodes["n1"], tc.cfgs["n1"], tc.seed = n1, first, n1.GossipAddr()
	for i := 2; i <= k; i++ {
		name := fmt.Sprintf("n%d", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clusterConfig(t, name, k, []string{tc.seed})
			c.Shards = shards
			for _, m := range mutate {
				m(&c)
			}
			n, err := Start(t.Context(), c)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			c.RaftAddr, c.GossipAddr = n.RaftAddr(), n.GossipAddr()
			tc.nodes[name], tc.cfgs[name] = n, c
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, n := range tc.nodes {
			n.Close()
		}
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	tc.waitReady()
	return tc
}

func (tc *testCluster) waitReady() {
	tc.t.Helper()
	ctx, cancel := context.WithTimeout(tc.t.Context(), 60*time.Second)
	defer cancel()
	for name, n := range tc.nodes {
		if err := n.WaitReady(ctx); err != nil {
			tc.t.Fatalf("%s: %v", name, err)
		}
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

// realized checks that every data shard's raft group has exactly the voters
// its placement names, and that each node holds exactly the replicas placed
// on it.
func (tc *testCluster) realized() error {
	var v *view
	for _, n := range tc.nodes {
		if v = n.view.Load(); v.hasLayout() {
			break
		}
	}
	if !v.hasLayout() {
		return errors.New("no layout")
	}
	for _, id := range v.ring.Shards() {
		want := v.place.Replicas[id]
		var leader *shard.Status
		for name, n := range tc.nodes {
			s := n.localShard(id)
			if s == nil {
				if hasNode(want, name) {
					return fmt.Errorf("%v placed on %s, which has no replica", id, name)
				}
				continue
			}
			if !hasNode(want, name) {
				return fmt.Errorf("%s still holds a replica of %v", name, id)
			}
			if st := s.Status(); st.Role == "leader" {
				leader = &st
			}
		}
		if leader == nil {
			return fmt.Errorf("%v has no leader", id)
		}
		var voters []ring.NodeID
		for _, r := range leader.Replicas {
			if !r.Voter {
				return fmt.Errorf("%v has non-voter %s", id, r.ID)
			}
			voters = append(voters, ring.NodeID(r.ID))
		}
		slices.Sort(voters)
		if !slices.Equal(voters, want) {
			return fmt.Errorf("%v voters %v, placed on %v", id, voters, want)
		}
	}
	return nil
}

func TestThreeNodesFormRouteAndSurviveALeaderLoss(t *testing.T) {
	tc := startCluster(t, 3, 4)
	ctx := t.Context()
	waitFor(t, "placement realized", 30*time.Second, tc.realized)
	n1 := tc.nodes["n1"]
	v := n1.view.Load()
	for _, id := range v.ring.Shards() {
		if got := len(v.place.Replicas[id]); got != 3 {
			t.Fatalf("%v placed on %d nodes, want 3", id, got)
		}
	}
	// Every node agrees on the layout.
	for name, n := range tc.nodes {
		if nv := n.view.Load(); nv.place.Epoch != v.place.Epoch || nv.layout.ClusterID != v.layout.ClusterID {
			t.Fatalf("%s sees placement epoch %d of cluster %s, n1 %d of %s", name, nv.place.Epoch, nv.layout.ClusterID, v.place.Epoch, v.layout.ClusterID)
		}
	}

	// Writes through every node, to keys of every shard: most are
	// forwarded to another node's leader.
	acked := map[string]uint64{}
	names := slices.Sorted(maps.Keys(tc.nodes))
	for i := range 120 {
		key := fmt.Sprintf("key-%03d", i)
		n := tc.nodes[names[i%3]]
		ver, err := n.Put(ctx, []byte(key), []byte("v-"+key), WriteOptions{})
		if err != nil {
			t.Fatalf("put %s through %s: %v", key, n.cfg.Name, err)
		}
		acked[key] = ver
	}
	// Conditions are checked at the leader, wherever the write came in.
	zero := uint64(0)
	if _, err := tc.nodes["n2"].Put(ctx, []byte("key-000"), []byte("x"), WriteOptions{IfVersion: &zero}); !errors.Is(err, fsm.ErrVersionMismatch) {
		t.Fatalf("create-if-absent of an existing key through n2: %v", err)
	}
	checkAll := func(nodes map[string]*Node) {
		t.Helper()
		for name, n := range nodes {
			for key, ver := range acked {
				it, err := n.Get(ctx, []byte(key), shard.ReadOptions{})
				if err != nil || it.Version != ver || string(it.Value) != "v-"+key {
					t.Fatalf("%s reads %s: %q@%d %v, want @%d", name, key, it.Value, it.Version, err, ver)
				}
			}
			items, cursor, err := n.Scan(ctx, ScanOptions{Prefix: []byte("key-")}, shard.ReadOptions{})
			if err != nil || len(items) != len(acked) || cursor != nil {
				t.Fatalf("%s scans %d keys (cursor %q, %v), want %d", name, len(items), cursor, err, len(acked))
			}
		}
	}
	checkAll(tc.nodes)

	// Kill the node that leads the most shards (no handover): the others
	// elect new leaders and keep taking writes through any node.
	counts := map[string]int{}
	for name, n := range tc.nodes {
		for _, st := range n.Shards() {
			if st.Role == "leader" {
				counts[name]++
			}
		}
	}
	victim := names[0]
	for _, name := range names {
		if counts[name] > counts[victim] {
			victim = name
		}
	}
	killed := tc.cfgs[victim]
	tc.nodes[victim].Close()
	delete(tc.nodes, victim)
	t.Logf("killed %s, which led %d shards", victim, counts[victim])
	start := time.Now()
	for i := range 60 {
		key := fmt.Sprintf("after-%03d", i)
		for _, n := range tc.nodes {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			ver, err := n.Put(wctx, []byte(key), []byte("v-"+key), WriteOptions{})
			cancel()
			if err != nil {
				t.Fatalf("put %s through %s after the kill: %v", key, n.cfg.Name, err)
			}
			acked[key] = ver
			break
		}
	}
	t.Logf("60 writes after the kill took %v", time.Since(start))

	// The killed node restarts on the same addresses and catches up.
	n, err := Start(ctx, killed)
	if err != nil {
		t.Fatal(err)
	}
	tc.nodes[victim] = n
	tc.waitReady()
	// Every acknowledged write reads back from every node, the restarted
	// one included.
	for name, n := range tc.nodes {
		for key, ver := range acked {
			it, err := n.Get(ctx, []byte(key), shard.ReadOptions{})
			if err != nil || it.Version != ver {
				t.Fatalf("%s reads %s: @%d %v, want @%d", name, key, it.Version, err, ver)
			}
		}
	}
	waitFor(t, "placement realized after restart", 30*time.Second, tc.realized)
	tc.checkConverged()
}

// checkConverged waits until every shard's replicas report the same state
// hash at the same applied index.
func (tc *testCluster) checkConverged() {
	tc.t.Helper()
	waitFor(tc.t, "replicas converge", 30*time.Second, func() error {
		byShard := map[uint64][]string{}
		for _, n := range tc.nodes {
			for _, r := range n.Replicas() {
				if r.Error != "" {
					return errors.New(r.Error)
				}
				byShard[r.Shard] = append(byShard[r.Shard], strconv.FormatUint(r.Applied, 10)+":"+r.StateHash[:12])
			}
		}
		for id, hs := range byShard {
			for _, h := range hs[1:] {
				if h != hs[0] {
					return fmt.Errorf("%v replicas differ: %v", id, hs)
				}
			}
		}
		return nil
	})
}

// A node that joins a formed cluster gets replicas moved onto it, one
// change at a time; the nodes they leave delete their copies; no data is
// lost on the way.
func TestJoiningNodeTakesReplicas(t *testing.T) {
	tc := startCluster(t, 3, 4)
	ctx := t.Context()
	waitFor(t, "placement realized", 30*time.Second, tc.realized)
	acked := map[string]uint64{}
	for i := range 100 {
		key := fmt.Sprintf("k%03d", i)
		ver, err := tc.nodes["n2"].Put(ctx, []byte(key), []byte(key), WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		acked[key] = ver
	}
	c := clusterConfig(t, "n4", 1, []string{tc.seed}) // joins; never forms
	n4, err := Start(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	tc.nodes["n4"] = n4
	waitFor(t, "n4 in the placement", 60*time.Second, func() error {
		v := n4.view.Load()
		if !v.hasLayout() || !slices.Contains(v.layout.Nodes, "n4") {
			return errors.New("n4 not placed yet")
		}
		return nil
	})
	waitFor(t, "placement realized with n4", 60*time.Second, tc.realized)
	v := n4.view.Load()
	load := map[ring.NodeID]int{}
	for _, reps := range v.place.Replicas {
		for _, r := range reps {
			load[r]++
		}
	}
	if load["n4"] != 3 {
		t.Fatalf("n4 holds %d replicas after joining (loads %v), want 3 of 12", load["n4"], load)
	}
	// Replicas that moved away are deleted from disk.
	waitFor(t, "moved replicas deleted", 30*time.Second, func() error {
		for name, n := range tc.nodes {
			ids, err := n.localShards()
			if err != nil {
				return err
			}
			for _, id := range ids {
				if !hasNode(v.place.Replicas[id], name) {
					return fmt.Errorf("%s still has files of %v, which moved away", name, id)
				}
			}
			if _, err := os.Stat(n.shardDir(MetaShard)); err != nil {
				return fmt.Errorf("%s lost its meta replica: %v", name, err)
			}
		}
		return nil
	})
	for key, ver := range acked {
		it, err := n4.Get(ctx, []byte(key), shard.ReadOptions{})
		if err != nil || it.Version != ver {
			t.Fatalf("n4 reads %s: @%d %v, want @%d", key, it.Version, err, ver)
		}
	}
	tc.checkConverged()
}

// A node cut off from the rest answers 504 outcome_unknown for a write it
// proposed but could not commit, and 503 unavailable (nothing proposed) for
// a shard whose leader it cannot reach; it serves no linearizable read. Once
// the others return, retrying the unknown write with its Request-Id applies
// it exactly once.
func TestHTTPUnknownOutcomeAndUnavailableUnderPartition(t *testing.T) {
	// Long leases keep the cut-off leader in office while the request times
	// out, so its proposal is appended but cannot commit.
	tc := startCluster(t, 3, 2, func(c *Config) {
		c.Shard.HeartbeatTimeout = 3 * time.Second
		c.Shard.ElectionTimeout = 3 * time.Second
		c.Shard.LeaderLeaseTimeout = 3 * time.Second
		c.RequestTimeout = 700 * time.Millisecond
	})
	waitFor(t, "placement realized", 60*time.Second, tc.realized)
	n1 := tc.nodes["n1"]
	// n1 leads shard 1, another node shard 2.
	s1, s2 := n1.localShard(1), n1.localShard(2)
	if _, _, self := s1.Leader(); !self {
		if err := tc.leaderOf(1).TransferLeadership(t.Context(), shard.Replica{ID: "n1", Addr: n1.RaftAddr()}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, self := s2.Leader(); self {
		if err := s2.TransferLeadership(t.Context(), shard.Replica{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "leaders in place", 30*time.Second, func() error {
		_, _, lead1 := s1.Leader()
		_, l2, lead2 := s2.Leader()
		if !lead1 || lead2 || l2 == "" {
			return fmt.Errorf("n1 leads shard 1: %v, shard 2: %v (leader %q)", lead1, lead2, l2)
		}
		return nil
	})
	key1, key2 := keyOn(n1, 1), keyOn(n1, 2)
	srv := httptest.NewServer(n1.Handler(nil))
	defer srv.Close()

	for _, name := range []string{"n2", "n3"} {
		tc.nodes[name].Close()
	}
	hdr := map[string]string{"Request-Id": "rid-unknown"}
	st, _, b := do(t, "PUT", srv.URL+"/v1/kv/"+key1, []byte("v1"), hdr)
	if st != 504 || errCode(t, b) != "outcome_unknown" || !strings.Contains(string(b), "rid-unknown") {
		t.Fatalf("write on a leader without quorum: %d %s, want 504 outcome_unknown naming the request", st, b)
	}
	st, _, b = do(t, "PUT", srv.URL+"/v1/kv/"+key2, []byte("v2"), nil)
	if st != 503 || errCode(t, b) != "unavailable" {
		t.Fatalf("write to a shard whose leader is gone: %d %s, want 503 unavailable", st, b)
	}
	lastIndex := s2.Status().LastIndex
	st, _, b = do(t, "GET", srv.URL+"/v1/kv/"+key1, nil, nil)
	if st != 503 || errCode(t, b) != "unavailable" {
		t.Fatalf("linearizable read on a leader without quorum: %d %s, want 503", st, b)
	}
	if got := s2.Status().LastIndex; got != lastIndex {
		t.Fatalf("shard 2's log grew from %d to %d after requests that were refused", lastIndex, got)
	}

	// The others come back; the retry with the same Request-Id applies once.
	for _, name := range []string{"n2", "n3"} {
		n, err := Start(t.Context(), tc.cfgs[name])
		if err != nil {
			t.Fatal(err)
		}
		tc.nodes[name] = n
	}
	tc.waitReady()
	var versions []string
	for range 2 {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		ver, err := n1.Put(ctx, []byte(key1), []byte("v1"), WriteOptions{RequestID: "rid-unknown"})
		cancel()
		if err != nil {
			t.Fatalf("retry of the unknown write: %v", err)
		}
		versions = append(versions, strconv.FormatUint(ver, 10))
	}
	if versions[0] != versions[1] {
		t.Fatalf("retries with one Request-Id applied twice: versions %v", versions)
	}
}

// leaderOf returns the replica that leads shard id.
func (tc *testCluster) leaderOf(id fsm.ShardID) *shard.Shard {
	for _, n := range tc.nodes {
		if s := n.localShard(id); s != nil {
			if _, _, self := s.Leader(); self {
				return s
			}
		}
	}
	tc.t.Fatalf("no leader of %v", id)
	return nil
}

// keyOn returns a key that n's ring puts on shard id.
func keyOn(n *Node, id fsm.ShardID) string {
	for i := 0; ; i++ {
		k := fmt.Sprintf("key-%d", i)
		if n.Ring().Locate([]byte(k)) == id {
			return k
		}
	}
}
