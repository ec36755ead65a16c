package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/shard"
)

// ErrNotHere reports a key whose shard has no replica on this node. Until
// requests are forwarded between nodes, only keys of local shards are served.
var ErrNotHere = errors.New("node: shard not hosted on this node")

// WriteOptions condition and identify a write.
type WriteOptions struct {
	// IfVersion makes the write conditional on the key's version (0: the key
	// must be absent). A failed condition is an error wrapping
	// fsm.ErrVersionMismatch (a *fsm.ConditionError).
	IfVersion *uint64
	// RequestID makes a retried write apply at most once.
	RequestID string
}

func (n *Node) shardFor(key []byte) (*shard.Shard, error) {
	if len(key) == 0 {
		return nil, fmt.Errorf("%w: empty key", fsm.ErrInvalid)
	}
	id := n.ring.Locate(key)
	s := n.shards[id]
	if s == nil {
		return nil, fmt.Errorf("%w: %v", ErrNotHere, id)
	}
	return s, nil
}

func (n *Node) write(ctx context.Context, op fsm.Op, o WriteOptions) (fsm.OpResult, error) {
	s, err := n.shardFor(op.Key)
	if err != nil {
		return fsm.OpResult{}, err
	}
	op.IfVersion = o.IfVersion
	res, err := s.Propose(ctx, fsm.Command{RequestID: o.RequestID, Ops: []fsm.Op{op}})
	if err != nil {
		return fsm.OpResult{}, err
	}
	if err := res.Err(); err != nil {
		return fsm.OpResult{}, err
	}
	return res.Ops[0], nil
}

// Put writes key and returns its new version.
func (n *Node) Put(ctx context.Context, key, value []byte, o WriteOptions) (uint64, error) {
	r, err := n.write(ctx, fsm.Put(key, value), o)
	return r.Version, err
}

// Delete removes key. A key that was absent is an error wrapping
// fsm.ErrNotFound (nothing is written).
func (n *Node) Delete(ctx context.Context, key []byte, o WriteOptions) error {
	r, err := n.write(ctx, fsm.Delete(key), o)
	if err == nil && !r.Existed {
		return fmt.Errorf("%w: key %q", fsm.ErrNotFound, key)
	}
	return err
}

// Get reads key with the given consistency (linearizable by default).
func (n *Node) Get(ctx context.Context, key []byte, o shard.ReadOptions) (fsm.Item, error) {
	s, err := n.shardFor(key)
	if err != nil {
		return fsm.Item{}, err
	}
	it, _, err := s.Get(ctx, key, o)
	return it, err
}

// ScanOptions select keys in order across all shards. Cursor continues a
// previous scan (it is the last key that scan returned).
type ScanOptions struct {
	Prefix, Start, End []byte
	Limit              int // default and maximum 1000
	Cursor             []byte
}

// MaxScanLimit bounds one page of a scan.
const MaxScanLimit = 1000

// Scan returns up to Limit keys of the range in key order, merged from every
// shard, and a cursor when more may follow. Each shard is read at its own
// consistent point (linearizable by default); the page as a whole is not one
// snapshot across shards.
func (n *Node) Scan(ctx context.Context, so ScanOptions, o shard.ReadOptions) ([]fsm.Item, []byte, error) {
	limit := so.Limit
	if limit <= 0 || limit > MaxScanLimit {
		limit = MaxScanLimit
	}
	var items []fsm.Item
	more := false
	for _, id := range n.ring.Shards() {
		s := n.shards[id]
		if s == nil {
			return nil, nil, fmt.Errorf("%w: %v (scans span every shard)", ErrNotHere, id)
		}
		res, _, err := s.Scan(ctx, fsm.ScanOptions{Prefix: so.Prefix, Start: so.Start, End: so.End, After: so.Cursor, Limit: limit}, o)
		if err != nil {
			return nil, nil, err
		}
		items = append(items, res.Items...)
		more = more || res.More
	}
	slices.SortFunc(items, func(a, b fsm.Item) int { return bytes.Compare(a.Key, b.Key) })
	// Each shard returned its first limit keys, so the first limit keys of
	// the merge are the first limit keys of the range.
	if len(items) > limit || (len(items) == limit && more) {
		items = items[:limit]
		return items, items[limit-1].Key, nil
	}
	return items, nil, nil
}
