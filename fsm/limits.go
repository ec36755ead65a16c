package fsm

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Input errors, returned before anything is proposed.
var (
	ErrInvalid  = errors.New("fsm: invalid command")
	ErrTooLarge = errors.New("fsm: command too large")
)

// Limits bound what one command may hold. In-memory stores (tests) accept
// values slightly under 1 MiB, since Badger keeps them inline. They are checked by the proposer, so
// that every entry in the log can be applied in one Badger transaction.
type Limits struct {
	MaxKeySize   int // bytes; default 4 KiB
	MaxValueSize int // bytes; default 1 MiB
	MaxOps       int // writes per command; default 1024
	// MaxFootprint bounds the bytes one command adds to a Badger transaction
	// (keys, small values, version headers, dedupe record). Derived from the
	// store's MemTableSize.
	MaxFootprint int64
	// MaxCount bounds the Badger entries one command adds.
	MaxCount int64
}

// Per-write overhead counted in a footprint: version header, Badger entry
// metadata and the entry's skiplist node.
const entryOverhead = 8 + 32

func limitsFor(db *badger.DB, opts Options) Limits {
	l := Limits{
		MaxKeySize:   4 << 10,
		MaxValueSize: 1 << 20,
		MaxOps:       1024,
		// Leave room: an apply transaction holds one or more commands plus the
		// applied index and dedupe pruning.
		MaxFootprint: db.MaxBatchSize() / 4,
		MaxCount:     db.MaxBatchCount() / 4,
	}
	if opts.InMemory {
		// Values stay inline: with their 8-byte version header they must be
		// below Badger's threshold, and one must fit a transaction beside
		// the largest key and a dedupe record.
		l.MaxValueSize = min(maxInMemoryValue-16, int(l.MaxFootprint)-l.MaxKeySize-1024)
	}
	return l
}

// footprint estimates what cmd adds to a Badger transaction when values at or
// above threshold live in the value log.
// A transaction counts the writes of both branches.
func footprint(cmd Command, threshold int64) (bytes, count int64) {
	for _, op := range append(cmd.Ops[:len(cmd.Ops):len(cmd.Ops)], cmd.Else...) {
		if op.Type == OpGet {
			continue
		}
		v := int64(len(op.Value))
		if v >= threshold {
			v = 12 // value pointer
		}
		bytes += int64(len(op.Key)) + v + entryOverhead + genPrefixLen + 1
		count++
	}
	if cmd.RequestID != "" {
		bytes += 2*(int64(len(cmd.RequestID))+genPrefixLen+1) + 16 + int64(len(cmd.Ops)+len(cmd.Else))*12 + 2*entryOverhead
		count += 2
	}
	return bytes, count
}

// Check validates cmd against l and the store's value threshold. Errors wrap
// ErrInvalid or ErrTooLarge and name the offending op.
func (s *Store) Check(cmd Command) error {
	l := s.limits
	if len(cmd.Ops)+len(cmd.Else) == 0 {
		return fmt.Errorf("%w: no operations", ErrInvalid)
	}
	if !cmd.Txn && (len(cmd.If) > 0 || len(cmd.Else) > 0) {
		return fmt.Errorf("%w: comparisons or an else branch outside a transaction", ErrInvalid)
	}
	if n := len(cmd.Ops) + len(cmd.Else) + len(cmd.If); n > l.MaxOps {
		return fmt.Errorf("%w: %d operations and comparisons, limit %d", ErrTooLarge, n, l.MaxOps)
	}
	if len(cmd.RequestID) > 256 {
		return fmt.Errorf("%w: request id of %d bytes, limit 256", ErrTooLarge, len(cmd.RequestID))
	}
	for i, cmp := range cmd.If {
		switch {
		case cmp.Kind < CompareVersion || cmp.Kind > CompareValue:
			return fmt.Errorf("%w: comparison %d: unknown kind %d", ErrInvalid, i, cmp.Kind)
		case len(cmp.Key) == 0:
			return fmt.Errorf("%w: comparison %d: empty key", ErrInvalid, i)
		case len(cmp.Key) > l.MaxKeySize:
			return fmt.Errorf("%w: comparison %d: key of %d bytes, limit %d", ErrTooLarge, i, len(cmp.Key), l.MaxKeySize)
		case len(cmp.Value) > l.MaxValueSize:
			return fmt.Errorf("%w: comparison %d: value of %d bytes, limit %d", ErrTooLarge, i, len(cmp.Value), l.MaxValueSize)
		case cmp.Kind != CompareValue && len(cmp.Value) != 0:
			return fmt.Errorf("%w: comparison %d: a value with a %s comparison", ErrInvalid, i, cmp.Kind)
		}
	}
	for i, op := range append(cmd.Ops[:len(cmd.Ops):len(cmd.Ops)], cmd.Else...) {
		switch {
		case op.Type != OpPut && op.Type != OpDelete && !(op.Type == OpGet && cmd.Txn):
			return fmt.Errorf("%w: op %d: unknown type %v", ErrInvalid, i, op.Type)
		case op.Type == OpGet && op.IfVersion != nil:
			return fmt.Errorf("%w: op %d: a get with a condition", ErrInvalid, i)
		case op.Type == OpGet && len(op.Value) != 0:
			return fmt.Errorf("%w: op %d: get with a value", ErrInvalid, i)
		case len(op.Key) == 0:
			return fmt.Errorf("%w: op %d: empty key", ErrInvalid, i)
		case len(op.Key) > l.MaxKeySize:
			return fmt.Errorf("%w: op %d: key of %d bytes, limit %d", ErrTooLarge, i, len(op.Key), l.MaxKeySize)
		case op.Type == OpPut && len(op.Value) > l.MaxValueSize:
			return fmt.Errorf("%w: op %d: value of %d bytes, limit %d", ErrTooLarge, i, len(op.Value), l.MaxValueSize)
		case op.Type == OpDelete && len(op.Value) != 0:
			return fmt.Errorf("%w: op %d: delete with a value", ErrInvalid, i)
		}
	}
	b, c := footprint(cmd, s.opts.ValueThreshold)
	if b > l.MaxFootprint || c > l.MaxCount {
		return fmt.Errorf("%w: batch needs %d bytes in one transaction, limit %d", ErrTooLarge, b, l.MaxFootprint)
	}
	return nil
}
