package shard

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
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
)

// walSegmentSize is the size raft-wal preallocates for each segment file.
// A node holds one open segment per shard, so this is what an idle replica
// costs on disk; 16 MiB holds thousands of group-commit entries.
const walSegmentSize = 16 << 20

// ParseLogStore checks a format name ("" means the default, wal).
func ParseLogStore(s string) (LogStore, error) {
	switch LogStore(s) {
	case "", LogStoreWAL:
		return LogStoreWAL, nil
	case LogStoreBolt:
		return LogStoreBolt, nil
	}
	return "", fmt.Errorf("unknown raft log store %q (want %q or %q)", s, LogStoreWAL, LogStoreBolt)
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
	}{{"raft.db", LogStoreBolt}, {"wal", LogStoreWAL}} {
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
// was created with; want only chooses the format of a new one.
func openLogStore(dir string, want LogStore, logger hclog.Logger) (logStore, LogStore, error) {
	kind, err := ExistingLogStore(dir)
	if err != nil {
		return nil, "", err
	}
	if kind == "" {
		if kind, err = ParseLogStore(string(want)); err != nil {
			return nil, "", err
		}
	}
	switch kind {
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
type walStore struct {
	*wal.WAL
}

func openWAL(dir string, logger hclog.Logger) (*walStore, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	w, err := wal.Open(dir, wal.WithSegmentSize(walSegmentSize), wal.WithLogger(logger))
	if err != nil {
		return nil, err
	}
	return &walStore{WAL: w}, nil
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
		if err := w.WAL.DeleteRange(first, last); err != nil {
			return fmt.Errorf("raft log: clear entries %d-%d before appending %d: %w", first, last, logs[0].Index, err)
		}
	}
	return w.WAL.StoreLogs(logs)
}
