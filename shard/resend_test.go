package shard

import (
	"fmt"
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

func followerRefusingAfterSnapshotCatchesUp(t *testing.T, format LogStore) {
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.LogStore = format
		cfg.TrailingLogs = 64
		cfg.SnapshotThreshold = 1 << 20 // snapshots only when the test (or the watch) asks
	})
	c.bootstrap(3)
	ctx := t.Context()
	l := c.leader(10 * time.Second)
	f := c.follower(l)

	// The follower misses more than the leader keeps, and installs a snapshot.
	c.stop(f)
	for i := range 300 {
		mustOK(t)(l.shard.Propose(ctx, putCmd(fmt.Sprintf("b%03d", i), "v")))
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
	res := mustOK(t)(l.shard.Propose(ctx, putCmd("after", "snap")))
	idx := res.Ops[0].Version >> 20
	var entry raft.Log
	if err := l.shard.log.GetLog(idx, &entry); err != nil {
		t.Fatalf("entry %d on the leader: %v", idx, err)
	}
	logs, done, err := openTestLogStore(filepath.Join(f.dir, "raft", "1"))
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
	if got := f.shard.Status().Snapshots; got < 2 {
		t.Fatalf("follower installed %d snapshots: the refusing state was not reached", got)
	}
	t.Logf("follower installed %d snapshots in all", f.shard.Status().Snapshots)
}
