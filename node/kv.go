package node

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/shard"
)

// WriteOptions condition and identify a write.
type WriteOptions struct {
	// IfVersion makes the write conditional on the key's version (0: the key
	// must be absent). A failed condition is an error wrapping
	// fsm.ErrVersionMismatch (a *fsm.ConditionError).
	IfVersion *uint64
	// RequestID makes a retried write apply at most once. Without one the
	// node picks one, so that its own retries are safe.
	RequestID string
}

// keyTarget routes by key through the current ring.
func (n *Node) keyTarget(key []byte) func(context.Context) (target, error) {
	return func(ctx context.Context) (target, error) {
		v, err := n.routingView(ctx)
		if err != nil {
			return target{}, err
		}
		return target{id: v.ring.Locate(key), epoch: v.ring.Epoch()}, nil
	}
}

func (n *Node) write(ctx context.Context, op fsm.Op, o WriteOptions) (fsm.OpResult, error) {
	if len(op.Key) == 0 {
		return fsm.OpResult{}, fmt.Errorf("%w: empty key", fsm.ErrInvalid)
	}
	op.IfVersion = o.IfVersion
	res, err := n.proposeSettling(ctx, n.keyTarget(op.Key), fsm.Command{RequestID: o.RequestID, Ops: []fsm.Op{op}})
	if err != nil {
		return fsm.OpResult{}, err
	}
	if err := res.Err(); err != nil {
		return fsm.OpResult{}, err
	}
	return res.Ops[0], nil
}

// Put writes key and returns its new version. Any node accepts any key: the
// write goes to the leader of the key's shard, here or on another node.
//
// Errors: fsm.ErrInvalid / fsm.ErrTooLarge (bad input, nothing proposed),
// fsm.ErrVersionMismatch (condition failed), shard.ErrUnavailable (nothing
// was proposed before ctx ended: no leader, no quorum), and
// shard.ErrOutcomeUnknown (the write may have applied; retrying with the
// same RequestID applies it at most once).
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

// Get reads key with the given consistency (linearizable by default): on
// this node's replica of the key's shard if it has one (a follower asks the
// leader for the read index), else on the shard's leader (any replica for
// stale reads).
func (n *Node) Get(ctx context.Context, key []byte, o shard.ReadOptions) (fsm.Item, error) {
	if len(key) == 0 {
		return fsm.Item{}, fmt.Errorf("%w: empty key", fsm.ErrInvalid)
	}
	items, _, err := n.read(ctx, n.keyTarget(key), readRequest{key: key, opts: o})
	if err != nil {
		return fsm.Item{}, err
	}
	if len(items) != 1 {
		return fsm.Item{}, fmt.Errorf("%w: get returned %d items", shard.ErrUnavailable, len(items))
	}
	return items[0], nil
}

// ScanOptions select keys in order across all shards. Cursor continues a
// previous scan (it is the last key that scan returned). Reverse returns
// the range in descending key order.
type ScanOptions struct {
	Prefix, Start, End []byte
	Limit              int // default and maximum 1000
	Cursor             []byte
	Reverse            bool
}

// MaxScanLimit bounds one page of a scan.
const MaxScanLimit = 1000

// Scan returns up to Limit keys of the range in key order (descending with
// Reverse, the cursor then continuing below its key), merged from every
// shard (read in parallel, each on its replica here or on its leader), and a
// cursor when more may follow. Each shard is read at its own consistent
// point (linearizable by default); the page as a whole is not one snapshot
// across shards.
func (n *Node) Scan(ctx context.Context, so ScanOptions, o shard.ReadOptions) ([]fsm.Item, []byte, error) {
	limit := so.Limit
	if limit <= 0 || limit > MaxScanLimit {
		limit = MaxScanLimit
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	v, err := n.routingView(ctx)
	if err != nil {
		return nil, nil, err
	}
	ids := v.ring.Shards()
	type page struct {
		items []fsm.Item
		more  bool
		err   error
	}
	pages := make([]page, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			locate := func(ctx context.Context) (target, error) {
				cur, err := n.routingView(ctx)
				if err != nil {
					return target{}, err
				}
				if !slices.Contains(cur.ring.Shards(), id) {
					return target{}, fmt.Errorf("%w: the ring changed during the scan; retry it", shard.ErrUnavailable)
				}
				return target{id: id, epoch: cur.ring.Epoch()}, nil
			}
			r := readRequest{opts: o, scan: &fsm.ScanOptions{Prefix: so.Prefix, Start: so.Start, End: so.End, After: so.Cursor, Limit: limit, Reverse: so.Reverse}}
			p := &pages[i]
			p.items, p.more, p.err = n.read(ctx, locate, r)
		}()
	}
	wg.Wait()
	var items []fsm.Item
	more := false
	for _, p := range pages {
		if p.err != nil {
			return nil, nil, p.err
		}
		items = append(items, p.items...)
		more = more || p.more
	}
	slices.SortFunc(items, func(a, b fsm.Item) int {
		if so.Reverse {
			return bytes.Compare(b.Key, a.Key)
		}
		return bytes.Compare(a.Key, b.Key)
	})
	// Each shard returned its first limit keys, so the first limit keys of
	// the merge are the first limit keys of the range.
	if len(items) > limit || (len(items) == limit && more) {
		items = items[:limit]
		return items, items[limit-1].Key, nil
	}
	return items, nil, nil
}
