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
	if err := n.checkDiskFor([]fsm.Op{op}); err != nil {
		return fsm.OpResult{}, err
	}
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
// was proposed before ctx ended: no leader, no quorum), ErrDiskFull (a
// node's data disk is below MinFreeDisk; nothing proposed), and
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
// cursor when more may follow.
//
// Keys are spread over the shards by hash, so each shard is first asked for
// a share of the page (firstShardLimit), not the whole of it. When a shard
// fills its share before the merge is sure of Limit keys, that shard (and
// any other whose share ends too early) is read again from where its share
// ended, for as many keys as the page still lacks; after that second read
// the page is always complete (see scanMerge.settled). Each read of a shard
// is served at its own consistent point (linearizable by default); a page
// is not one snapshot across shards, nor, when a shard was read twice,
// across that shard's two reads, which are in key order as two pages are.
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
	// Shards whose replica here proved fresh in the read session are read
	// at once (readOnce), with no round to wait for.
	var here func(i int) bool
	if rs := readSessionOf(ctx); rs != nil && o.Consistency == shard.Linearizable && !bugLocalReads {
		here = func(i int) bool {
			s := n.localShard(ids[i])
			return s != nil && rs.point(ids[i], s) > 0
		}
	}
	return scanShards(len(ids), limit, so.Reverse, here, func(i int, after []byte, max int) ([]fsm.Item, bool, error) {
		id := ids[i]
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
		if after == nil {
			after = so.Cursor
		}
		r := readRequest{opts: o, scan: &fsm.ScanOptions{Prefix: so.Prefix, Start: so.Start, End: so.End, After: after, Limit: max, Reverse: so.Reverse}}
		return n.read(ctx, locate, r)
	})
}

// scanShards merges a page of up to limit keys from n shards. read(i,
// after, max) returns shard i's next keys in scan order after key after
// (nil: from the start of the range), at most max of them, and whether it
// has more. It returns the page and, when more keys may follow it, the
// cursor to continue from. Shards are read in parallel, except those for
// which here(i) holds (here may be nil): reads that need no round, which
// are made one after the other on the calling goroutine, as is one of the
// others, sparing the goroutines (and the growth of their stacks).
func scanShards(n, limit int, reverse bool, here func(i int) bool, read func(i int, after []byte, max int) ([]fsm.Item, bool, error)) ([]fsm.Item, []byte, error) {
	m := newScanMerge(n, reverse)
	readEach := func(idx []int, max int) error {
		if len(idx) == 0 {
			return nil
		}
		errs := make([]error, len(idx))
		readOne := func(j, i int) {
			items, more, err := read(i, m.last(i), max)
			if err == nil && more && len(items) == 0 {
				// A full page has keys; the merge needs one to go on from.
				err = fmt.Errorf("%w: a shard's page of a scan had more keys but none in it", shard.ErrUnavailable)
			}
			if err == nil {
				m.add(i, items, more)
			}
			errs[j] = err
		}
		var inline, apart []int // positions in idx
		for j, i := range idx {
			if here != nil && here(i) {
				inline = append(inline, j)
			} else {
				apart = append(apart, j)
			}
		}
		if len(apart) > 0 {
			inline = append(inline, apart[len(apart)-1])
			apart = apart[:len(apart)-1]
		}
		var wg sync.WaitGroup
		for _, j := range apart {
			wg.Go(func() { readOne(j, idx[j]) })
		}
		for _, j := range inline {
			readOne(j, idx[j])
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
		return nil
	}
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	if err := readEach(all, firstShardLimit(limit, n)); err != nil {
		return nil, nil, err
	}
	for {
		items, sure, again := m.settled(limit)
		if len(again) == 0 {
			if len(items) > limit || (len(items) == limit && m.anyMore()) {
				items = items[:limit]
				return items, items[limit-1].Key, nil
			}
			return items, nil, nil
		}
		if err := readEach(again, limit-sure); err != nil {
			return nil, nil, err
		}
	}
}

// firstShardLimit is how many keys each of n shards is first asked for
// toward a page of limit keys: its even share and a quarter more, plus 8,
// for the unevenness of hashing. The keys of a page fall on the shards
// about binomially, so for a page of 100 on four shards (25 expected, 39
// asked) a shard holds more than it was asked for about once in 1,500
// reads, and then only that shard is read again.
func firstShardLimit(limit, n int) int {
	if n <= 1 {
		return limit
	}
	share := (limit + n - 1) / n
	return min(limit, share+share/4+8)
}

// scanMerge gathers the pages of a scan's shards and decides how much of
// their merge is sure: a shard that has more keys than it returned may hold
// keys between any it did return and the next one it would return, so the
// merge is sure only up to the lowest (in scan order) last key of such
// shards. During a round of reads each goroutine touches only its own
// shard's entries; the merge reads them all once the round is over.
type scanMerge struct {
	reverse bool
	items   [][]fsm.Item // per shard, in scan order
	more    []bool       // per shard: its last page stopped at its limit
}

func newScanMerge(shards int, reverse bool) *scanMerge {
	return &scanMerge{reverse: reverse, items: make([][]fsm.Item, shards), more: make([]bool, shards)}
}

func (m *scanMerge) add(i int, items []fsm.Item, more bool) {
	m.items[i] = append(m.items[i], items...)
	m.more[i] = more
}

// last is the last key shard i returned, nil if none.
func (m *scanMerge) last(i int) []byte {
	if len(m.items[i]) == 0 {
		return nil
	}
	return m.items[i][len(m.items[i])-1].Key
}

func (m *scanMerge) anyMore() bool { return slices.Contains(m.more, true) }

// cmp orders keys in scan order: ascending, or descending with reverse.
func (m *scanMerge) cmp(a, b []byte) int {
	if m.reverse {
		return bytes.Compare(b, a)
	}
	return bytes.Compare(a, b)
}

// settled returns every key gathered, merged in scan order; how many of
// the first ones are sure (no shard can hold another key before the last
// of them); and, unless limit of them are sure, the shards to read again.
//
// A shard is read again when it has more keys and its last key comes
// before the limit-th key gathered (or fewer than limit were gathered): its
// unseen keys may then belong to the page. Read again for limit - sure keys
// each, the page is settled: let b be the lowest last key of the shards
// that still have more after that read. Any such shard that was read again
// holds limit - sure new keys up to b, all after the sure ones; one that
// was not read again ends at or after the limit-th key. Either way at least
// limit keys come at or before b.
func (m *scanMerge) settled(limit int) (items []fsm.Item, sure int, again []int) {
	for _, its := range m.items {
		items = append(items, its...)
	}
	slices.SortFunc(items, func(a, b fsm.Item) int { return m.cmp(a.Key, b.Key) })
	var bound []byte // the lowest last key of shards with more
	for i := range m.items {
		if last := m.last(i); m.more[i] && (bound == nil || m.cmp(last, bound) < 0) {
			bound = last
		}
	}
	if bound == nil {
		return items, len(items), nil
	}
	sure, _ = slices.BinarySearchFunc(items, bound, func(it fsm.Item, k []byte) int { return m.cmp(it.Key, k) })
	sure++ // the bound itself is sure
	if sure >= limit {
		return items, sure, nil
	}
	for i := range m.items {
		if m.more[i] && (len(items) < limit || m.cmp(m.last(i), items[limit-1].Key) < 0) {
			again = append(again, i)
		}
	}
	return items, sure, again
}
