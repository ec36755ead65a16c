package nodelog

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/hashicorp/raft"
)

// Shard is one shard replica's view of the node's log: its raft log
// (raft.LogStore) and its term and vote (raft.StableStore). Every write
// returns once it is durable.
type Shard struct {
	l  *Log
	id uint64
}

var (
	_ raft.LogStore    = (*Shard)(nil)
	_ raft.StableStore = (*Shard)(nil)
)

// FirstIndex returns the first index held, 0 for none.
func (s *Shard) FirstIndex() (uint64, error) {
	first, _ := s.bounds()
	return first, nil
}

// LastIndex returns the last index held, 0 for none.
func (s *Shard) LastIndex() (uint64, error) {
	_, last := s.bounds()
	return last, nil
}

func (s *Shard) bounds() (first, last uint64) {
	s.l.mu.RLock()
	defer s.l.mu.RUnlock()
	if st := s.l.shards[s.id]; st != nil {
		return st.first, st.last
	}
	return 0, 0
}

// GetLog reads one entry; raft.ErrLogNotFound when it is not held.
func (s *Shard) GetLog(index uint64, l *raft.Log) error { return s.l.read(s.id, index, l) }

// StoreLog appends one entry (see StoreLogs).
func (s *Shard) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// StoreLogs appends consecutive entries. Entries at or below the last index
// replace the log from there; entries past its end replace the whole log
// (raft appends past the end only after installing a snapshot, which
// covers everything before).
func (s *Shard) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	return s.l.submit(&request{shard: s.id, op: opAppend, logs: logs})
}

// DeleteRange removes entries min-max, which must include the first or the
// last entry held.
func (s *Shard) DeleteRange(min, max uint64) error {
	return s.l.submit(&request{shard: s.id, op: opDeleteRange, min: min, max: max})
}

// Set stores a stable value.
func (s *Shard) Set(key, val []byte) error {
	return s.l.submit(&request{shard: s.id, op: opStable, key: key, val: val})
}

// Get reads a stable value; ErrNotFound when never set.
func (s *Shard) Get(key []byte) ([]byte, error) {
	s.l.mu.RLock()
	defer s.l.mu.RUnlock()
	if st := s.l.shards[s.id]; st != nil {
		if v, ok := st.stable[string(key)]; ok {
			return slices.Clone(v), nil
		}
	}
	return nil, ErrNotFound
}

// SetUint64 stores a stable number.
func (s *Shard) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 reads a stable number; ErrNotFound when never set.
func (s *Shard) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("nodelog: shard %d: stable value %q is not a number", s.id, key)
	}
	return binary.BigEndian.Uint64(v), nil
}

// Close does nothing: the node's Log outlives its shards.
func (s *Shard) Close() error { return nil }
