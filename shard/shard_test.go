package shard

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/hashicorp/raft"
)

func putCmd(key, value string) fsm.Command {
	return fsm.Command{Ops: []fsm.Op{fsm.Put([]byte(key), []byte(value))}}
}

func TestSmokeThreeReplicas(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.bootstrap(3)
	ctx := t.Context()
	l := c.leader(10 * time.Second)
	var last fsm.Result
	for i := range 50 {
		last = mustOK(t)(l.shard.Propose(ctx, putCmd(fmt.Sprintf("k%03d", i), fmt.Sprintf("v%d", i))))
	}
	for _, r := range c.replicas {
		it, info, err := r.shard.Get(ctx, []byte("k049"), ReadOptions{})
		if err != nil {
			t.Fatalf("%s: %v", r.id, err)
		}
		if string(it.Value) != "v49" || it.Version != last.Ops[0].Version {
			t.Fatalf("%s: got %q@%d, want v49@%d", r.id, it.Value, it.Version, last.Ops[0].Version)
		}
		if info.Index < last.Ops[0].Version>>20 {
			t.Fatalf("%s: read at index %d before the write's index %d", r.id, info.Index, last.Ops[0].Version>>20)
		}
	}
	hashes := c.waitConverged(5 * time.Second)
	if hashes["n1"] != hashes["n2"] || hashes["n1"] != hashes["n3"] {
		t.Fatalf("replica state hashes differ: %x", hashes)
	}
	// Replication is never pipelined (see the transport's MaxRPCsInFlight).
	other := c.replicas[0]
	if other == l {
		other = c.replicas[1]
	}
	if _, err := l.shard.trans.AppendEntriesPipeline(raft.ServerID(other.id), raft.ServerAddress(other.addr)); !errors.Is(err, raft.ErrPipelineReplicationNotSupported) {
		t.Fatalf("pipelined replication offered: %v", err)
	}
	for _, r := range c.replicas {
		if r == l {
			continue
		}
		_, err := r.shard.Propose(ctx, putCmd("x", "y"))
		var nl *NotLeaderError
		if !errors.As(err, &nl) || nl.Leader != l.addr || !IsRetryable(err) {
			t.Fatalf("propose on follower %s: got %v, want NotLeaderError naming %s", r.id, err, l.addr)
		}
	}
}

func TestBadInputRejectedBeforeProposing(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.bootstrap(1)
	l := c.leader(10 * time.Second)
	ctx := t.Context()
	mustOK(t)(l.shard.Propose(ctx, putCmd("warm", "up")))
	before := l.shard.Status().LastIndex
	big := make([]byte, 5<<10)
	tests := []struct {
		name string
		cmd  fsm.Command
		want error
	}{
		{"no ops", fsm.Command{}, fsm.ErrInvalid},
		{"empty key", putCmd("", "v"), fsm.ErrInvalid},
		{"key over 4KiB", fsm.Command{Ops: []fsm.Op{fsm.Put(big, nil)}}, fsm.ErrTooLarge},
		{"value over 1MiB", fsm.Command{Ops: []fsm.Op{fsm.Put([]byte("k"), make([]byte, 1<<20+1))}}, fsm.ErrTooLarge},
		{"too many ops", fsm.Command{Ops: make([]fsm.Op, 1025)}, fsm.ErrTooLarge},
		{"batch over a transaction", func() fsm.Command {
			var cmd fsm.Command
			for i := range 1000 {
				cmd.Ops = append(cmd.Ops, fsm.Put(fmt.Appendf(make([]byte, 0, 4096), "%04d%s", i, big[:4000]), make([]byte, 900)))
			}
			return cmd
		}(), fsm.ErrTooLarge},
		{"bad op type", fsm.Command{Ops: []fsm.Op{{Type: 9, Key: []byte("k")}}}, fsm.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := l.shard.Propose(ctx, tc.cmd)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	// A context that ended before Propose is never queued: each of these
	// reports the context's error, not an unknown outcome.
	ended, cancel := context.WithCancel(ctx)
	cancel()
	for i := range 300 {
		if _, err := l.shard.Propose(ended, putCmd(fmt.Sprint("ended", i), "v")); !errors.Is(err, context.Canceled) || errors.Is(err, ErrOutcomeUnknown) {
			t.Fatalf("proposal %d with an ended context: %v, want context.Canceled", i, err)
		}
	}
	if after := l.shard.Status().LastIndex; after != before {
		t.Fatalf("rejected commands reached the log: last index %d -> %d", before, after)
	}
	if _, _, err := l.shard.Get(ctx, []byte("k"), ReadOptions{Consistency: 7}); !errors.Is(err, fsm.ErrInvalid) {
		t.Fatalf("unknown consistency: got %v", err)
	}
}

func TestGroupCommitCoalesces(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.bootstrap(3)
	l := c.leader(10 * time.Second)
	ctx := t.Context()
	before := l.shard.Status().LastIndex
	const n = 400
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			res, err := l.shard.Propose(ctx, putCmd(fmt.Sprintf("g%d", i), "v"))
			if err == nil {
				err = res.Err()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	entries := l.shard.Status().LastIndex - before
	if entries >= n {
		t.Fatalf("%d concurrent proposals took %d log entries; want fewer (group commit)", n, entries)
	}
	t.Logf("%d proposals in %d entries", n, entries)
	res, _, err := l.shard.Scan(ctx, fsm.ScanOptions{Prefix: []byte("g")}, ReadOptions{})
	if err != nil || len(res.Items) != n {
		t.Fatalf("scan after group commit: %d items, err %v", len(res.Items), err)
	}
}

// writer proposes unique keys until stopped and records what was acknowledged.
type writer struct {
	mu    sync.Mutex
	acked map[string]uint64 // key -> version
}

func (c *cluster) startWriters(ctx context.Context, n int) (*writer, func()) {
	w := &writer{acked: map[string]uint64{}}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for g := range n {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				var target *Shard
				for _, r := range c.replicas {
					if sh := c.shardOf(r); sh != nil && sh.Status().Role == "leader" {
						target = sh
					}
				}
				if target == nil {
					time.Sleep(2 * time.Millisecond) // no leader yet: back off briefly
					continue
				}
				key := fmt.Sprintf("w%d-%06d", g, i)
				pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
				res, err := target.Propose(pctx, putCmd(key, key))
				pcancel()
				if err == nil && res.Code == fsm.OK {
					w.mu.Lock()
					w.acked[key] = res.Ops[0].Version
					w.mu.Unlock()
				}
			}
		})
	}
	return w, func() { cancel(); wg.Wait() }
}

// checkAcked asserts every acknowledged write is readable, linearizably, with
// its acknowledged version, through replica r.
func (w *writer) checkAcked(t *testing.T, ctx context.Context, r *replica) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.acked) == 0 {
		t.Fatal("no write was acknowledged")
	}
	for key, version := range w.acked {
		it, _, err := r.shard.Get(ctx, []byte(key), ReadOptions{})
		if err != nil {
			t.Fatalf("acknowledged %s lost on %s: %v", key, r.id, err)
		}
		if it.Version != version || string(it.Value) != key {
			t.Fatalf("%s on %s: got %q@%d, want %q@%d", key, r.id, it.Value, it.Version, key, version)
		}
	}
}

func TestLeaderKilledNewLeaderWithinBound(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.bootstrap(3)
	ctx := t.Context()
	old := c.leader(10 * time.Second)
	w, stop := c.startWriters(ctx, 4)
	waitAcked(t, w, 200)

	killed := time.Now()
	c.stop(old)
	// The bound: a follower waits up to 2 heartbeat timeouts before it
	// campaigns, a campaign up to 2 election timeouts, then the new leader
	// applies a barrier. Allow twice that for a loaded 2-core machine.
	cfg := testConfig()
	bound := 2 * (2*cfg.HeartbeatTimeout + 2*cfg.ElectionTimeout)
	nl := c.leader(10 * time.Second)
	mustOK(t)(nl.shard.Propose(ctx, putCmd("after-failover", "x")))
	took := time.Since(killed)
	t.Logf("new leader %s accepted a write %v after the kill (bound %v)", nl.id, took, bound)
	if took > bound {
		t.Fatalf("new leader took writes only after %v, bound %v", took, bound)
	}
	n := w.count()
	waitAcked(t, w, n+100)
	stop()
	w.checkAcked(t, ctx, nl)

	c.restart(old)
	hashes := c.waitConverged(10 * time.Second)
	for id, h := range hashes {
		if h != hashes[nl.id] {
			t.Fatalf("replica %s diverged after restart", id)
		}
	}
	w.checkAcked(t, ctx, old)
}

func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

func waitAcked(t *testing.T, w *writer, n int) {
	t.Helper()
	eventually(t, 20*time.Second, fmt.Sprintf("%d writes acknowledged", n), func() bool { return w.count() >= n })
}

func TestFollowerCatchesUpFromLogAndSnapshot(t *testing.T) {
	for _, format := range []LogStore{LogStoreWAL, LogStoreBolt, LogStoreNode} {
		t.Run(string(format), func(t *testing.T) { followerCatchesUpFromLogAndSnapshot(t, format) })
	}
}

func followerCatchesUpFromLogAndSnapshot(t *testing.T, format LogStore) {
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.LogStore = format
		cfg.TrailingLogs = 64
		cfg.SnapshotThreshold = 128
	})
	c.bootstrap(3)
	ctx := t.Context()
	l := c.leader(10 * time.Second)
	f := c.follower(l)

	// Down briefly: the log still holds what it missed.
	c.stop(f)
	for i := range 30 {
		mustOK(t)(l.shard.Propose(ctx, putCmd(fmt.Sprintf("a%d", i), "v")))
	}
	c.restart(f)
	c.waitConverged(10 * time.Second)
	if n := f.shard.Status().Snapshots; n != 0 {
		t.Fatalf("follower installed %d snapshots catching up 30 entries", n)
	}

	// Down for longer than the leader keeps: it needs a snapshot.
	c.stop(f)
	for i := range 300 {
		mustOK(t)(l.shard.Propose(ctx, putCmd(fmt.Sprintf("b%03d", i), fmt.Sprintf("v%d", i))))
	}
	if err := l.shard.Snapshot(); err != nil {
		t.Fatal(err)
	}
	c.restart(f)
	hashes := c.waitConverged(20 * time.Second)
	if hashes[f.id] != hashes[l.id] {
		t.Fatal("follower state differs from the leader's after catching up")
	}
	if n := f.shard.Status().Snapshots; n < 1 {
		t.Fatalf("follower missed %d entries beyond TrailingLogs but installed no snapshot", 300)
	}
	// A leader change under load makes a read unavailable (safe to retry),
	// never wrong.
	var it fsm.Item
	var err error
	eventually(t, 10*time.Second, "a linearizable read on the follower", func() bool {
		it, _, err = f.shard.Get(ctx, []byte("b299"), ReadOptions{})
		if err != nil && !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrNotLeader) {
			t.Fatalf("follower read after snapshot catch-up: %v", err)
		}
		return err == nil
	})
	if string(it.Value) != "v299" {
		t.Fatalf("follower read after snapshot catch-up: %q", it.Value)
	}
	// The restored follower keeps applying new entries and survives a restart
	// (its applied index now comes from the installed snapshot).
	mustOK(t)(l.shard.Propose(ctx, putCmd("after", "snap")))
	c.stop(f)
	c.restart(f)
	hashes = c.waitConverged(10 * time.Second)
	if hashes[f.id] != hashes[l.id] {
		t.Fatal("follower diverged after restart following a snapshot install")
	}
}

func TestNonVoterPromotedAfterCatchUp(t *testing.T) {
	c := newCluster(t, 4, nil)
	c.bootstrap(3)
	ctx := t.Context()
	l := c.leader(10 * time.Second)
	for i := range 100 {
		mustOK(t)(l.shard.Propose(ctx, putCmd(fmt.Sprintf("p%d", i), "v")))
	}
	n4 := c.replicas[3]
	actx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := l.shard.AddReplica(actx, n4.id, n4.addr, 10); err != nil {
		t.Fatal(err)
	}
	st := l.shard.Status()
	voters := 0
	for _, r := range st.Replicas {
		if r.Voter {
			voters++
		}
		if r.ID == n4.id && !r.Voter {
			t.Fatalf("%s still a non-voter after AddReplica: %+v", n4.id, st.Replicas)
		}
	}
	if voters != 4 {
		t.Fatalf("want 4 voters, got %+v", st.Replicas)
	}
	if n4.shard.FSM().Applied()+10 < st.CommitIndex {
		t.Fatalf("promoted before catching up: applied %d, commit %d", n4.shard.FSM().Applied(), st.CommitIndex)
	}
	hashes := c.waitConverged(10 * time.Second)
	if hashes[n4.id] != hashes[l.id] {
		t.Fatal("new replica's state differs from the leader's")
	}
	if err := l.shard.RemoveReplica(ctx, n4.id); err != nil {
		t.Fatal(err)
	}
	if got := len(l.shard.Status().Replicas); got != 3 {
		t.Fatalf("after removal: %d replicas", got)
	}
}

func TestTransferLeadership(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.bootstrap(3)
	ctx := t.Context()
	l := c.leader(10 * time.Second)
	to := c.follower(l)
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := l.shard.TransferLeadership(tctx, Replica{ID: to.id, Addr: to.addr}); err != nil {
		t.Fatal(err)
	}
	if nl := c.leader(5 * time.Second); nl != to {
		t.Fatalf("leadership went to %s, asked for %s", nl.id, to.id)
	}
	mustOK(t)(to.shard.Propose(ctx, putCmd("k", "after transfer")))
}

// TestNoStaleReadFromIsolatedLeader cuts the leader off, writes a newer value
// through the new leader, and reads from the old one. A linearizable read must
// return the new value or fail; a stale read may return the old value but
// must report at least the staleness it certainly has. The same scenario with
// a planted bug (reads served locally) must produce the stale value, which
// shows the test can fail.
func TestNoStaleReadFromIsolatedLeader(t *testing.T) {
	for _, planted := range []bool{false, true} {
		t.Run(fmt.Sprintf("planted=%v", planted), func(t *testing.T) {
			stale := isolatedLeaderRead(t, planted)
			if planted && !stale {
				t.Fatal("planted bug went unnoticed: the test cannot detect stale reads")
			}
			if !planted && stale {
				t.Fatal("linearizable read returned a stale value")
			}
		})
	}
}

// isolatedLeaderRead reports whether linearizable reads on the isolated old
// leader returned the old value.
func isolatedLeaderRead(t *testing.T, planted bool) bool {
	c := newCluster(t, 3, nil)
	c.bootstrap(3)
	ctx := t.Context()
	old := c.leader(10 * time.Second)
	old.shard.plantedLocalReads = planted
	mustOK(t)(old.shard.Propose(ctx, putCmd("reg", "v1")))
	c.waitConverged(5 * time.Second)

	// Readers hammer the old leader from before the partition until after
	// the newer write is acknowledged.
	var staleSeen, okAfter, failed, readsAfter int
	var mu sync.Mutex
	var acked time.Time
	rctx, stopReaders := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for rctx.Err() == nil {
				start := time.Now()
				gctx, cancel := context.WithTimeout(rctx, 500*time.Millisecond)
				it, _, err := old.shard.Get(gctx, []byte("reg"), ReadOptions{})
				cancel()
				mu.Lock()
				after := !acked.IsZero() && start.After(acked)
				if after {
					readsAfter++
				}
				switch {
				case err != nil:
					failed++
				case after && string(it.Value) == "v1":
					staleSeen++
				case after:
					okAfter++
				}
				mu.Unlock()
			}
		})
	}
	c.net.isolate(old.addr, c.addrs())
	var nl *replica
	eventually(t, 10*time.Second, "a new leader on the majority side", func() bool {
		nl = c.readyLeaderOtherThan(old)
		return nl != nil
	})
	mustOK(t)(nl.shard.Propose(ctx, putCmd("reg", "v2")))
	mu.Lock()
	acked = time.Now()
	mu.Unlock()
	// Keep reading until plenty of reads began after the acknowledgement.
	eventually(t, 10*time.Second, "200 reads after the write", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return readsAfter >= 200
	})
	stopReaders()
	wg.Wait()
	t.Logf("after the new write: %d stale, %d current, %d failed reads on the old leader", staleSeen, okAfter, failed)

	// Stale reads are allowed to be stale but must say so.
	sinceAck := time.Since(acked)
	it, info, err := old.shard.Get(ctx, []byte("reg"), ReadOptions{Consistency: Stale})
	if err != nil {
		t.Fatal(err)
	}
	if string(it.Value) == "v1" && info.Staleness < sinceAck {
		t.Fatalf("stale read returned the old value claiming staleness %v, but a newer write was acknowledged %v earlier", info.Staleness, sinceAck)
	}
	if _, _, err := old.shard.Get(ctx, []byte("reg"), ReadOptions{Consistency: Stale, MaxStaleness: sinceAck / 2}); !errors.Is(err, ErrTooStale) {
		t.Fatalf("stale read with max staleness %v: got %v, want ErrTooStale", sinceAck/2, err)
	}
	c.net.heal()
	if !planted {
		// After healing, the old leader serves the new value.
		eventually(t, 10*time.Second, "a linearizable read on the healed old leader", func() bool {
			it, _, err := old.shard.Get(ctx, []byte("reg"), ReadOptions{})
			if err == nil && string(it.Value) != "v2" {
				t.Fatalf("after heal: linearizable read returned %q", it.Value)
			}
			return err == nil
		})
		hashes := c.waitConverged(10 * time.Second)
		if hashes[old.id] != hashes[nl.id] {
			t.Fatal("old leader diverged after heal")
		}
	}
	return staleSeen > 0
}

// readyLeaderOtherThan returns a ready leader other than except, or nil.
func (c *cluster) readyLeaderOtherThan(except *replica) *replica {
	for _, r := range c.replicas {
		if r != except && r.shard != nil && r.shard.Status().Ready {
			return r
		}
	}
	return nil
}

// TestBootRestoresSnapshotWhenStateBehind covers the boot-time check that
// NoSnapshotRestoreOnStart needs: if the FSM's durable state is behind the
// latest snapshot (here: the Badger directory is lost), Open restores the
// snapshot before raft starts, because raft will not replay entries the
// snapshot covers.
func TestBootRestoresSnapshotWhenStateBehind(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.bootstrap(1)
	ctx := t.Context()
	r := c.leader(10 * time.Second)
	for i := range 200 {
		mustOK(t)(r.shard.Propose(ctx, putCmd(fmt.Sprintf("s%03d", i), fmt.Sprintf("v%d", i))))
	}
	if err := r.shard.Snapshot(); err != nil {
		t.Fatal(err)
	}
	idx, want, err := r.shard.FSM().StateHash()
	if err != nil {
		t.Fatal(err)
	}
	// An ordinary restart replays only the log tail.
	c.stop(r)
	c.restart(r)
	if r.shard.Status().BootRestored {
		t.Fatal("a restart with intact state restored the snapshot")
	}
	if gotIdx, got, _ := r.shard.FSM().StateHash(); gotIdx != idx || got != want {
		t.Fatalf("state after restart: index %d (want %d), hash equal %v", gotIdx, idx, got == want)
	}
	c.stop(r)
	if err := os.RemoveAll(filepath.Join(r.dir, "data")); err != nil {
		t.Fatal(err)
	}
	c.restart(r)
	if !r.shard.Status().BootRestored {
		t.Fatal("state was lost but the snapshot was not restored at boot")
	}
	if got := r.shard.FSM().Applied(); got < idx {
		t.Fatalf("after boot with lost state: applied %d, snapshot covers %d", got, idx)
	}
	gotIdx, got, err := r.shard.FSM().StateHash()
	if err != nil {
		t.Fatal(err)
	}
	if gotIdx != idx || got != want {
		t.Fatalf("restored state at %d differs from the state at %d before the loss", gotIdx, idx)
	}
	c.leader(10 * time.Second)
	it, _, err := r.shard.Get(ctx, []byte("s199"), ReadOptions{})
	if err != nil || string(it.Value) != "v199" {
		t.Fatalf("read after boot restore: %q %v", it.Value, err)
	}
}

// TestFollowerReadAfterSnapshotEndingInNoops: raft's index for a snapshot
// counts the no-op and barrier entries a new leader appends, which the FSM
// never sees. A follower that installed such a snapshot lacks those entries
// in its log and has an FSM applied index below the snapshot's; its
// linearizable reads must still complete while the group is idle.
func TestFollowerReadAfterSnapshotEndingInNoops(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.TrailingLogs = 8
		cfg.SnapshotThreshold = 16
	})
	c.bootstrap(3)
	ctx := t.Context()
	l := c.leader(10 * time.Second)
	var f, other *replica
	for _, r := range c.replicas {
		switch {
		case r == l:
		case f == nil:
			f = r
		default:
			other = r
		}
	}
	c.stop(f)
	for i := range 100 {
		mustOK(t)(l.shard.Propose(ctx, putCmd(fmt.Sprintf("n%03d", i), "v")))
	}
	// A new leader appends entries of its term after the last command.
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := l.shard.TransferLeadership(tctx, Replica{ID: other.id, Addr: other.addr}); err != nil {
		t.Fatal(err)
	}
	if nl := c.leader(5 * time.Second); nl != other {
		t.Fatalf("leader is %s, want %s", nl.id, other.id)
	}
	if err := other.shard.Snapshot(); err != nil {
		t.Fatal(err)
	}
	st := other.shard.Status()
	if st.Applied >= st.CommitIndex {
		t.Fatalf("setup: the leader's log does not end in entries the FSM skips (applied %d, commit %d)", st.Applied, st.CommitIndex)
	}
	c.restart(f)
	eventually(t, 10*time.Second, "the follower installs a snapshot", func() bool { return f.shard.Status().Snapshots > 0 })
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	it, _, err := f.shard.Get(rctx, []byte("n099"), ReadOptions{})
	if err != nil || string(it.Value) != "v" {
		t.Fatalf("linearizable read on the follower after the snapshot: %q, %v", it.Value, err)
	}
}

// A follower that has not yet learned that the read index is committed
// says so at once with NoWait (so the caller can ask the leader), and
// otherwise waits until it has and then sees the write.
func TestFollowerReadNoWaitReportsBehind(t *testing.T) {
	// A long commit timeout: followers learn a commit only from the next
	// append, and none comes after the single write below.
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.CommitTimeout = 2 * time.Second
		cfg.ReadTimeout = 10 * time.Second
	})
	c.bootstrap(3)
	ctx := t.Context()
	l := c.leader(10 * time.Second)
	f := c.follower(l)
	// Settle: the follower knows everything committed so far.
	mustOK(t)(l.shard.Propose(ctx, putCmd("warm", "up")))
	eventually(t, 10*time.Second, "follower caught up", func() bool {
		_, _, err := f.shard.Get(ctx, []byte("warm"), ReadOptions{NoWait: true})
		return err == nil
	})
	res := mustOK(t)(l.shard.Propose(ctx, putCmd("k", "v")))
	_, _, err := f.shard.Get(ctx, []byte("k"), ReadOptions{NoWait: true})
	if !errors.Is(err, ErrBehind) {
		t.Fatalf("NoWait read on a follower that has not learned the commit: %v, want ErrBehind", err)
	}
	it, _, err := f.shard.Get(ctx, []byte("k"), ReadOptions{})
	if err != nil || string(it.Value) != "v" || it.Version != res.Ops[0].Version {
		t.Fatalf("waiting read on the follower: %q@%d %v, want v@%d", it.Value, it.Version, err, res.Ops[0].Version)
	}
	if _, _, err := l.shard.Get(ctx, []byte("k"), ReadOptions{NoWait: true}); err != nil {
		t.Fatalf("NoWait read on the leader: %v", err)
	}
}

// A read with After (an index at which the replica served a linearizable
// read earlier in the same operation) is served without another round: no
// leadership check on the leader, no read-index fetch on a follower; a
// plain linearizable read runs one each time. Held applies keep a
// follower's reads with After at its own state (what the operation's
// first read proved), while a plain read waits for the new write.
func TestReadAfterSkipsTheRound(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.bootstrap(3)
	ctx := t.Context()
	l := c.leader(10 * time.Second)
	f := c.follower(l)
	mustOK(t)(l.shard.Propose(ctx, putCmd("k", "v1")))
	for _, r := range []*replica{l, f} {
		rounds := func() uint64 { a, b := r.shard.ReadRounds(); return a + b }
		before := rounds()
		it, info, err := r.shard.Get(ctx, []byte("k"), ReadOptions{})
		if err != nil || string(it.Value) != "v1" || info.Index == 0 {
			t.Fatalf("%s: plain read %q %+v %v", r.id, it.Value, info, err)
		}
		if rounds() == before {
			t.Fatalf("%s: a plain linearizable read ran no round", r.id)
		}
		before = rounds()
		for range 5 {
			it, again, err := r.shard.Get(ctx, []byte("k"), ReadOptions{After: info.Index})
			if err != nil || string(it.Value) != "v1" || again.Index < info.Index {
				t.Fatalf("%s: read after %d: %q %+v %v", r.id, info.Index, it.Value, again, err)
			}
		}
		if n := rounds() - before; n != 0 {
			t.Fatalf("%s: %d rounds for reads with After, want none", r.id, n)
		}
	}
	_, info, err := f.shard.Get(ctx, []byte("k"), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	release := f.shard.HoldApplies()
	defer release()
	mustOK(t)(l.shard.Propose(ctx, putCmd("k", "v2")))
	it, _, err := f.shard.Get(ctx, []byte("k"), ReadOptions{After: info.Index})
	if err != nil || string(it.Value) != "v1" {
		t.Fatalf("read after %d on a follower holding its applies: %q %v, want v1 (its own state)", info.Index, it.Value, err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, _, err := f.shard.Get(short, []byte("k"), ReadOptions{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("plain read on a follower holding its applies: %v, want it to wait (unavailable at its deadline)", err)
	}
	release()
	it, _, err = f.shard.Get(ctx, []byte("k"), ReadOptions{})
	if err != nil || string(it.Value) != "v2" {
		t.Fatalf("plain read after the release: %q %v, want v2", it.Value, err)
	}
}
