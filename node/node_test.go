package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/shard"
	"github.com/cairndb/cairn/shard/nodelog"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

func testNodeConfig(dir string) Config {
	c := DefaultConfig()
	c.Name = "n1"
	c.DataDir = dir
	c.RaftAddr = "127.0.0.1:0"
	c.GossipAddr = "127.0.0.1:0"
	c.GossipLocal = true
	c.Shards = 4
	c.Shard.HeartbeatTimeout = 150 * time.Millisecond
	c.Shard.ElectionTimeout = 150 * time.Millisecond
	c.Shard.LeaderLeaseTimeout = 100 * time.Millisecond
	c.Shard.CommitTimeout = 5 * time.Millisecond
	return c
}

// startReady starts a node and waits until it serves every shard.
func startReady(t *testing.T, cfg Config) *Node {
	t.Helper()
	n, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		n.Close()
		t.Fatal(err)
	}
	return n
}

func TestSingleNodeKVAndRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	n := startReady(t, testNodeConfig(dir))
	defer func() { n.Close() }()
	if got := len(n.Shards()); got != 5 {
		t.Fatalf("%d shard replicas, want meta + 4", got)
	}
	versions := map[string]uint64{}
	used := map[fsm.ShardID]bool{}
	for i := range 200 {
		key := fmt.Sprintf("key-%03d", i)
		v, err := n.Put(ctx, []byte(key), []byte("v"+key), WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		versions[key] = v
		used[n.Ring().Locate([]byte(key))] = true
	}
	if len(used) != 4 {
		t.Fatalf("200 keys landed on %d of 4 shards", len(used))
	}
	zero := uint64(0)
	if _, err := n.Put(ctx, []byte("key-000"), []byte("x"), WriteOptions{IfVersion: &zero}); !errors.Is(err, fsm.ErrVersionMismatch) {
		t.Fatalf("create-if-absent on an existing key: %v", err)
	}
	if err := n.Delete(ctx, []byte("key-199"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	delete(versions, "key-199")
	if err := n.Delete(ctx, []byte("key-199"), WriteOptions{}); !errors.Is(err, fsm.ErrNotFound) {
		t.Fatalf("deleting an absent key: %v", err)
	}
	if _, err := n.Put(ctx, nil, []byte("x"), WriteOptions{}); !errors.Is(err, fsm.ErrInvalid) {
		t.Fatalf("empty key: %v", err)
	}

	// Scan pages through every shard in key order, each key once.
	var seen []string
	var cursor []byte
	for {
		items, next, err := n.Scan(ctx, ScanOptions{Prefix: []byte("key-"), Limit: 17, Cursor: cursor}, shard.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			seen = append(seen, string(it.Key))
			if it.Version != versions[string(it.Key)] {
				t.Fatalf("%s at version %d, written at %d", it.Key, it.Version, versions[string(it.Key)])
			}
		}
		if next == nil {
			break
		}
		cursor = next
	}
	if len(seen) != 199 {
		t.Fatalf("scan returned %d keys, want 199", len(seen))
	}
	for i := 1; i < len(seen); i++ {
		if seen[i-1] >= seen[i] {
			t.Fatalf("scan out of order: %s then %s", seen[i-1], seen[i])
		}
	}
	// Backwards, the same keys in the opposite order, over pages that cut
	// across shards differently (limit 13), the last page bounded by End.
	var back []string
	cursor = nil
	for pages := 0; ; pages++ {
		if pages > 20 {
			t.Fatal("reverse scan does not end")
		}
		items, next, err := n.Scan(ctx, ScanOptions{Prefix: []byte("key-"), End: []byte("key-198"), Limit: 13, Cursor: cursor, Reverse: true}, shard.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			back = append(back, string(it.Key))
		}
		if next == nil {
			break
		}
		cursor = next
	}
	want := slices.Clone(seen[:len(seen)-1]) // key-198 is the end (excluded); key-199 was deleted
	slices.Reverse(want)
	if !slices.Equal(back, want) {
		t.Fatalf("reverse scan returned %d keys (%v...), want %d (%v...)", len(back), back[:min(3, len(back))], len(want), want[:3])
	}

	// Restart: same ring, data intact, nothing re-bootstrapped.
	epoch := n.Ring().Epoch()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n = startReady(t, testNodeConfig(dir))
	if n.Ring().Epoch() != epoch {
		t.Fatalf("ring epoch %d after restart, was %d", n.Ring().Epoch(), epoch)
	}
	for key, v := range versions {
		it, err := n.Get(ctx, []byte(key), shard.ReadOptions{})
		if err != nil || it.Version != v || string(it.Value) != "v"+key {
			t.Fatalf("%s after restart: %q@%d, %v (want @%d)", key, it.Value, it.Version, err, v)
		}
	}
	if _, err := n.Get(ctx, []byte("key-199"), shard.ReadOptions{}); !errors.Is(err, fsm.ErrNotFound) {
		t.Fatalf("deleted key after restart: %v", err)
	}
}

func TestDataDirBelongsToOneNode(t *testing.T) {
	dir := t.TempDir()
	n, err := Start(t.Context(), testNodeConfig(dir))
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	cfg := testNodeConfig(dir)
	cfg.Name = "n2"
	if _, err := Start(t.Context(), cfg); err == nil {
		t.Fatal("a node started on another node's data directory")
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := testNodeConfig(filepath.Join(t.TempDir(), "d"))
	cfg.BootstrapExpect = 3
	cfg.Shards = 0
	cfg.GossipKey = []byte("short")
	err := cfg.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"Shards", "needs Join", "GossipKey"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("Validate: %v; want it to mention %q", err, want)
		}
	}
}

// A node with its replicas in one shared raft log: writes survive a
// restart, the replicas are marked as living in it, its metrics count
// entries and syncs, and whatever the log held for a replica that is not
// on the node is dropped at start.
func TestSingleNodeSharedRaftLog(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	// Left behind by a replica of shard 99 whose files were removed.
	orphan, err := nodelog.Open(filepath.Join(dir, "raft", "nodelog"), nodelog.Options{SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := orphan.Shard(99).StoreLogs([]*raft.Log{{Index: 1, Term: 1, Data: []byte("old")}}); err != nil {
		t.Fatal(err)
	}
	if err := orphan.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := func() (Config, *prometheus.Registry) {
		c := testNodeConfig(dir)
		c.Shard.LogStore = shard.LogStoreNode
		reg := prometheus.NewRegistry()
		c.Registry = reg
		return c, reg
	}
	c, reg := cfg()
	n := startReady(t, c)
	defer func() { n.Close() }()
	if slices.Contains(n.logs.Shards(), 99) {
		t.Fatalf("the shared log still holds the removed replica of shard 99: %v", n.logs.Shards())
	}
	for i := range 100 {
		key := fmt.Sprintf("k%03d", i)
		if _, err := n.Put(ctx, []byte(key), []byte("v"+key), WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Sequential puts on one node: an entry each at least. Syncs also
	// cover terms, votes and compactions, so they are not bounded by entries.
	entries := metricSum(t, reg, "cairn_raft_log_entries_total", nil)
	syncs := metricSum(t, reg, "cairn_raft_log_syncs_total", nil)
	written := metricSum(t, reg, "cairn_raft_log_written_bytes_total", nil)
	if entries < 100 || syncs < 1 || written < 100*8 {
		t.Fatalf("after 100 sequential puts: %v entries, %v syncs, %v bytes written", entries, syncs, written)
	}
	if segs := metricSum(t, reg, "cairn_raft_log_segments", nil); segs < 1 {
		t.Fatalf("%v segments", segs)
	}
	for _, id := range []fsm.ShardID{0, 1, 4} {
		if kind, err := shard.ExistingLogStore(n.shardDir(id)); err != nil || kind != shard.LogStoreNode {
			t.Fatalf("replica of shard %d: log format %q, %v", id, kind, err)
		}
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	c, _ = cfg()
	c.Shard.LogStore = shard.LogStoreWAL // existing replicas keep the shared log
	n = startReady(t, c)
	for i := range 100 {
		key := fmt.Sprintf("k%03d", i)
		it, err := n.Get(ctx, []byte(key), shard.ReadOptions{})
		if err != nil || string(it.Value) != "v"+key {
			t.Fatalf("%s after restart: %q, %v", key, it.Value, err)
		}
	}
	if _, err := n.Put(ctx, []byte("after"), []byte("restart"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
}
