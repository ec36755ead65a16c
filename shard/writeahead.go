package shard

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/types"
)

// A leader's appends to its own raft log, written ahead of their sync.
//
// hashicorp/raft's leader stores a new entry in its log, synced, before it
// sends the entry to the followers, so a write waits for two syncs one after
// the other: the leader's, then a follower's. The raft thesis (§10.2.1)
// lets the leader write its log in parallel with the followers. raft v1.8.0
// has no such mode, and it counts the leader's copy towards the commit
// quorum as soon as StoreLogs returns. So a raft-wal replica that leads
// returns from StoreLogs once the entries are written to the file, and a
// syncer goroutine syncs them right after; and until they are synced,
// nothing outside raft may act on their commitment:
//
//   - the FSM applies an entry only once this replica's log is synced
//     through it (fsmAdapter.ApplyBatch), so the leader neither applies nor
//     answers a write before its own copy is on disk;
//   - the commit index sent to followers is capped at the leader's synced
//     index (serialTransport.AppendEntries), so no follower applies an
//     entry the leader might still lose.
//
// A follower syncs before it answers an append, as before. An entry that is
// applied anywhere, or answered, is therefore on disk on the leader and on
// the followers that raft counted, a majority; raft's election rule then
// keeps it in every later leader's log. An entry that raft counted as
// committed while only the followers had it synced is invisible until the
// leader's sync: if the leader's machine crashes first and the entry is
// lost, nobody applied it and no client was told it succeeded.
//
// Only command entries are written ahead. Configuration changes, no-ops and
// barriers take effect inside raft when committed, so they are synced before
// StoreLogs returns, as raft expects. raft-wal's own order of writes is
// kept: every deferred sync is done before raft-wal commits its metadata
// (syncMeta), which it does when it seals a segment and starts the next.

// writeAheadFS is raft-wal's file system with syncs that can be deferred:
// while deferring is set, a file's Sync only marks it dirty, and flush syncs
// every dirty file.
type writeAheadFS struct {
	types.VFS
	deferring atomic.Bool

	mu    sync.Mutex // guards dirty
	dirty map[*writeAheadFile]struct{}
	// syncMu is held for every real sync of a tracked file, so that a flush
	// that finds nothing dirty returns only once the syncs that took the
	// dirty files before it are done.
	syncMu sync.Mutex
}

func newWriteAheadFS(inner types.VFS) *writeAheadFS {
	if inner == nil {
		inner = fs.New()
	}
	return &writeAheadFS{VFS: inner, dirty: make(map[*writeAheadFile]struct{})}
}

func (v *writeAheadFS) Create(dir, name string, size uint64) (types.WritableFile, error) {
	f, err := v.VFS.Create(dir, name, size)
	if err != nil {
		return nil, err
	}
	return &writeAheadFile{WritableFile: f, fs: v}, nil
}

func (v *writeAheadFS) OpenWriter(dir, name string) (types.WritableFile, error) {
	f, err := v.VFS.OpenWriter(dir, name)
	if err != nil {
		return nil, err
	}
	return &writeAheadFile{WritableFile: f, fs: v}, nil
}

// flush syncs every file whose sync was deferred.
func (v *writeAheadFS) flush() error {
	v.syncMu.Lock()
	defer v.syncMu.Unlock()
	v.mu.Lock()
	files := make([]*writeAheadFile, 0, len(v.dirty))
	for f := range v.dirty {
		files = append(files, f)
	}
	clear(v.dirty)
	v.mu.Unlock()
	var errs []error
	for _, f := range files {
		if err := f.WritableFile.Sync(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

type writeAheadFile struct {
	types.WritableFile
	fs *writeAheadFS
}

// Sync syncs the file, or marks it for the next flush while syncs are
// deferred.
func (f *writeAheadFile) Sync() error {
	if f.fs.deferring.Load() {
		f.fs.mu.Lock()
		f.fs.dirty[f] = struct{}{}
		f.fs.mu.Unlock()
		return nil
	}
	f.fs.syncMu.Lock()
	defer f.fs.syncMu.Unlock()
	f.fs.mu.Lock()
	delete(f.fs.dirty, f)
	f.fs.mu.Unlock()
	return f.WritableFile.Sync()
}

// Close syncs a file with a deferred sync first.
func (f *writeAheadFile) Close() error {
	f.fs.syncMu.Lock()
	defer f.fs.syncMu.Unlock()
	f.fs.mu.Lock()
	_, dirty := f.fs.dirty[f]
	delete(f.fs.dirty, f)
	f.fs.mu.Unlock()
	var err error
	if dirty {
		err = f.WritableFile.Sync()
	}
	return errors.Join(err, f.WritableFile.Close())
}

// syncMeta is raft-wal's metadata store, which first syncs whatever segment
// writes were deferred: raft-wal commits its metadata only after the
// segment data it describes is on disk.
type syncMeta struct {
	types.MetaStore
	fs *writeAheadFS
}

func (m syncMeta) CommitState(st types.PersistentState) error {
	if err := m.fs.flush(); err != nil {
		return fmt.Errorf("raft log: sync segments before committing metadata: %w", err)
	}
	return m.MetaStore.CommitState(st)
}

func newSyncMeta(v *writeAheadFS) syncMeta {
	return syncMeta{MetaStore: &metadb.BoltMetaDB{}, fs: v}
}

// synced tracks how far a log is on disk: every entry at or below index is
// synced. A replica that is not writing ahead keeps it at its last index.
type synced struct {
	mu      sync.Mutex
	index   uint64
	written uint64 // the last entry written ahead
	epoch   uint64 // bumped when the log's tail is removed
	err     error  // a deferred sync failed: nothing is synced from then on
	changed chan struct{}
}

func newSynced(index uint64) *synced {
	return &synced{index: index, written: index, changed: make(chan struct{})}
}

// Index returns the synced index.
func (s *synced) Index() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.index
}

func (s *synced) advanceLocked(index uint64) {
	if index > s.index {
		s.index = index
		close(s.changed)
		s.changed = make(chan struct{})
	}
}

// wroteAhead records entries written through index, not yet synced.
func (s *synced) wroteAhead(index uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.written = index
}

// wroteSynced records entries written and synced through index.
func (s *synced) wroteSynced(index uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.written = index
	s.advanceLocked(index)
}

// pending returns the last entry written and the tail's epoch, for a sync
// about to start; ok is false once a sync failed.
func (s *synced) pending() (written, epoch uint64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.written, s.epoch, s.err == nil
}

// syncedThrough records a sync that started when pending reported written
// and epoch; a tail removed since then makes it count for nothing.
func (s *synced) syncedThrough(written, epoch uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.epoch == epoch {
		s.advanceLocked(written)
	}
}

// allSynced records that everything written is synced (the log closed).
func (s *synced) allSynced() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceLocked(s.written)
}

// wait returns once the log is synced through index, the context ends, or
// a sync failed.
func (s *synced) wait(ctx context.Context, index uint64) error {
	for {
		s.mu.Lock()
		at, err, ch := s.index, s.err, s.changed
		s.mu.Unlock()
		if at >= index {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// failed returns the error of a failed sync, if one failed.
func (s *synced) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// fail records a failed sync: the log's state on disk is unknown from then
// on, so the synced index never advances again and waiters are released
// with the error.
func (s *synced) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
		close(s.changed)
		s.changed = make(chan struct{})
	}
}

// truncated lowers the synced index when the log's tail from index on is
// removed (a follower replacing entries its new leader does not have).
func (s *synced) truncated(index uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.epoch++
	if index > 0 {
		s.index = min(s.index, index-1)
		s.written = min(s.written, index-1)
	} else {
		s.index, s.written = 0, 0
	}
}

// commandsOnly reports whether every entry is a command: only those are
// written ahead.
func commandsOnly(logs []*raft.Log) bool {
	for _, l := range logs {
		if l.Type != raft.LogCommand {
			return false
		}
	}
	return true
}
