package docstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/ring"
)

// memShards is how many shards memKV pretends to have: keys are placed by
// a hash of their routing key, and a command whose keys span shards is an
// error, as one-shard writes must not.
const memShards = 3

func memShard(key []byte) int {
	h := fnv.New32a()
	h.Write(ring.RouteKey(key))
	return int(h.Sum32() % memShards)
}

// memTags are routing tags, one per shard.
var memTags = func() [][]byte {
	tags := make([][]byte, memShards)
	for n, found := 0, 0; found < memShards; n++ {
		t := []byte(fmt.Sprint("shard-tag-", n))
		if i := memShard(t); tags[i] == nil {
			tags[i] = t
			found++
		}
	}
	return tags
}()

// memKV is the KV interface over a map: one lock, versions counting up,
// scans in key order. It stands in for a node.
type memKV struct {
	mu      sync.Mutex
	items   map[string]fsm.Item
	version uint64
	writes  int
	// failScans, when positive, makes that many scans from now on fail
	// (a node that dies in the middle of a build, as its builder sees it).
	failScans int
	gate      *readGate
}

var errInjected = errors.New("memKV: injected failure")

func newMemKV() *memKV { return &memKV{items: map[string]fsm.Item{}} }

// gateUniqueReads makes the next n reads of unique index entries return
// only once all n have read (or a second has passed), so that n writers
// all read before any of them writes.
func (m *memKV) gateUniqueReads(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gate = &readGate{left: n, open: make(chan struct{})}
}

type readGate struct {
	left int
	open chan struct{}
}

func (m *memKV) Get(_ context.Context, key []byte) (fsm.Item, bool, error) {
	m.mu.Lock()
	it, ok := m.items[string(key)]
	g := m.gate
	if g == nil || len(key) < 2 || key[1] != 'u' {
		m.mu.Unlock()
		return it, ok, nil
	}
	// Read first, then wait for the others to have read too.
	if g.left--; g.left == 0 {
		close(g.open)
		m.gate = nil
	}
	m.mu.Unlock()
	select {
	case <-g.open:
	case <-time.After(time.Second):
	}
	return it, ok, nil
}

func (m *memKV) Scan(_ context.Context, start, end, after []byte, limit int, reverse bool) ([]fsm.Item, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failScans > 0 {
		m.failScans--
		return nil, false, errInjected
	}
	var keys []string
	for k := range m.items {
		kb := []byte(k)
		if bytes.Compare(kb, start) >= 0 && (len(end) == 0 || bytes.Compare(kb, end) < 0) &&
			(after == nil || !reverse && bytes.Compare(kb, after) > 0 || reverse && bytes.Compare(kb, after) < 0) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	if reverse {
		slices.Reverse(keys)
	}
	more := len(keys) > limit
	if more {
		keys = keys[:limit]
	}
	out := make([]fsm.Item, len(keys))
	for i, k := range keys {
		out[i] = m.items[k]
	}
	return out, more, nil
}

func (m *memKV) ShardTag(_ context.Context, key []byte) ([]byte, error) {
	return memTags[memShard(key)], nil
}

func (m *memKV) ShardTags(context.Context) ([][]byte, error) { return memTags, nil }

func (m *memKV) Transact(_ context.Context, ifs []fsm.Compare, then []fsm.Op) (bool, []fsm.OpResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	shards := map[int]bool{}
	for _, c := range ifs {
		shards[memShard(c.Key)] = true
	}
	for _, op := range then {
		shards[memShard(op.Key)] = true
	}
	if len(shards) > 1 && !touchesUnique(ifs, then) {
		return false, nil, fmt.Errorf("memKV: one command over %d shards", len(shards))
	}
	for _, c := range ifs {
		it := m.items[string(c.Key)]
		if !c.Holds(it.Version, it.Value) {
			return false, nil, nil
		}
	}
	res := make([]fsm.OpResult, len(then))
	for i, op := range then {
		switch op.Type {
		case fsm.OpPut:
			m.version++
			m.items[string(op.Key)] = fsm.Item{Key: bytes.Clone(op.Key), Value: bytes.Clone(op.Value), Version: m.version}
			res[i].Version = m.version
			m.writes++
		case fsm.OpDelete:
			_, res[i].Existed = m.items[string(op.Key)]
			delete(m.items, string(op.Key))
			m.writes++
		}
	}
	return true, res, nil
}

func stringsReader(s string) *bytes.Reader { return bytes.NewReader([]byte(s)) }

// touchesUnique: a command with a unique index's global entry spans
// shards on purpose (a node runs it as a cross-shard transaction).
func touchesUnique(ifs []fsm.Compare, then []fsm.Op) bool {
	for _, c := range ifs {
		if len(c.Key) > 1 && c.Key[0] == ring.RoutedPrefix && c.Key[1] == 'u' {
			return true
		}
	}
	for _, op := range then {
		if len(op.Key) > 1 && op.Key[0] == ring.RoutedPrefix && op.Key[1] == 'u' {
			return true
		}
	}
	return false
}
