package txn

import (
	"bytes"
	"context"
	"errors"
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
	reads  map[string]uint64 // version read, 0 for absent
	writes map[string]fsm.Op // the last write of each key
	order  []string          // keys written, in first-write order
}

// NewTx returns a transaction that reads through read (linearizably).
func NewTx(read func(ctx context.Context, key []byte) (fsm.Item, bool, error)) *Tx {
	return &Tx{read: read, reads: map[string]uint64{}, writes: map[string]fsm.Op{}}
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
// the version read, then the writes. A transaction that only read commits
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
	return req, len(req.Then) > 0
}

// Retryable reports whether err means the transaction lost a race and may
// simply run again: a key it read changed, or conflicts outlasted the
// coordinator's attempts.
func Retryable(err error) bool {
	return errors.Is(err, ErrChanged) || errors.Is(err, ErrConflict) || errors.Is(err, fsm.ErrConflict)
}
