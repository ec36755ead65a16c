package shard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/shard/nodelog"
)

// faultNet is a fault-injecting network for in-process replicas: every
// connection is dialed through it, so it can refuse dials and cut live
// connections between any pair of addresses.
type faultNet struct {
	mu      sync.Mutex
	blocked map[[2]string]bool
	conns   map[*faultConn]struct{}
}

func newFaultNet() *faultNet {
	return &faultNet{blocked: map[[2]string]bool{}, conns: map[*faultConn]struct{}{}}
}

type faultConn struct {
	net.Conn
	from, to string
	n        *faultNet
}

func (c *faultConn) Close() error {
	c.n.mu.Lock()
	delete(c.n.conns, c)
	c.n.mu.Unlock()
	return c.Conn.Close()
}

func (n *faultNet) dialer(from string) DialFunc {
	return func(ctx context.Context, to string) (net.Conn, error) {
		n.mu.Lock()
		blocked := n.blocked[[2]string{from, to}]
		n.mu.Unlock()
		if blocked {
			return nil, fmt.Errorf("faultnet: %s -> %s partitioned", from, to)
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", to)
		if err != nil {
			return nil, err
		}
		fc := &faultConn{Conn: c, from: from, to: to, n: n}
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.blocked[[2]string{from, to}] {
			c.Close()
			return nil, fmt.Errorf("faultnet: %s -> %s partitioned", from, to)
		}
		n.conns[fc] = struct{}{}
		return fc, nil
	}
}

// isolate cuts addr off from every other address, both ways.
func (n *faultNet) isolate(addr string, others []string) {
	n.mu.Lock()
	var doomed []*faultConn
	for _, o := range others {
		if o == addr {
			continue
		}
		n.blocked[[2]string{addr, o}] = true
		n.blocked[[2]string{o, addr}] = true
	}
	for c := range n.conns {
		if c.from == addr || c.to == addr {
			doomed = append(doomed, c)
		}
	}
	n.mu.Unlock()
	for _, c := range doomed {
		c.Close()
	}
}

func (n *faultNet) heal() {
	n.mu.Lock()
	n.blocked = map[[2]string]bool{}
	n.mu.Unlock()
}

// replica is one simulated node: its own store, raft port and shard replica.
type replica struct {
	id    string
	addr  string
	dir   string
	store *fsm.Store
	mux   *Mux
	shard *Shard
	logs  *nodelog.Log // the shared raft log, for replicas that use it
}

type cluster struct {
	t        testing.TB
	mu       sync.Mutex // guards replica.shard against background goroutines
	net      *faultNet
	replicas []*replica
	tune     func(*Config)
}

func testConfig() Config {
	c := DefaultConfig()
	c.HeartbeatTimeout = 150 * time.Millisecond
	c.ElectionTimeout = 150 * time.Millisecond
	c.LeaderLeaseTimeout = 100 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
	c.ReadTimeout = 3 * time.Second
	return c
}

// newCluster starts n replicas of shard 1 on loopback; the first n-nonvoters
// are bootstrapped as voters, the rest start empty (to be added).
func newCluster(t testing.TB, n int, tune func(*Config)) *cluster {
	c := &cluster{t: t, net: newFaultNet(), tune: tune}
	root := t.TempDir()
	for i := range n {
		r := &replica{id: fmt.Sprintf("n%d", i+1), dir: filepath.Join(root, fmt.Sprintf("n%d", i+1))}
		c.replicas = append(c.replicas, r)
		c.start(r, "127.0.0.1:0")
	}
	t.Cleanup(func() {
		for _, r := range c.replicas {
			c.stop(r)
		}
	})
	return c
}

func (c *cluster) bootstrap(voters int) {
	var rs []Replica
	for _, r := range c.replicas[:voters] {
		rs = append(rs, Replica{ID: r.id, Addr: r.addr, Voter: true})
	}
	if err := c.replicas[0].shard.Bootstrap(rs); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) start(r *replica, addr string) {
	t := c.t
	opts := fsm.DefaultOptions(filepath.Join(r.dir, "data"))
	opts.MemTableSize = 16 << 20
	opts.BlockCacheSize = 8 << 20
	opts.IndexCacheSize = 4 << 20
	st, err := fsm.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.store = st
	r.mux = NewMux(ln, MuxConfig{Dial: c.net.dialer(r.addr)})
	cfg := testConfig()
	cfg.ID = 1
	cfg.NodeID = r.id
	cfg.Dir = filepath.Join(r.dir, "raft", "1")
	cfg.Store = st
	cfg.Mux = r.mux
	if c.tune != nil {
		c.tune(&cfg)
	}
	if r.logs, err = testNodeLog(cfg.Dir, cfg.LogStore); err != nil {
		r.mux.Close()
		st.Close()
		t.Fatal(err)
	}
	cfg.NodeLog = r.logs
	sh, err := Open(cfg)
	if err != nil {
		r.mux.Close()
		st.Close()
		if r.logs != nil {
			r.logs.Close()
		}
		t.Fatal(err)
	}
	c.mu.Lock()
	r.shard = sh
	c.mu.Unlock()
}

// shardOf returns r's running shard or nil; safe from any goroutine.
func (c *cluster) shardOf(r *replica) *Shard {
	c.mu.Lock()
	defer c.mu.Unlock()
	return r.shard
}

// stop shuts a replica down as a crash of its process would (no leadership
// hand-off); its files stay.
func (c *cluster) stop(r *replica) {
	if r.shard == nil {
		return
	}
	c.mu.Lock()
	sh := r.shard
	r.shard = nil
	c.mu.Unlock()
	sh.Close()
	r.mux.Close()
	r.store.Close()
	if r.logs != nil {
		r.logs.Close()
		r.logs = nil
	}
}

func (c *cluster) restart(r *replica) { c.start(r, r.addr) }

func (c *cluster) addrs() []string {
	var a []string
	for _, r := range c.replicas {
		a = append(a, r.addr)
	}
	return a
}

// leader waits until exactly one running replica leads and is ready for
// linearizable reads, and returns it.
func (c *cluster) leader(within time.Duration) *replica {
	c.t.Helper()
	var leader *replica
	eventually(c.t, within, "one ready leader", func() bool {
		var ready []*replica
		for _, r := range c.replicas {
			if r.shard != nil && r.shard.Status().Ready {
				ready = append(ready, r)
			}
		}
		if len(ready) == 1 {
			leader = ready[0]
		}
		return len(ready) == 1
	})
	return leader
}

// follower returns a replica other than l.
func (c *cluster) follower(l *replica) *replica {
	for _, r := range c.replicas {
		if r != l {
			return r
		}
	}
	c.t.Fatal("no replica besides the leader")
	return nil
}

// waitConverged waits until all running replicas have applied the same index
// and returns their state hashes at it.
func (c *cluster) waitConverged(within time.Duration) map[string][32]byte {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		hashes := map[string][32]byte{}
		indexes := map[uint64]bool{}
		for _, r := range c.replicas {
			if r.shard == nil {
				continue
			}
			idx, h, err := r.shard.FSM().StateHash()
			if err != nil {
				c.t.Fatal(err)
			}
			indexes[idx] = true
			hashes[r.id] = h
		}
		if len(indexes) == 1 {
			return hashes
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("replicas did not reach the same applied index within %v: %v", within, indexes)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// eventually polls cond until it holds, failing the test after within.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(2 * time.Millisecond) // polling interval
	}
}

func mustOK(t testing.TB) func(fsm.Result, error) fsm.Result {
	return func(res fsm.Result, err error) fsm.Result {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if res.Code != fsm.OK {
			t.Fatalf("command failed: %v", res.Err())
		}
		return res
	}
}

var _ = errors.Is
