package shard

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/shard/nodelog"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
	"go.etcd.io/bbolt"
)

// LogStore names the on-disk format of a replica's raft log (and of raft's
// term and vote, which live beside it).
type LogStore string

const (
	// LogStoreWAL is hashicorp/raft-wal: append-only segment files under
	// <Dir>/wal, one sync per append.
	LogStoreWAL LogStore = "wal"
	// LogStoreBolt is hashicorp/raft-boltdb: one bbolt file, <Dir>/raft.db,
	// whose commits sync twice (pages, then the meta page).
	LogStoreBolt LogStore = "bolt"
	// LogStoreNode is the node's shared log (package nodelog,
	// Config.NodeLog): all the node's replicas of this format append to the
	// same files, and appends of different shards share one sync.
	// <Dir>/nodelog marks such a replica.
	LogStoreNode LogStore = "node"
)

// nodeLogMarker is the file that marks a replica whose raft log is in the
// node's shared log.
const nodeLogMarker = "nodelog"

// walSegmentSize is the size raft-wal preallocates for each segment file.
// A node holds one open segment per shard, so this is what an idle replica
// costs on disk; 16 MiB holds thousands of group-commit entries. A
// variable only so that tests can rotate segments sooner.
var walSegmentSize = 16 << 20

// ParseLogStore checks a format name ("" means the default, wal).
func ParseLogStore(s string) (LogStore, error) {
	switch LogStore(s) {
	case "", LogStoreWAL:
		return LogStoreWAL, nil
	case LogStoreBolt:
		return LogStoreBolt, nil
	case LogStoreNode:
		return LogStoreNode, nil
	}
	return "", fmt.Errorf("unknown raft log store %q (want %q, %q or %q)", s, LogStoreWAL, LogStoreBolt, LogStoreNode)
}

// logStore is a replica's raft log together with raft's stable store.
type logStore interface {
	raft.LogStore
	raft.StableStore
	Close() error
}

// ExistingLogStore reports the format of the raft log in a replica's
// directory, or "" when the directory holds none yet.
func ExistingLogStore(dir string) (LogStore, error) {
	for _, c := range []struct {
		name string
		kind LogStore
	}{{"raft.db", LogStoreBolt}, {"wal", LogStoreWAL}, {nodeLogMarker, LogStoreNode}} {
		_, err := os.Stat(filepath.Join(dir, c.name))
		switch {
		case err == nil:
			return c.kind, nil
		case !errors.Is(err, fs.ErrNotExist):
			return "", err
		}
	}
	return "", nil
}

// openLogStore opens the replica's raft log. A replica keeps the format it
// was created with; want only chooses the format of a new one. shared is
// the node's shared log, which replicas of format node need.
func openLogStore(dir string, want LogStore, logger hclog.Logger, shared *nodelog.Log, id fsm.ShardID) (logStore, LogStore, error) {
	kind, err := ExistingLogStore(dir)
	if err != nil {
		return nil, "", err
	}
	created := kind == ""
	if created {
		if kind, err = ParseLogStore(string(want)); err != nil {
			return nil, "", err
		}
	}
	switch kind {
	case LogStoreNode:
		if shared == nil {
			return nil, "", fmt.Errorf("replica in %s keeps its raft log in the node's shared log, which was not opened", dir)
		}
		if created {
			// Whatever the shared log still holds for this shard belongs to
			// an earlier replica whose files were removed.
			if err := shared.Drop(uint64(id)); err != nil {
				return nil, "", err
			}
			if err := writeMarker(dir); err != nil {
				return nil, "", err
			}
		}
		return shared.Shard(uint64(id)), kind, nil
	case LogStoreBolt:
		s, err := raftboltdb.New(raftboltdb.Options{
			Path: filepath.Join(dir, "raft.db"),
			BoltOptions: &bbolt.Options{
				Timeout:        time.Second,
				NoFreelistSync: true,
				FreelistType:   bbolt.FreelistMapType,
			},
		})
		if err != nil {
			return nil, "", err
		}
		return s, kind, nil
	case LogStoreWAL:
		s, err := openWAL(filepath.Join(dir, "wal"), logger)
		if err != nil {
			return nil, "", err
		}
		return s, kind, nil
	}
	return nil, "", fmt.Errorf("unknown raft log store %q", kind)
}

// writeMarker durably creates the file that says a replica's log is in the
// node's shared log.
func writeMarker(dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, nodeLogMarker), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	_, err = f.WriteString("this replica's raft log is in the node's shared log (raft/nodelog)\n")
	if err == nil {
		err = f.Sync()
	}
	if err = errors.Join(err, f.Close()); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// walStore is raft-wal as raft sees it in Cairn: not monotonic.
//
// raft-wal declares itself a MonotonicLogStore, and raft v1.8.0 then deletes
// a follower's whole log after a snapshot install but keeps its old last
// index in memory: the follower answers appends as if it still held entries
// it no longer has, and a follower in that state that won an election would
// panic applying them. Raft's other path (the one raft-boltdb takes) deletes
// only the log's prefix and lets appends after the snapshot leave a gap.
// raft-wal refuses gaps, so walStore fills that role: an append that starts
// past the end of the log first empties the log. Everything before the gap
// is covered by the installed snapshot, which is the only way raft appends
// past its log's end, and raft treats entries it cannot find as compacted.
//
// walStore also writes a leader's command entries ahead of their sync (see
// writeahead.go) when leads says this replica leads.
type walStore struct {
	*wal.WAL
	fs     *writeAheadFS
	synced *synced
	logger hclog.Logger
	// leads reports whether this replica leads its group. While it is nil
	// (before raft runs, or with Config.SyncLeaderLog) every append is
	// synced before StoreLogs returns.
	leads atomic.Pointer[func() bool]
	kick  chan struct{}
	done  chan struct{}
	wg    sync.WaitGroup
	// beforeSync, when set (tests), runs in the syncer before each sync of
	// appends written ahead.
	beforeSync atomic.Pointer[func()]
}

func openWAL(dir string, logger hclog.Logger) (*walStore, error) {
	return openWALOn(dir, logger, nil)
}

// openWALOn opens the log on a file system of the caller's (tests), or on
// the operating system's when vfs is nil.
func openWALOn(dir string, logger hclog.Logger, vfs types.VFS) (*walStore, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	v := newWriteAheadFS(vfs)
	w, err := wal.Open(dir, wal.WithSegmentSize(walSegmentSize), wal.WithLogger(logger),
		wal.WithSegmentFiler(segment.NewFiler(dir, v)), wal.WithMetaStore(newSyncMeta(v)))
	if err != nil {
		return nil, err
	}
	last, err := w.LastIndex()
	if err != nil {
		return nil, errors.Join(err, w.Close())
	}
	// What the log holds now may have been written ahead by a process that
	// crashed before syncing it; syncing the open segment makes it durable.
	if err := syncSegments(dir, last); err != nil {
		return nil, errors.Join(err, w.Close())
	}
	ws := &walStore{WAL: w, fs: v, synced: newSynced(last), logger: logger, kick: make(chan struct{}, 1), done: make(chan struct{})}
	ws.wg.Add(1)
	go ws.runSyncer()
	return ws, nil
}

// syncSegments syncs every segment file of a raft-wal directory: on
// opening, the files may hold appends of a process that never synced them.
// (Sealed segments were synced before they were sealed, so only the tail
// needs it, but syncing the others costs nothing when they are clean.)
func syncSegments(dir string, last uint64) error {
	if last == 0 {
		return nil
	}
	names, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range names {
		if e.IsDir() || filepath.Ext(e.Name()) != ".wal" {
			continue
		}
		f, err := os.OpenFile(filepath.Join(dir, e.Name()), os.O_RDWR, 0)
		if err != nil {
			return err
		}
		if err := errors.Join(f.Sync(), f.Close()); err != nil {
			return err
		}
	}
	return nil
}

// writeAhead lets the replica write its appends ahead of their sync while
// leads reports that it leads.
func (w *walStore) writeAhead(leads func() bool) { w.leads.Store(&leads) }

// runSyncer syncs appends written ahead, one sync for whatever was written
// since the last.
func (w *walStore) runSyncer() {
	defer w.wg.Done()
	for {
		select {
		case <-w.kick:
		case <-w.done:
			return
		}
		target, epoch, ok := w.synced.pending()
		if !ok {
			continue
		}
		if hook := w.beforeSync.Load(); hook != nil {
			(*hook)()
		}
		if err := w.fs.flush(); err != nil {
			w.logger.Error("raft log: sync of appends written ahead failed; this replica stops applying entries", "error", err)
			w.synced.fail(fmt.Errorf("raft log: sync failed: %w", err))
			continue
		}
		w.synced.syncedThrough(target, epoch)
	}
}

// Close stops the syncer once the log, closing its files, has synced them.
func (w *walStore) Close() error {
	err := w.WAL.Close()
	if err == nil {
		w.synced.allSynced()
	}
	close(w.done)
	w.wg.Wait()
	return err
}

// syncedIndex returns the last index synced to disk (written ahead or not).
func (w *walStore) syncedIndex() uint64 { return w.synced.Index() }

// waitSynced returns once the log is synced through index.
func (w *walStore) waitSynced(ctx context.Context, index uint64) error {
	return w.synced.wait(ctx, index)
}

// GetLog reads an entry between FirstIndex and LastIndex. raft-wal by
// itself still serves entries that compaction removed from the head of a
// segment it has not deleted yet (the open segment holds 16 MiB). Raft
// expects a deleted entry to be gone, as with raft-boltdb: what it reads
// must agree with the bounds the store reports.
func (w *walStore) GetLog(index uint64, l *raft.Log) error {
	first, err := w.WAL.FirstIndex()
	if err != nil {
		return err
	}
	last, err := w.WAL.LastIndex()
	if err != nil {
		return err
	}
	if index < first || index > last {
		return raft.ErrLogNotFound
	}
	return w.WAL.GetLog(index, l)
}

// IsMonotonic keeps raft on the prefix-compaction path (see walStore).
func (w *walStore) IsMonotonic() bool { return false }

// StoreLog stores one entry (see StoreLogs).
func (w *walStore) StoreLog(l *raft.Log) error { return w.StoreLogs([]*raft.Log{l}) }

// StoreLogs appends entries; entries that start past the end of a non-empty
// log replace it.
func (w *walStore) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	last, err := w.WAL.LastIndex()
	if err != nil {
		return err
	}
	if last > 0 && logs[0].Index > last+1 {
		first, err := w.WAL.FirstIndex()
		if err != nil {
			return err
		}
		if err := w.DeleteRange(first, last); err != nil {
			return fmt.Errorf("raft log: clear entries %d-%d before appending %d: %w", first, last, logs[0].Index, err)
		}
	}
	if err := w.synced.failed(); err != nil {
		return err
	}
	ahead := false
	if leads := w.leads.Load(); leads != nil && (*leads)() && commandsOnly(logs) {
		ahead = true
		w.fs.deferring.Store(true)
	}
	err = w.WAL.StoreLogs(logs)
	if ahead {
		w.fs.deferring.Store(false)
	}
	if err != nil {
		return err
	}
	end := logs[len(logs)-1].Index
	if ahead {
		w.synced.wroteAhead(end)
		select {
		case w.kick <- struct{}{}:
		default:
		}
		return nil
	}
	// raft-wal synced the open segment; anything written ahead into another
	// file is synced here, so the whole log is on disk.
	if err := w.fs.flush(); err != nil {
		w.synced.fail(fmt.Errorf("raft log: sync failed: %w", err))
		return err
	}
	w.synced.wroteSynced(end)
	return nil
}

// DeleteRange removes entries; removing the log's tail lowers the synced
// index to what is left.
func (w *walStore) DeleteRange(min, max uint64) error {
	last, err := w.WAL.LastIndex()
	if err != nil {
		return err
	}
	if max >= last && min > 0 {
		w.synced.truncated(min)
	}
	return w.WAL.DeleteRange(min, max)
}
