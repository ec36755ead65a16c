package txn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/cairndb/cairn/fsm"
)

// Tx is an interactive transaction: the reads it makes are remembered with
// their versions, its writes are buffered, and at the end everything
// commits at once only if nothing it read has changed (optimistic
// concurrency). Reads see the transaction's own writes. A Tx is used by
// one goroutine, inside the function given to the node's Txn.
type Tx struct {
	read   func(ctx context.Context, key []byte) (fsm.Item, bool, error)
	scan   ScanFunc
	reads  map[string]uint64 // version read, 0 for absent
	writes map[string]fsm.Op // the last write of each key
	order  []string          // keys written, in first-write order
	scans  []fsm.ScanRead    // ranges read, with what they held
}

// ScanFunc reads up to limit keys of [start, end) (end nil: no bound) in
// key order, linearizably on each shard, and reports whether more keys
// may follow the last one returned.
type ScanFunc func(ctx context.Context, start, end []byte, limit int) (items []fsm.Item, more bool, err error)

// NewTx returns a transaction that reads keys through read and ranges
// through scan.
func NewTx(read func(ctx context.Context, key []byte) (fsm.Item, bool, error), scan ScanFunc) *Tx {
	return &Tx{read: read, scan: scan, reads: map[string]uint64{}, writes: map[string]fsm.Op{}}
}

// Scan returns up to limit keys of [start, end) in key order (end nil or
// empty: no upper bound), as of this transaction: its own puts and deletes
// in the range are applied (their items have Version 0, since they are not
// written yet). The commit fails with ErrChanged if, by then, a key of the
// part of the range read was added, changed or removed by someone else; so
// the transaction also sees no phantoms. limit must be positive.
func (tx *Tx) Scan(ctx context.Context, start, end []byte, limit int) ([]fsm.Item, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: a scan needs a positive limit", fsm.ErrInvalid)
	}
	if len(end) > 0 && bytes.Compare(start, end) >= 0 {
		return nil, fmt.Errorf("%w: empty range [%q, %q)", fsm.ErrInvalid, start, end)
	}
	// Buffered writes may hide stored keys: read enough to fill the page.
	own := 0
	for k := range tx.writes {
		if inRange([]byte(k), start, end) {
			own++
		}
	}
	stored, more, err := tx.scan(ctx, start, end, limit+own)
	if err != nil {
		return nil, err
	}
	read := fsm.ScanRead{Start: bytes.Clone(start), End: bytes.Clone(end)}
	if more && len(stored) > 0 {
		// Only the part up to the last key returned was read.
		read.End = append(bytes.Clone(stored[len(stored)-1].Key), 0)
	}
	merged := make([]fsm.Item, 0, len(stored)+own)
	for _, it := range stored {
		if v, seen := tx.reads[string(it.Key)]; seen && v != it.Version {
			return nil, ErrChanged
		}
		read.Items = append(read.Items, fsm.KeyVersion{Key: it.Key, Version: it.Version})
		if _, written := tx.writes[string(it.Key)]; !written {
			merged = append(merged, it)
		}
	}
	for _, w := range tx.writes {
		if w.Type == fsm.OpPut && inRange(w.Key, read.Start, read.End) {
			merged = append(merged, fsm.Item{Key: bytes.Clone(w.Key), Value: bytes.Clone(w.Value)})
		}
	}
	sort.Slice(merged, func(i, j int) bool { return bytes.Compare(merged[i].Key, merged[j].Key) < 0 })
	if len(merged) > limit {
		merged = merged[:limit]
	}
	tx.scans = append(tx.scans, read)
	return merged, nil
}

func inRange(key, start, end []byte) bool {
	return bytes.Compare(key, start) >= 0 && (len(end) == 0 || bytes.Compare(key, end) < 0)
}

// ErrEmptyKey: a key must not be empty.
var ErrEmptyKey = errors.New("txn: empty key")

// Get returns key's value and whether it exists, as of this transaction.
func (tx *Tx) Get(ctx context.Context, key []byte) ([]byte, bool, error) {
	if len(key) == 0 {
		return nil, false, ErrEmptyKey
	}
	if w, ok := tx.writes[string(key)]; ok {
		if w.Type == fsm.OpDelete {
			return nil, false, nil
		}
		return bytes.Clone(w.Value), true, nil
	}
	it, found, err := tx.read(ctx, key)
	if err != nil {
		return nil, false, err
	}
	if v, seen := tx.reads[string(key)]; seen && v != it.Version {
		// The key changed between two reads of this transaction: it
		// cannot commit, so stop it now.
		return nil, false, ErrChanged
	}
	tx.reads[string(key)] = it.Version
	return it.Value, found, nil
}

// Put writes key (buffered until commit).
func (tx *Tx) Put(key, value []byte) {
	tx.write(fsm.Put(bytes.Clone(key), bytes.Clone(value)))
}

// Delete removes key (buffered until commit).
func (tx *Tx) Delete(key []byte) {
	tx.write(fsm.Delete(bytes.Clone(key)))
}

func (tx *Tx) write(op fsm.Op) {
	k := string(op.Key)
	if _, ok := tx.writes[k]; !ok {
		tx.order = append(tx.order, k)
	}
	tx.writes[k] = op
}

// ErrChanged: something the transaction read changed before it committed
// (nothing was written; Retryable reports true).
var ErrChanged = errors.New("txn: a key read by the transaction changed")

// Request returns the compare-and-write that commits tx: every read key at
// the version read, every scanned range as read, then the writes. A transaction that only read commits
// as a read of the same keys under the same comparisons (proving the reads
// held together at one moment). ok is false for a transaction that did
// nothing.
func (tx *Tx) Request() (req Request, ok bool) {
	keys := make([]string, 0, len(tx.reads))
	for k := range tx.reads {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		req.If = append(req.If, fsm.Compare{Kind: fsm.CompareVersion, Key: []byte(k), Version: tx.reads[k]})
	}
	for _, k := range tx.order {
		req.Then = append(req.Then, tx.writes[k])
	}
	if len(req.Then) == 0 {
		for _, k := range keys {
			req.Then = append(req.Then, fsm.Get([]byte(k)))
		}
	}
	req.Scans = tx.scans
	return req, len(req.Then)+len(req.Scans) > 0
}

// Retryable reports whether err means the transaction lost a race and may
// simply run again: a key it read changed, or conflicts outlasted the
// coordinator's attempts.
func Retryable(err error) bool {
	return errors.Is(err, ErrChanged) || errors.Is(err, ErrConflict) || errors.Is(err, fsm.ErrConflict)
}
