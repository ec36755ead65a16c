package shard

import (
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// A follower whose log holds the entry right after the snapshot it
// installed, while the leader still thinks it needs that entry, refuses the
// leader's appends and is sent the same snapshot again and again (see
// sendWatch). The leader notices the repeated complete sends, takes a newer
// snapshot, and the follower catches up. (The state arises when the
// follower stores the entry and stops before the leader hears of it; the
// test writes the entry into the stopped follower's log itself.)
func TestFollowerRefusingAfterSnapshotCatchesUp(t *testing.T) {
	for _, format := range []LogStore{LogStoreWAL, LogStoreBolt, LogStoreNode} {
		t.Run(string(format), func(t *testing.T) { followerRefusingAfterSnapshotCatchesUp(t, format) })
	}
}

// followerRefusingAfterSnapshotCatchesUp sets the state up and checks that
// the follower gets out of it. Setting it up needs one leader throughout; a
// leadership change on the loaded test machine (or an entry it appends)
// spoils it, and then the attempt starts over on a fresh cluster.
func followerRefusingAfterSnapshotCatchesUp(t *testing.T, format LogStore) {
	const attempts = 3
	for attempt := 1; attempt <= attempts; attempt++ {
		spoiled := refusingAttempt(t, format)
		if spoiled == "" {
			return
		}
		t.Logf("attempt %d: %s; starting over", attempt, spoiled)
	}
	t.Fatalf("the refusing state could not be set up in %d attempts", attempts)
}

// refusingAttempt runs the scenario once. It returns why the setup was
// spoiled, or "" once the follower has been through the state and caught
// up; real failures end the test.
func refusingAttempt(t *testing.T, format LogStore) (spoiled string) {
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.LogStore = format
		cfg.TrailingLogs = 64
		cfg.SnapshotThreshold = 1 << 20 // snapshots only when the test (or the watch) asks
	})
	defer func() {
		for _, r := range c.replicas {
			c.stop(r)
		}
	}()
	c.bootstrap(3)
	ctx := t.Context()
	l := c.leader(10 * time.Second)
	term := l.shard.raft.CurrentTerm()
	stillLeader := func() bool { return l.shard.raft.State() == raft.Leader && l.shard.raft.CurrentTerm() == term }
	f := c.follower(l)

	// The follower misses more than the leader keeps, and installs a snapshot.
	c.stop(f)
	for i := range 300 {
		res, err := l.shard.Propose(ctx, putCmd(fmt.Sprintf("b%03d", i), "v"))
		if err != nil || !stillLeader() {
			return fmt.Sprintf("write %d: %v (leader %v)", i, err, stillLeader())
		}
		mustOK(t)(res, nil)
	}
	if err := l.shard.Snapshot(); err != nil {
		t.Fatal(err)
	}
	c.restart(f)
	c.waitConverged(20 * time.Second)
	if n := f.shard.Status().Snapshots; n != 1 {
		t.Fatalf("follower installed %d snapshots, want 1", n)
	}

	// With the follower down, one more entry; then it goes into the
	// follower's log as if the follower had stored it before stopping.
	c.stop(f)
	res, err := l.shard.Propose(ctx, putCmd("after", "snap"))
	if err != nil || !stillLeader() {
		return fmt.Sprintf("the entry after the snapshot: %v (leader %v)", err, stillLeader())
	}
	mustOK(t)(res, nil)
	idx := res.Ops[0].Version >> 20
	var entry raft.Log
	if err := l.shard.log.GetLog(idx, &entry); err != nil {
		t.Fatalf("entry %d on the leader: %v", idx, err)
	}
	raftDir := filepath.Join(f.dir, "raft", "1")
	snaps, err := raft.NewFileSnapshotStore(raftDir, 2, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	list, err := snaps.List()
	if err != nil || len(list) == 0 {
		t.Fatalf("follower's snapshots: %v, %v", list, err)
	}
	if list[0].Index+1 != idx {
		// Another entry (a new leader's, say) came between the snapshot
		// and this one, and the follower received it normally.
		return fmt.Sprintf("the follower's snapshot ends at %d, the new entry is %d", list[0].Index, idx)
	}
	logs, done, err := openTestLogStore(raftDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := logs.StoreLog(&entry); err != nil {
		t.Fatal(err)
	}
	if err := done(); err != nil {
		t.Fatal(err)
	}

	c.restart(f)
	hashes := c.waitConverged(20 * time.Second)
	if hashes[f.id] != hashes[l.id] {
		t.Fatal("follower state differs from the leader's")
	}
	if !stillLeader() {
		return "leadership moved while the follower caught up"
	}
	if got := f.shard.Status().Snapshots; got < 2 {
		t.Fatalf("follower installed %d snapshots: the refusing state was not reached", got)
	}
	t.Logf("follower installed %d snapshots in all", f.shard.Status().Snapshots)
	return ""
}
