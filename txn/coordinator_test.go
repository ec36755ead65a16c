package txn_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/shard"
	"github.com/cairndb/cairn/txn"
	"github.com/hashicorp/raft"
)

// memCluster is two in-memory shard state machines behind the Cluster
// interface: keys starting with a letter before 'n' live on shard 1, the
// rest on shard 2. Proposals apply at once, in order, one entry each.
type memCluster struct {
	t      *testing.T
	mu     sync.Mutex
	shards map[fsm.ShardID]*fsm.FSM
	// forgets counts the Forget commands proposed; resolves the Resolve
	// commands and resolved the transactions they carried.
	forgets, resolves, resolved atomic.Int64
	// resolveGate, when set, holds every Resolve until it is closed.
	resolveGate atomic.Pointer[chan struct{}]
	// losePrepares, when set, makes every Prepare's answer go missing:
	// the proposal fails with an unknown outcome, after it applied when
	// the value is true.
	losePrepares atomic.Pointer[bool]
	// loseCommits does the same to every Commit; lostTxn is the
	// transaction of the last answer lost.
	loseCommits atomic.Pointer[bool]
	lostTxn     atomic.Pointer[string]
	// afterRead, when set, runs after each Read with the key read; phases
	// counts the transaction steps proposed (prepares, commits, ...).
	afterRead atomic.Pointer[func(key []byte)]
	phases    atomic.Int64
}

func newMemCluster(t *testing.T) *memCluster {
	opts := fsm.DefaultOptions("")
	opts.InMemory = true
	opts.MemTableSize = 8 << 20
	st, err := fsm.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c := &memCluster{t: t, shards: map[fsm.ShardID]*fsm.FSM{}}
	for _, id := range []fsm.ShardID{1, 2} {
		f, err := st.Shard(id)
		if err != nil {
			t.Fatal(err)
		}
		c.shards[id] = f
	}
	return c
}

func (c *memCluster) Locate(_ context.Context, key []byte) (fsm.ShardID, error) {
	if key[0] < 'n' {
		return 1, nil
	}
	return 2, nil
}

func (c *memCluster) Shards(context.Context) ([]fsm.ShardID, error) {
	return []fsm.ShardID{1, 2}, nil
}

func (c *memCluster) Propose(_ context.Context, id fsm.ShardID, cmd fsm.Command) (fsm.Result, error) {
	if cmd.Phase != nil {
		c.phases.Add(1)
	}
	if p := cmd.Phase; p != nil && p.Kind == fsm.PhaseResolve {
		if gate := c.resolveGate.Load(); gate != nil {
			<-*gate
		}
		c.resolves.Add(1)
		c.resolved.Add(int64(1 + len(p.More)))
	}
	lost := c.losePrepares.Load()
	if p := cmd.Phase; p != nil && p.Kind == fsm.PhaseCommit {
		lost = c.loseCommits.Load()
	} else if p == nil || p.Kind != fsm.PhasePrepare {
		lost = nil
	}
	if lost != nil {
		c.lostTxn.Store(&cmd.Phase.TxnID)
	}
	if lost != nil && !*lost {
		return fsm.Result{}, &shard.OutcomeUnknownError{Shard: id, RequestID: cmd.RequestID, Err: context.DeadlineExceeded}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cmd.Phase != nil && cmd.Phase.Kind == fsm.PhaseForget {
		c.forgets.Add(1)
	}
	f := c.shards[id]
	l := &raft.Log{Index: f.Applied() + 1, Term: 1, Type: raft.LogCommand, Data: fsm.EncodeGroup([]fsm.Command{cmd})}
	res := f.ApplyBatch([]*raft.Log{l})[0].([]fsm.Result)[0]
	if lost != nil {
		return fsm.Result{}, &shard.OutcomeUnknownError{Shard: id, RequestID: cmd.RequestID, Err: context.DeadlineExceeded}
	}
	return res, nil
}

// Read settles intents the way a node does: a decided transaction's
// intent is resolved first; a pending one's key, if the same intent is
// still there when read again, reads as committed.
func (c *memCluster) Read(ctx context.Context, key []byte) (fsm.Item, bool, error) {
	if f := c.afterRead.Load(); f != nil {
		defer (*f)(key)
	}
	id, _ := c.Locate(ctx, key)
	pending := ""
	for {
		it, err := c.shards[id].Get(key)
		var le *fsm.LockedError
		switch {
		case err == nil:
			return it, true, nil
		case errors.Is(err, fsm.ErrNotFound):
			return fsm.Item{}, false, nil
		case !errors.As(err, &le):
			return fsm.Item{}, false, err
		case le.TxnID == pending:
			return le.Committed, le.Found, nil
		}
		err = coordOf(c).Settle(ctx, le.TxnID, le.RecordShard, id, le.Since, le.Key)
		if errors.Is(err, txn.ErrPending) {
			pending = le.TxnID
			continue
		}
		if err != nil {
			return fsm.Item{}, false, err
		}
	}
}

var coords sync.Map // *memCluster → *txn.Coordinator, for Read's settling

func coordOf(c *memCluster) *txn.Coordinator {
	v, _ := coords.Load(c)
	return v.(*txn.Coordinator)
}

func newCoordinator(t *testing.T, cfg txn.Config) (*txn.Coordinator, *memCluster) {
	c := newMemCluster(t)
	co := txn.New(c, cfg)
	coords.Store(c, co)
	t.Cleanup(func() { co.Close(); coords.Delete(c) })
	return co, c
}

func intents(t *testing.T, c *memCluster) int {
	n := 0
	for _, f := range c.shards {
		in, err := f.Intents(100)
		if err != nil {
			t.Fatal(err)
		}
		n += len(in)
	}
	return n
}

// waitNoIntents waits until every intent is resolved: after a committed
// answer, the other participants resolve in the background.
func waitNoIntents(t *testing.T, c *memCluster) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		n := intents(t, c)
		c.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d intents left 5s after the answer", n)
		}
		time.Sleep(time.Millisecond) // polling interval, bounded by deadline
	}
}

func TestExecuteAcrossShards(t *testing.T) {
	co, c := newCoordinator(t, txn.Config{})
	ctx := t.Context()
	// "alice" on shard 1, "zed" on shard 2.
	r, err := co.Execute(ctx, txn.Request{
		If:   []fsm.Compare{{Kind: fsm.CompareAbsent, Key: []byte("alice")}},
		Then: []fsm.Op{fsm.Put([]byte("alice"), []byte("10")), fsm.Put([]byte("zed"), []byte("20")), fsm.Get([]byte("alice")), fsm.Delete([]byte("nobody"))},
		Else: []fsm.Op{fsm.Get([]byte("alice"))},
	})
	if err != nil || !r.Succeeded || r.TxnID == "" || len(r.Results) != 4 {
		t.Fatalf("first: %+v %v", r, err)
	}
	if r.Results[0].Version == 0 || r.Results[1].Version == 0 || !r.Results[2].Found || string(r.Results[2].Value) != "10" || r.Results[3].Existed {
		t.Fatalf("results %+v", r.Results)
	}
	// Right after the answer, a read sees the transaction, resolved or not.
	for k, want := range map[string]string{"alice": "10", "zed": "20"} {
		it, found, err := c.Read(ctx, []byte(k))
		if err != nil || !found || string(it.Value) != want || it.Version != r.Results[map[string]int{"alice": 0, "zed": 1}[k]].Version {
			t.Fatalf("%s = %q (version %d) %v; want %q with the version answered %+v", k, it.Value, it.Version, err, want, r.Results)
		}
	}
	waitNoIntents(t, c)
	for k, want := range map[string]string{"alice": "10", "zed": "20"} {
		id, _ := c.Locate(ctx, []byte(k))
		it, err := c.shards[id].Get([]byte(k))
		if err != nil || string(it.Value) != want {
			t.Fatalf("%s = %q %v", k, it.Value, err)
		}
	}
	// Now the comparison fails: the else branch, nothing written.
	r, err = co.Execute(ctx, txn.Request{
		If:   []fsm.Compare{{Kind: fsm.CompareAbsent, Key: []byte("alice")}},
		Then: []fsm.Op{fsm.Put([]byte("zed"), []byte("x"))},
		Else: []fsm.Op{fsm.Get([]byte("zed"))},
	})
	if err != nil || r.Succeeded || string(r.Results[0].Value) != "20" || r.TxnID != "" {
		t.Fatalf("else branch (read only, no locks): %+v %v", r, err)
	}
}

// A prepare whose answer is lost (applied or not) stops the transaction
// short of its commit point: the error says nothing applied
// (shard.ErrUnavailable, not an unknown outcome), no lock stays behind, and
// nothing of it is visible, for a transaction that writes and for one that
// only reads (one that reads a missing key takes locks at once).
func TestExecutePrepareUnanswered(t *testing.T) {
	for _, applied := range []bool{false, true} {
		co, c := newCoordinator(t, txn.Config{})
		ctx := t.Context()
		if _, err := co.Execute(ctx, txn.Request{Then: []fsm.Op{fsm.Put([]byte("alice"), []byte("1")), fsm.Put([]byte("zed"), []byte("1"))}}); err != nil {
			t.Fatal(err)
		}
		waitNoIntents(t, c)
		c.losePrepares.Store(&applied)
		check := func(what string, err error) {
			t.Helper()
			var unknown *txn.OutcomeUnknownError
			if !errors.Is(err, shard.ErrUnavailable) || errors.Is(err, shard.ErrOutcomeUnknown) || errors.As(err, &unknown) {
				t.Fatalf("applied %v, %s: %v; want shard.ErrUnavailable and no unknown outcome", applied, what, err)
			}
			c.mu.Lock()
			n := intents(t, c)
			c.mu.Unlock()
			if n != 0 {
				t.Fatalf("applied %v, %s: %d intents left after the abort", applied, what, n)
			}
		}
		_, err := co.Execute(ctx, txn.Request{Then: []fsm.Op{fsm.Put([]byte("alice"), []byte("2")), fsm.Put([]byte("zed"), []byte("2"))}})
		check("writing", err)
		// A read of a key that does not exist goes straight to the locking
		// path.
		_, err = co.Execute(ctx, txn.Request{Then: []fsm.Op{fsm.Get([]byte("alice")), fsm.Get([]byte("nobody"))}})
		check("reading", err)
		c.losePrepares.Store(nil)
		for _, k := range []string{"alice", "zed"} {
			it, found, err := c.Read(ctx, []byte(k))
			if err != nil || !found || string(it.Value) != "1" {
				t.Fatalf("applied %v: %s = %q (%v, found %v), want the value from before", applied, k, it.Value, err, found)
			}
		}
	}
}

// A commit whose answer is lost is followed by an abort on the record's
// shard, and whichever applied first decides: a commit that never applied
// is aborted (an unavailable error, nothing visible, no lock left), and
// its record kept, so that the commit, arriving late, applies nothing; one
// that applied stays committed and is reported as such, with its writes
// visible and the other shard resolved.
func TestExecuteCommitUnanswered(t *testing.T) {
	for _, applied := range []bool{false, true} {
		co, c := newCoordinator(t, txn.Config{})
		ctx := t.Context()
		c.loseCommits.Store(&applied)
		// The commit is proposed again until the context ends.
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		_, err := co.Execute(short, txn.Request{Then: []fsm.Op{fsm.Put([]byte("alice"), []byte("1")), fsm.Put([]byte("zed"), []byte("1"))}})
		c.loseCommits.Store(nil)
		var unknown *txn.OutcomeUnknownError
		if applied {
			if !errors.As(err, &unknown) || unknown.TxnID == "" || !strings.Contains(err.Error(), "committed") {
				t.Fatalf("applied: %v; want an unknown outcome that says it committed", err)
			}
		} else if !errors.Is(err, shard.ErrUnavailable) || errors.Is(err, shard.ErrOutcomeUnknown) || errors.As(err, &unknown) {
			t.Fatalf("not applied: %v; want shard.ErrUnavailable and no unknown outcome", err)
		}
		waitNoIntents(t, c)
		if !applied {
			// The commit arrives after all, once the resolves are done and
			// any record forgetting has had its chance.
			co.Close()
			id := *c.lostTxn.Load()
			res, perr := c.Propose(ctx, 1, fsm.Command{RequestID: id + "/late", Phase: &fsm.Phase{Kind: fsm.PhaseCommit, TxnID: id, RecordShard: 1,
				Participants: []fsm.ShardID{1, 2}, Writes: []fsm.Op{fsm.Put([]byte("alice"), []byte("1"))}}})
			if perr != nil || res.Status != fsm.TxnAborted {
				t.Fatalf("late commit of %s: %+v %v; want it to find the record aborted", id, res, perr)
			}
		}
		for _, k := range []string{"alice", "zed"} {
			it, found, err := c.Read(ctx, []byte(k))
			if err != nil || found != applied || applied && string(it.Value) != "1" {
				t.Fatalf("applied %v: %s = %q (found %v, %v)", applied, k, it.Value, found, err)
			}
		}
	}
}

// A transaction that only reads compares each round of reads with the one
// before: when a key changes after each of its first three reads, the
// fourth and fifth rounds agree, and the answer is the latest value,
// without a lock taken.
func TestReadOnlyRoundsSlide(t *testing.T) {
	co, c := newCoordinator(t, txn.Config{})
	ctx := t.Context()
	// Plain writes: no transaction steps left running in the background.
	for id, kv := range map[fsm.ShardID][2]string{1: {"alice", "a"}, 2: {"zed", "0"}} {
		if _, err := c.Propose(ctx, id, fsm.Command{Ops: []fsm.Op{fsm.Put([]byte(kv[0]), []byte(kv[1]))}}); err != nil {
			t.Fatal(err)
		}
	}
	var zedReads atomic.Int64
	bump := func(key []byte) {
		if string(key) != "zed" {
			return
		}
		if n := zedReads.Add(1); n <= 3 {
			if _, err := c.Propose(ctx, 2, fsm.Command{Ops: []fsm.Op{fsm.Put([]byte("zed"), []byte(strconv.FormatInt(n, 10)))}}); err != nil {
				t.Error(err)
			}
		}
	}
	c.afterRead.Store(&bump)
	phases := c.phases.Load()
	r, err := co.Execute(ctx, txn.Request{Then: []fsm.Op{fsm.Get([]byte("alice")), fsm.Get([]byte("zed"))}})
	c.afterRead.Store(nil)
	if err != nil || !r.Succeeded || string(r.Results[0].Value) != "a" || string(r.Results[1].Value) != "3" {
		t.Fatalf("read: %+v %v; want alice a, zed 3", r, err)
	}
	if n := zedReads.Load(); n != 5 {
		t.Errorf("zed read %d times, want 5 (each round compared with the one before)", n)
	}
	if n := c.phases.Load() - phases; n != 0 {
		t.Errorf("%d transaction steps proposed, want none (no locks)", n)
	}
}

// A transaction whose prepare meets another's lock loses (nothing applied),
// and once the other is decided it goes through.
func TestExecuteConflictAndSettle(t *testing.T) {
	co, c := newCoordinator(t, txn.Config{TTL: 50 * time.Millisecond, Attempts: 2})
	ctx := t.Context()
	// Another transaction holds "alice" and is past its deadline (its
	// record says 1 ms since the epoch).
	if _, err := c.Propose(ctx, 1, fsm.Command{Phase: &fsm.Phase{Kind: fsm.PhaseBegin, TxnID: "old", Deadline: 1}}); err != nil {
		t.Fatal(err)
	}
	if r, _ := c.Propose(ctx, 1, fsm.Command{Phase: &fsm.Phase{Kind: fsm.PhasePrepare, TxnID: "old", RecordShard: 1,
		Writes: []fsm.Op{fsm.Put([]byte("alice"), []byte("stale"))}}}); r.Code != fsm.OK {
		t.Fatalf("prepare old: %+v", r)
	}
	// The new transaction settles it (aborting it: its deadline passed)
	// and commits; the abandoned write never shows.
	r, err := co.Execute(ctx, txn.Request{Then: []fsm.Op{fsm.Put([]byte("alice"), []byte("new")), fsm.Put([]byte("zed"), []byte("new"))}})
	if err != nil || !r.Succeeded {
		t.Fatalf("execute: %+v %v", r, err)
	}
	it, _, _ := c.Read(ctx, []byte("alice"))
	if string(it.Value) != "new" {
		t.Fatalf("alice = %q", it.Value)
	}
	if st, _, found, _ := c.shards[1].Record("old"); !found || st != fsm.TxnAborted {
		t.Fatalf("old record: %v %t", st, found)
	}
}

// The coordinator dies after the decision: readers resolve the committed
// intents themselves; before the decision, the write is invisible and, past
// the deadline, aborted.
func TestCrashAfterDecideThenRead(t *testing.T) {
	crash := errors.New("crash")
	for _, tt := range []struct {
		point txn.Failpoint
		want  string
	}{{txn.AfterDecide, "v"}, {txn.BeforeDecide, ""}} {
		t.Run(string(tt.point), func(t *testing.T) {
			co, c := newCoordinator(t, txn.Config{TTL: time.Hour, Failpoint: func(f txn.Failpoint) error {
				if f == tt.point {
					return crash
				}
				return nil
			}})
			ctx := t.Context()
			if _, err := co.Execute(ctx, txn.Request{Then: []fsm.Op{fsm.Put([]byte("alice"), []byte("v")), fsm.Put([]byte("zed"), []byte("v"))}}); !errors.Is(err, crash) {
				t.Fatalf("execute: %v", err)
			}
			if intents(t, c) == 0 {
				t.Fatal("no intents left by the crash")
			}
			for _, k := range []string{"alice", "zed"} {
				it, found, err := c.Read(ctx, []byte(k))
				if err != nil || string(it.Value) != tt.want || found != (tt.want != "") {
					t.Fatalf("%s = %q (found %t), %v; want %q", k, it.Value, found, err, tt.want)
				}
			}
		})
	}
}

// Finished transactions' records are deleted in batches: 300 queued while
// the shard is busy go in a few Forget commands, and none is left.
func TestForgetsAreBatched(t *testing.T) {
	co, c := newCoordinator(t, txn.Config{})
	ctx := t.Context()
	var ids []string
	for i := range 300 {
		id := fmt.Sprintf("done-%03d", i)
		if r, _ := c.Propose(ctx, 1, fsm.Command{Phase: &fsm.Phase{Kind: fsm.PhaseDecide, TxnID: id}}); r.Status != fsm.TxnAborted {
			t.Fatalf("decide %s: %+v", id, r)
		}
		ids = append(ids, id)
	}
	c.mu.Lock() // the shard is busy: the forgets queue up
	for _, id := range ids {
		co.ForgetLater(id, 1)
	}
	c.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for _, id := range ids {
		for {
			c.mu.Lock()
			_, _, found, err := c.shards[1].Record(id)
			c.mu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			if !found {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("record %s never forgotten", id)
			}
			time.Sleep(time.Millisecond)
		}
	}
	if n := c.forgets.Load(); n > 4 {
		t.Fatalf("%d Forget commands for 300 records", n)
	}
}

// Committed transactions' resolves queue while one is in flight and then
// go in one command: 100 transactions answered while the first resolve
// is held take at most three Resolve commands, and every intent goes.
func TestResolvesAreBatched(t *testing.T) {
	co, c := newCoordinator(t, txn.Config{})
	ctx := t.Context()
	gate := make(chan struct{})
	c.resolveGate.Store(&gate)
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			r, err := co.Execute(ctx, txn.Request{Then: []fsm.Op{
				fsm.Put(fmt.Appendf(nil, "a%03d", i), []byte("1")), fsm.Put(fmt.Appendf(nil, "z%03d", i), []byte("2"))}})
			if err != nil || !r.Succeeded {
				t.Errorf("transaction %d: %+v %v", i, r, err)
			}
		})
	}
	answered := make(chan struct{})
	go func() { wg.Wait(); close(answered) }()
	select {
	case <-answered: // every answer came back with the resolves held
	case <-time.After(10 * time.Second):
		close(gate) // let the transactions finish before the test ends
		<-answered
		t.Fatal("no answers within 10s while the resolves were held: the answers wait for them")
	}
	if t.Failed() {
		return
	}
	if n := intents(t, c); n == 0 {
		t.Fatal("no intents while the resolves are held: the answers waited for them")
	}
	c.resolveGate.Store(nil)
	close(gate)
	waitNoIntents(t, c)
	if got := c.resolved.Load(); got != 100 {
		t.Fatalf("%d transactions resolved, want 100", got)
	}
	if n := c.resolves.Load(); n > 3 {
		t.Fatalf("%d Resolve commands for 100 transactions", n)
	}
	t.Logf("100 transactions resolved in %d commands", c.resolves.Load())
}
