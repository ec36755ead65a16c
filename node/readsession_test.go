package node

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cairndb/cairn/docstore"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/shard"
	"github.com/prometheus/client_golang/prometheus"
)

// readRounds sums the read rounds (leadership checks and read-index
// fetches) of every replica on the nodes.
func readRounds(nodes ...*Node) uint64 {
	var total uint64
	for _, n := range nodes {
		reps := []*shard.Shard{n.meta}
		n.mu.RLock()
		for _, s := range n.shards {
			reps = append(reps, s)
		}
		n.mu.RUnlock()
		for _, s := range reps {
			if s != nil {
				a, b := s.ReadRounds()
				total += a + b
			}
		}
	}
	return total
}

// An indexed query reads the schema on every shard, the statistics, the
// index on every shard and the documents it names, and each read reflects
// every write acknowledged before the query. With a read session the
// query pays for at most one round per shard: on a one-node cluster (every
// read local, none behind a leader's commit), at most 5 per query (four
// data shards and the meta group), where the same documents read one by
// one cost a round each. On a follower a read that finds its replica behind
// the read index is served by the leader, so there a session saves less
// (TestReadSessionRetryReadsAfresh covers followers).
func TestDocFindSharesReadRounds(t *testing.T) {
	n := startReady(t, testNodeConfig(t.TempDir()))
	defer n.Close()
	ctx := t.Context()
	c := n.Docs().Collection("people")
	for i := range 40 {
		if _, _, err := c.Insert(ctx, docstore.Doc{"_id": fmt.Sprintf("p%02d", i), "age": i % 10}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.CreateIndex(ctx, docstore.IndexSpec{Name: "by_age", Fields: []string{"age"}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Insert(ctx, docstore.Doc{"_id": "late", "age": 3}); err != nil {
		t.Fatal(err)
	}
	const queries = 5
	before := readRounds(n)
	for range queries {
		docs, _, err := c.Find(ctx, docstore.Query{Filter: mustFilter(t, `{"age":{"$in":[3,4]}}`)})
		if err != nil || len(docs) != 9 {
			t.Fatalf("find: %d documents, %v; want 9 (8 and the late one)", len(docs), err)
		}
	}
	perQuery := float64(readRounds(n)-before) / queries
	ex, err := c.Explain(ctx, docstore.Query{Filter: mustFilter(t, `{"age":{"$in":[3,4]}}`)})
	if err != nil || ex.Chosen.Index != "by_age" || ex.ActualRows != 9 {
		t.Fatalf("explain: %+v %v; want the by_age index reading 9 documents", ex.Chosen, err)
	}
	// The same documents read one by one, outside a query.
	var ids []string
	for i := range 40 {
		if i%10 == 3 || i%10 == 4 {
			ids = append(ids, fmt.Sprintf("p%02d", i))
		}
	}
	before = readRounds(n)
	for _, id := range ids {
		if _, err := c.Get(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	oneByOne := readRounds(n) - before
	t.Logf("%.1f read rounds per query; %d for %d of its documents read one by one", perQuery, oneByOne, len(ids))
	if perQuery > 5 {
		t.Fatalf("%.1f read rounds per query, want at most 5 (one per shard)", perQuery)
	}
	if oneByOne < uint64(len(ids)) {
		t.Fatalf("%d rounds for %d separate reads: the count misses rounds", oneByOne, len(ids))
	}
}

// A read in a session that meets a lock of a transaction which then
// commits, resolves and forgets its record before the read settles it
// must read afresh: the session's replica (a follower here, its applies
// held so that it lags) proved fresh before the transaction, and read
// again at that point it would still show the lock and answer the value
// from before the transaction, which had committed before the read began
// its retry.
func TestReadSessionRetryReadsAfresh(t *testing.T) {
	tc := startCluster(t, 3, 4)
	tc.waitReady()
	nodes := []*Node{tc.nodes["n1"], tc.nodes["n2"], tc.nodes["n3"]}
	ctx := t.Context()
	ring := nodes[0].Ring()
	var ka, kb []byte
	for i := 0; kb == nil; i++ {
		k := []byte(fmt.Sprintf("sk-%d", i))
		switch {
		case ka == nil:
			ka = k
		case ring.Locate(k) != ring.Locate(ka):
			kb = k
		}
	}
	a, b := ring.Locate(ka), ring.Locate(kb)
	// f: a node following shard b.
	var f *Node
	var fb *shard.Shard
	waitFor(t, "a follower of the key's shard", 10*time.Second, func() error {
		for _, n := range nodes {
			if s := n.localShard(b); s != nil {
				if _, addr, self := s.Leader(); !self && addr != "" {
					f, fb = n, s
					return nil
				}
			}
		}
		return fmt.Errorf("no follower of %v with a known leader", b)
	})
	if _, err := f.Put(ctx, kb, []byte("old"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	sctx := withReadSession(ctx)
	if it, err := f.Get(sctx, kb, shard.ReadOptions{}); err != nil || string(it.Value) != "old" {
		t.Fatalf("first read in the session: %q %v", it.Value, err)
	}
	prepareTx(t, f, a, b, kb)
	waitFor(t, "the follower holding the intent", 10*time.Second, func() error {
		if in, _ := fb.FSM().Intents(10); len(in) == 0 {
			return fmt.Errorf("no intent on %v's replica yet", b)
		}
		return nil
	})
	release := fb.HoldApplies()
	defer release()
	// After the transaction is done, the follower lags for a while more: a
	// fresh read waits for it.
	hook, met := commitUnderRead(t, f, a, b, ka, kb, func() { time.AfterFunc(200*time.Millisecond, release) })
	testHookLockedRead.Store(&hook)
	defer testHookLockedRead.Store(nil)
	it, err := f.Get(sctx, kb, shard.ReadOptions{})
	if !met.Load() {
		t.Fatal("the read never met the intent")
	}
	if err != nil || string(it.Value) != "new" {
		t.Fatalf("read in the session after the transaction committed: %q, %v; want new", it.Value, err)
	}
}

// GetMany (the document store's reads of a query's documents) returns
// what Get returns for each key, absent ones included: without a read
// session (all read in parallel), in one that proved two shards (some
// local, some parallel) and in one that proved every shard fresh here,
// where it reads each shard's keys together, in one read of the replica
// and without a round. A key held by a transaction's intent makes its
// shard's keys be read one by one, and reads as Get reads it.
func TestDocsGetMany(t *testing.T) {
	cfg := testNodeConfig(t.TempDir())
	reg := prometheus.NewRegistry()
	cfg.Registry = reg
	n := startReady(t, cfg)
	defer n.Close()
	ctx := t.Context()
	var keys [][]byte
	for i := range 30 {
		k := []byte(fmt.Sprintf("many-%02d", i))
		keys = append(keys, k)
		if i%6 != 5 { // every sixth key stays absent
			if _, err := n.Put(ctx, k, []byte(fmt.Sprint("v", i)), WriteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	check := func(what string, items []fsm.Item, found []bool, err error) {
		t.Helper()
		if err != nil || len(items) != len(keys) || len(found) != len(keys) {
			t.Fatalf("%s: %d items, %d found flags, %v", what, len(items), len(found), err)
		}
		for i, k := range keys {
			want, err := n.Get(ctx, k, shard.ReadOptions{})
			switch {
			case errors.Is(err, fsm.ErrNotFound):
				if found[i] {
					t.Fatalf("%s: %s found (%q), want absent", what, k, items[i].Value)
				}
			case err != nil:
				t.Fatal(err)
			case !found[i] || string(items[i].Value) != string(want.Value) || items[i].Version != want.Version:
				t.Fatalf("%s: %s = %q@%d (found %v), want %q@%d", what, k, items[i].Value, items[i].Version, found[i], want.Value, want.Version)
			}
		}
	}
	kv := docsKV{n}
	items, found, err := kv.GetMany(ctx, keys)
	check("without a session", items, found, err)
	// Some shards proved, some not: local reads and parallel ones at once.
	half := withReadSession(ctx)
	for _, id := range n.Ring().Shards()[:2] {
		for _, k := range keys {
			if n.Ring().Locate(k) == id {
				if _, _, err := kv.Get(half, k); err != nil {
					t.Fatal(err)
				}
				break
			}
		}
	}
	items, found, err = kv.GetMany(half, keys)
	check("in a session that proved two shards", items, found, err)
	sctx := withReadSession(ctx)
	for _, id := range n.Ring().Shards() {
		for _, k := range keys {
			if n.Ring().Locate(k) == id {
				if _, _, err := kv.Get(sctx, k); err != nil {
					t.Fatal(err)
				}
				break
			}
		}
	}
	before := readRounds(n)
	reads := func() float64 { return metricSum(t, reg, "cairn_shard_reads_total", nil) }
	readsBefore := reads()
	items, found, err = kv.GetMany(sctx, keys)
	if r := readRounds(n) - before; r != 0 {
		t.Fatalf("%d read rounds for keys on shards the session proved fresh, want none", r)
	}
	if r, shards := reads()-readsBefore, len(n.Ring().Shards()); r != float64(shards) {
		t.Fatalf("%v reads of replicas for %d keys on %d shards, want one per shard", r, len(keys), shards)
	}
	check("in a session", items, found, err)

	// A transaction's intent on one key: its shard's keys are read one by
	// one, and the held key reads as Get reads it (the committed value, as
	// the transaction is still pending).
	held := keys[0]
	var other fsm.ShardID
	for _, id := range n.Ring().Shards() {
		if id != n.Ring().Locate(held) {
			other = id
			break
		}
	}
	prepareTx(t, n, other, n.Ring().Locate(held), held)
	sctx = withReadSession(ctx)
	for _, k := range keys[1:] {
		if _, _, err := kv.Get(sctx, k); err != nil {
			t.Fatal(err)
		}
	}
	items, found, err = kv.GetMany(sctx, keys)
	check("in a session, one key held by an intent", items, found, err)
	if string(items[0].Value) != "v0" {
		t.Fatalf("held key read as %q, want v0 (the transaction has not committed)", items[0].Value)
	}
}
