package shard

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairndb/cairn/shard/nodelog"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

func storeRange(t *testing.T, s logStore, from, to uint64) {
	t.Helper()
	var logs []*raft.Log
	for i := from; i <= to; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: fmt.Appendf(nil, "e%d", i)})
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatalf("store %d-%d: %v", from, to, err)
	}
}

func wantBounds(t *testing.T, s logStore, first, last uint64) {
	t.Helper()
	f, err := s.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	if f != first || l != last {
		t.Fatalf("log holds %d-%d, want %d-%d", f, l, first, last)
	}
}

func wantEntry(t *testing.T, s logStore, i uint64) {
	t.Helper()
	var l raft.Log
	if err := s.GetLog(i, &l); err != nil {
		t.Fatalf("entry %d: %v", i, err)
	}
	if l.Index != i || string(l.Data) != fmt.Sprintf("e%d", i) {
		t.Fatalf("entry %d: index %d, data %q", i, l.Index, l.Data)
	}
}

// The WAL store is raft's log on the non-monotonic path: an append past the
// end of the log (after a snapshot install) replaces the log, which raft-wal
// alone refuses; the store keeps its format, bounds and raft's term across a
// reopen, whatever format is asked for then.
func TestWALStoreStartsOverAfterAGap(t *testing.T) {
	dir := t.TempDir()
	s, kind, err := openLogStore(dir, LogStoreWAL, hclog.NewNullLogger(), nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	if kind != LogStoreWAL {
		t.Fatalf("new replica's log is %q, want wal", kind)
	}
	cache, err := raft.NewLogCache(8, s)
	if err != nil {
		t.Fatal(err)
	}
	if cache.IsMonotonic() {
		t.Fatal("raft sees the WAL store as monotonic: it would empty the log after a snapshot install and keep its old last index")
	}

	storeRange(t, s, 1, 10)
	storeRange(t, s, 20, 22)
	wantBounds(t, s, 20, 22)
	var l raft.Log
	if err := s.GetLog(5, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("entry 5 after the gap: %v, want not found", err)
	}
	wantEntry(t, s, 21)

	// Compaction from the head and appends right after the end work as usual.
	if err := s.DeleteRange(20, 20); err != nil {
		t.Fatal(err)
	}
	storeRange(t, s, 23, 23)
	wantBounds(t, s, 21, 23)
	if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, kind, err = openLogStore(dir, LogStoreBolt, hclog.NewNullLogger(), nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if kind != LogStoreWAL {
		t.Fatalf("reopened as %q, want the wal it was created with", kind)
	}
	wantBounds(t, s, 21, 23)
	wantEntry(t, s, 23)
	if term, err := s.GetUint64([]byte("CurrentTerm")); err != nil || term != 7 {
		t.Fatalf("term after reopen: %d, %v", term, err)
	}
}

func TestParseLogStore(t *testing.T) {
	for in, want := range map[string]LogStore{"": LogStoreWAL, "wal": LogStoreWAL, "bolt": LogStoreBolt, "node": LogStoreNode} {
		if got, err := ParseLogStore(in); err != nil || got != want {
			t.Errorf("ParseLogStore(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseLogStore("rocks"); err == nil {
		t.Error(`ParseLogStore("rocks") accepted`)
	}
	cfg := testConfig()
	cfg.NodeID, cfg.Dir, cfg.Store, cfg.Mux = "n1", t.TempDir(), &Store{}, &Mux{}
	cfg.LogStore = "rocks"
	if err := cfg.Validate(); err == nil {
		t.Error("a config with log store \"rocks\" validated")
	}
}

// Replicas of one group may use different log formats, and each keeps the
// format it was created with when the node later asks for the other one.
func TestReplicaKeepsItsLogFormat(t *testing.T) {
	created := map[string]LogStore{"n1": LogStoreBolt, "n2": LogStoreWAL, "n3": LogStoreNode}
	asked := created
	c := newCluster(t, 3, func(cfg *Config) { cfg.LogStore = asked[cfg.NodeID] })
	c.bootstrap(3)
	ctx := t.Context()
	l := c.leader(10 * time.Second)
	for i := range 50 {
		mustOK(t)(l.shard.Propose(ctx, putCmd(fmt.Sprintf("k%d", i), "v")))
	}
	check := func() {
		t.Helper()
		for _, r := range c.replicas {
			if got := r.shard.Status().LogStore; got != created[r.id] {
				t.Fatalf("%s runs a %q log, created as %q", r.id, got, created[r.id])
			}
		}
	}
	check()

	asked = map[string]LogStore{"n1": LogStoreNode, "n2": LogStoreBolt, "n3": LogStoreWAL}
	for _, r := range c.replicas {
		c.stop(r)
		c.restart(r)
		l = c.leader(10 * time.Second)
		mustOK(t)(l.shard.Propose(ctx, putCmd("after-"+r.id, "v")))
	}
	check()
	hashes := c.waitConverged(10 * time.Second)
	for _, r := range c.replicas {
		if hashes[r.id] != hashes[l.id] {
			t.Fatalf("%s's state differs from the leader's", r.id)
		}
		it, _, err := r.shard.Get(ctx, []byte("k49"), ReadOptions{Consistency: Stale})
		if err != nil || string(it.Value) != "v" {
			t.Fatalf("%s: k49 = %q, %v", r.id, it.Value, err)
		}
	}
}

// A replica in the node's shared log needs that log to open, and a replica
// created again under the same shard after its files were removed starts
// empty: nothing of the earlier replica's log or term comes back.
func TestNodeLogReplicaRecreatedStartsEmpty(t *testing.T) {
	raftDir := t.TempDir()
	dir := filepath.Join(raftDir, "7")
	if _, _, err := openLogStore(dir, LogStoreNode, hclog.NewNullLogger(), nil, 7); err == nil || !strings.Contains(err.Error(), "shared log") {
		t.Fatalf("a node-log replica without the shared log: got %v, want an error", err)
	}
	shared, err := nodelog.Open(filepath.Join(raftDir, "nodelog"), nodelog.Options{SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { shared.Close() }()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	s, kind, err := openLogStore(dir, LogStoreNode, hclog.NewNullLogger(), shared, 7)
	if err != nil || kind != LogStoreNode {
		t.Fatalf("open: %q, %v", kind, err)
	}
	if err := s.StoreLogs([]*raft.Log{{Index: 1, Term: 2, Data: []byte("a")}, {Index: 2, Term: 2, Data: []byte("b")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 2); err != nil {
		t.Fatal(err)
	}
	// Asked for another format, the replica keeps the shared log, across a
	// restart of the node's log.
	if err := shared.Close(); err != nil {
		t.Fatal(err)
	}
	if shared, err = nodelog.Open(filepath.Join(raftDir, "nodelog"), nodelog.Options{SegmentSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	s, kind, err = openLogStore(dir, LogStoreWAL, hclog.NewNullLogger(), shared, 7)
	if err != nil || kind != LogStoreNode {
		t.Fatalf("reopen asking for wal: %q, %v; want the node log", kind, err)
	}
	if last, _ := s.LastIndex(); last != 2 {
		t.Fatalf("last index after reopen %d, want 2", last)
	}
	// The replica moves away: its files go, and later it is created again.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	s, _, err = openLogStore(dir, LogStoreNode, hclog.NewNullLogger(), shared, 7)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	if first != 0 || last != 0 {
		t.Fatalf("re-created replica holds entries %d-%d of the earlier one", first, last)
	}
	if v, err := s.GetUint64([]byte("CurrentTerm")); err == nil {
		t.Fatalf("re-created replica has the earlier one's term %d", v)
	}
}
