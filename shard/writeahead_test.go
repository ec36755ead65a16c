package shard

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/types"
)

// countingVFS is raft-wal's file system, counting the real syncs of its
// files and failing them on demand.
type countingVFS struct {
	types.VFS
	syncs atomic.Int64
	fail  atomic.Bool
}

func newCountingVFS() *countingVFS { return &countingVFS{VFS: fs.New()} }

func (v *countingVFS) Create(dir, name string, size uint64) (types.WritableFile, error) {
	f, err := v.VFS.Create(dir, name, size)
	if err != nil {
		return nil, err
	}
	return &countingFile{WritableFile: f, v: v}, nil
}

func (v *countingVFS) OpenWriter(dir, name string) (types.WritableFile, error) {
	f, err := v.VFS.OpenWriter(dir, name)
	if err != nil {
		return nil, err
	}
	return &countingFile{WritableFile: f, v: v}, nil
}

type countingFile struct {
	types.WritableFile
	v *countingVFS
}

func (f *countingFile) Sync() error {
	if f.v.fail.Load() {
		return errors.New("injected sync failure")
	}
	f.v.syncs.Add(1)
	return f.WritableFile.Sync()
}

func cmdLogs(from, to uint64) []*raft.Log {
	var logs []*raft.Log
	for i := from; i <= to; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: fmt.Appendf(nil, "entry %d", i)})
	}
	return logs
}

// holdSyncs makes w's syncer stop before each sync of appends written
// ahead until release is called; entered receives once per stop.
func holdSyncs(t *testing.T, w *walStore) (entered <-chan struct{}, release func()) {
	in := make(chan struct{}, 16)
	gate := make(chan struct{})
	hook := func() {
		in <- struct{}{}
		<-gate
	}
	w.beforeSync.Store(&hook)
	var once sync.Once
	release = func() {
		once.Do(func() {
			w.beforeSync.Store(nil)
			close(gate)
		})
	}
	t.Cleanup(release)
	return in, release
}

func waitEntered(t *testing.T, entered <-chan struct{}) {
	t.Helper()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the syncer never started a sync of appends written ahead")
	}
}

// TestWriteAheadStore: a leading replica's command appends return before
// their sync and count as synced only after it; a follower's appends, and
// entries other than commands, are synced before StoreLogs returns; a
// removed tail lowers the synced index; a failed sync stops the log.
func TestWriteAheadStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	vfs := newCountingVFS()
	w, err := openWALOn(dir, hclog.NewNullLogger(), vfs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() }) // after holdSyncs' release: cleanups run last first
	var leads atomic.Bool
	w.writeAhead(leads.Load)

	// As a follower: synced on return.
	if err := w.StoreLogs(cmdLogs(1, 3)); err != nil {
		t.Fatal(err)
	}
	if got := w.syncedIndex(); got != 3 {
		t.Fatalf("follower append: synced index %d on return, want 3", got)
	}

	// As the leader: returns with the sync still to come.
	leads.Store(true)
	entered, release := holdSyncs(t, w)
	syncsBefore := vfs.syncs.Load()
	if err := w.StoreLogs(cmdLogs(4, 5)); err != nil {
		t.Fatal(err)
	}
	waitEntered(t, entered)
	if got := w.syncedIndex(); got != 3 {
		t.Fatalf("leader append, sync held: synced index %d, want 3", got)
	}
	if n := vfs.syncs.Load(); n != syncsBefore {
		t.Fatalf("leader append synced %d times before StoreLogs returned, want none", n-syncsBefore)
	}
	var l raft.Log
	if err := w.GetLog(5, &l); err != nil || string(l.Data) != "entry 5" {
		t.Fatalf("entry written ahead reads back as %q, %v", l.Data, err)
	}

	// A configuration entry is synced before it returns, and with it
	// everything written ahead before it.
	conf := &raft.Log{Index: 6, Term: 1, Type: raft.LogConfiguration, Data: []byte("conf")}
	if err := w.StoreLogs([]*raft.Log{conf}); err != nil {
		t.Fatal(err)
	}
	if got := w.syncedIndex(); got != 6 {
		t.Fatalf("configuration entry: synced index %d on return, want 6", got)
	}
	release()
	if err := w.StoreLogs(cmdLogs(7, 8)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := w.waitSynced(ctx, 8); err != nil {
		t.Fatalf("waiting for entries written ahead to be synced: %v", err)
	}

	// Removing the tail lowers the synced index to what is left.
	if err := w.DeleteRange(7, 8); err != nil {
		t.Fatal(err)
	}
	if got := w.syncedIndex(); got != 6 {
		t.Fatalf("after removing entries 7-8: synced index %d, want 6", got)
	}

	// A failed sync: the index stays, waiters get the error, appends fail.
	vfs.fail.Store(true)
	if err := w.StoreLogs(cmdLogs(7, 7)); err != nil {
		t.Fatal(err)
	}
	if err := w.waitSynced(ctx, 7); err == nil || ctx.Err() != nil {
		t.Fatalf("waiting for an entry whose sync failed: %v (context: %v), want the sync's error", err, ctx.Err())
	}
	if got := w.syncedIndex(); got != 6 {
		t.Fatalf("after a failed sync: synced index %d, want 6", got)
	}
	if err := w.StoreLogs(cmdLogs(8, 8)); err == nil {
		t.Fatal("append after a failed sync succeeded")
	}
	vfs.fail.Store(false)
	w.Close()

	// Reopened, the log is synced through its last entry.
	w, err = openWALOn(dir, hclog.NewNullLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	last, err := w.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	if last != 7 || w.syncedIndex() != last {
		t.Fatalf("reopened: last index %d, synced %d; want 7 and 7", last, w.syncedIndex())
	}
}

// TestWriteAheadAcrossSegments: appends written ahead over many segment
// rotations all read back after a reopen, and raft-wal's metadata commits
// only after the segment data they describe is synced.
func TestWriteAheadAcrossSegments(t *testing.T) {
	old := walSegmentSize
	walSegmentSize = 64 << 10
	t.Cleanup(func() { walSegmentSize = old })
	dir := filepath.Join(t.TempDir(), "wal")
	w, err := openWALOn(dir, hclog.NewNullLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	w.writeAhead(func() bool { return true })
	const n = 2000
	for i := uint64(1); i <= n; i += 10 {
		logs := cmdLogs(i, i+9)
		for _, l := range logs {
			l.Data = append(l.Data, make([]byte, 200)...)
		}
		if err := w.StoreLogs(logs); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.waitSynced(t.Context(), n); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	segments, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	if err != nil || len(segments) < 5 {
		t.Fatalf("%d segments (%v), want several rotations", len(segments), err)
	}
	w, err = openWALOn(dir, hclog.NewNullLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := uint64(1); i <= n; i++ {
		var l raft.Log
		if err := w.GetLog(i, &l); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if want := fmt.Sprintf("entry %d", i); string(l.Data[:len(want)]) != want {
			t.Fatalf("entry %d reads %q", i, l.Data[:len(want)])
		}
	}
}

// recordingMeta is a metadata store that notes how many real syncs had
// happened when each state was committed.
type recordingMeta struct {
	types.MetaStore
	vfs           *countingVFS
	syncsAtCommit []int64
}

func (m *recordingMeta) CommitState(st types.PersistentState) error {
	m.syncsAtCommit = append(m.syncsAtCommit, m.vfs.syncs.Load())
	return nil
}

// TestSyncMetaSyncsDeferredFirst: a deferred sync is done before the
// metadata commit that follows it, and before its file is closed.
func TestSyncMetaSyncsDeferredFirst(t *testing.T) {
	dir := t.TempDir()
	vfs := newCountingVFS()
	v := newWriteAheadFS(vfs)
	f, err := v.Create(dir, "a.wal", 0)
	if err != nil {
		t.Fatal(err)
	}
	g, err := v.Create(dir, "b.wal", 0)
	if err != nil {
		t.Fatal(err)
	}
	v.deferring.Store(true)
	for _, file := range []types.WritableFile{f, g} {
		if _, err := file.WriteAt([]byte("data"), 0); err != nil {
			t.Fatal(err)
		}
		if err := file.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	v.deferring.Store(false)
	if n := vfs.syncs.Load(); n != 0 {
		t.Fatalf("%d real syncs while deferring, want 0", n)
	}
	meta := &recordingMeta{vfs: vfs}
	if err := (syncMeta{MetaStore: meta, fs: v}).CommitState(types.PersistentState{}); err != nil {
		t.Fatal(err)
	}
	if len(meta.syncsAtCommit) != 1 || meta.syncsAtCommit[0] != 2 {
		t.Fatalf("real syncs when the metadata committed: %v, want [2]", meta.syncsAtCommit)
	}
	// Deferred again, then closed: Close syncs it.
	v.deferring.Store(true)
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	v.deferring.Store(false)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if n := vfs.syncs.Load(); n != 3 {
		t.Fatalf("after closing a file with a deferred sync: %d real syncs, want 3", n)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if n := vfs.syncs.Load(); n != 3 {
		t.Fatalf("closing a clean file synced it: %d real syncs, want 3", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "a.wal")); err != nil {
		t.Fatal(err)
	}
}

// TestWriteAheadNothingActsBeforeLeaderSync: while the leader's sync of an
// entry it wrote ahead is held, raft on the leader counts the entry
// committed (the followers synced it), yet no replica applies it, no
// follower is told it is committed, and the write is not answered. Once
// the sync is done, all of that follows.
func TestWriteAheadNothingActsBeforeLeaderSync(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.bootstrap(3)
	ctx := t.Context()
	l := c.leader(10 * time.Second)
	mustOK(t)(l.shard.Propose(ctx, putCmd("warm", "up")))
	w, ok := l.shard.logs.(*walStore)
	if !ok {
		t.Fatalf("leader's log is a %T, want *walStore", l.shard.logs)
	}
	entered, release := holdSyncs(t, w)
	answered := make(chan error, 1)
	go func() {
		_, err := l.shard.Propose(ctx, putCmd("held", "v"))
		answered <- err
	}()
	waitEntered(t, entered)
	idx, _, _ := w.synced.pending()
	synced := w.syncedIndex()
	if idx <= synced {
		t.Fatalf("held sync: written %d, synced %d; want an entry written ahead", idx, synced)
	}
	eventually(t, 10*time.Second, "the leader's raft counts the held entry committed", func() bool {
		return l.shard.raft.CommitIndex() >= idx
	})
	// The leader keeps telling the followers its commit index; each such
	// append is held back to the synced index.
	held := l.shard.heldCommits.Load()
	if got := l.shard.logs.(*walStore).syncedIndex(); got >= idx {
		t.Fatalf("leader's synced index %d while its sync of %d is held", got, idx)
	}
	eventually(t, 10*time.Second, "appends with the commit index held back", func() bool {
		return l.shard.heldCommits.Load() >= held+6
	})
	for _, r := range c.replicas {
		if a := r.shard.FSM().Applied(); a >= idx {
			t.Fatalf("%s applied index %d before the leader synced entry %d", r.id, a, idx)
		}
		if r != l {
			if ci := r.shard.raft.CommitIndex(); ci >= idx {
				t.Fatalf("follower %s was told commit index %d before the leader synced entry %d", r.id, ci, idx)
			}
		}
	}
	select {
	case err := <-answered:
		t.Fatalf("the write was answered (%v) before the leader synced it", err)
	default:
	}
	release()
	select {
	case err := <-answered:
		if err != nil {
			t.Fatalf("held write: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("held write not answered after the sync")
	}
	for _, r := range c.replicas {
		it, _, err := r.shard.Get(ctx, []byte("held"), ReadOptions{})
		if err != nil || string(it.Value) != "v" {
			t.Fatalf("%s: held key reads %q, %v", r.id, it.Value, err)
		}
	}
	hashes := c.waitConverged(5 * time.Second)
	if hashes["n1"] != hashes["n2"] || hashes["n1"] != hashes["n3"] {
		t.Fatalf("replica state hashes differ: %x", hashes)
	}
}
