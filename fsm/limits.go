package fsm

import (
	"bytes"
	"encoding/binary"
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
// A transaction counts the writes of both branches; a phase its intents,
// data writes and record.
func footprint(cmd Command, threshold int64) (bytes, count int64) {
	if p := cmd.Phase; p != nil {
		bytes, count = phaseFootprint(p, threshold)
	}
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
	if cmd.RequestID != "" && cmd.writes() {
		// Counted as a record and an index entry, as older builds wrote
		// them: more than a record adds to a batch (its ID, index,
		// number and result, and at most one entry), so it still bounds
		// it.
		bytes += 2*(int64(len(cmd.RequestID))+genPrefixLen+1) + 16 + int64(cmd.positions())*12 + 2*entryOverhead
		count += 2
	}
	return bytes, count
}

func phaseFootprint(p *Phase, threshold int64) (bytes, count int64) {
	id := int64(len(p.TxnID))
	entry := func(key, value int64) {
		if value >= threshold {
			value = 12
		}
		bytes += key + value + entryOverhead + genPrefixLen + 1
		count++
	}
	entry(id, 32+int64(len(p.Participants))*binary.MaxVarintLen64) // the record
	for _, r := range p.Reads {
		entry(int64(len(r.Key)), id+16)
	}
	for _, w := range p.Writes {
		entry(int64(len(w.Key)), id+16+int64(len(w.Value)))
	}
	for _, sc := range p.Scans {
		entry(int64(len(sc.Start)+len(sc.End)+len(p.TxnID)+4), 32) // the range lock
	}
	resolved := func(k []byte) {
		// The intent's removal and the data it writes, whose value is the
		// intent's: at most the threshold inline.
		entry(int64(len(k)), 0)
		entry(int64(len(k)), threshold-1)
	}
	for _, k := range p.Keys {
		resolved(k)
	}
	for _, m := range p.More {
		for _, k := range m.Keys {
			resolved(k)
		}
	}
	return bytes, count
}

// Check validates cmd against l and the store's value threshold. Errors wrap
// ErrInvalid or ErrTooLarge and name the offending op.
func (s *Store) Check(cmd Command) error {
	l := s.limits
	if cmd.Phase != nil {
		return s.checkPhase(cmd)
	}
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

func (s *Store) checkPhase(cmd Command) error {
	l, p := s.limits, cmd.Phase
	switch {
	case cmd.Txn || len(cmd.Ops)+len(cmd.If)+len(cmd.Else) > 0:
		return fmt.Errorf("%w: a phase with ops or comparisons of its own", ErrInvalid)
	case p.Kind < PhaseBegin || p.Kind > PhaseCommit:
		return fmt.Errorf("%w: unknown phase %d", ErrInvalid, p.Kind)
	case p.TxnID == "":
		return fmt.Errorf("%w: %s without a transaction ID", ErrInvalid, p.Kind)
	case len(p.TxnID) > 256:
		return fmt.Errorf("%w: transaction ID of %d bytes, limit 256", ErrTooLarge, len(p.TxnID))
	case len(cmd.RequestID) > 256:
		return fmt.Errorf("%w: request id of %d bytes, limit 256", ErrTooLarge, len(cmd.RequestID))
	case len(p.Reads)+len(p.Writes)+len(p.Keys)+p.moreKeys() > l.MaxOps:
		return fmt.Errorf("%w: %d keys in one %s, limit %d", ErrTooLarge, len(p.Reads)+len(p.Writes)+len(p.Keys)+p.moreKeys(), p.Kind, l.MaxOps)
	case len(p.More) > 0 && p.Kind != PhaseResolve:
		return fmt.Errorf("%w: %s with further transactions (only a resolve takes them)", ErrInvalid, p.Kind)
	case len(p.Participants) > l.MaxOps:
		return fmt.Errorf("%w: %d participants, limit %d", ErrTooLarge, len(p.Participants), l.MaxOps)
	}
	// A Resolve may name no keys: it then releases range locks only.
	prepares := p.Kind == PhasePrepare || p.Kind == PhaseCommit
	if prepares && len(p.Reads)+len(p.Writes)+len(p.Scans) == 0 {
		return fmt.Errorf("%w: %s without reads, scans or writes", ErrInvalid, p.Kind)
	}
	if !prepares && len(p.Reads)+len(p.Writes)+len(p.Scans) > 0 || p.Kind != PhaseResolve && p.Kind != PhaseDecide && p.Kind != PhaseForget && len(p.Keys) > 0 {
		return fmt.Errorf("%w: %s with fields of another phase", ErrInvalid, p.Kind)
	}
	if (p.Kind == PhaseBegin || p.Kind == PhaseHeartbeat) && p.Deadline == 0 {
		return fmt.Errorf("%w: %s without a deadline", ErrInvalid, p.Kind)
	}
	key := func(what string, i int, k []byte) error {
		switch {
		case len(k) == 0:
			return fmt.Errorf("%w: %s %d: empty key", ErrInvalid, what, i)
		case len(k) > l.MaxKeySize:
			return fmt.Errorf("%w: %s %d: key of %d bytes, limit %d", ErrTooLarge, what, i, len(k), l.MaxKeySize)
		}
		return nil
	}
	for i, r := range p.Reads {
		if r.Kind != CompareVersion || len(r.Value) != 0 {
			return fmt.Errorf("%w: read %d: a read names the version it saw, nothing else", ErrInvalid, i)
		}
		if err := key("read", i, r.Key); err != nil {
			return err
		}
	}
	for i, w := range p.Writes {
		switch {
		case w.Type != OpPut && w.Type != OpDelete:
			return fmt.Errorf("%w: write %d: %v is not a write", ErrInvalid, i, w.Type)
		case w.IfVersion != nil:
			return fmt.Errorf("%w: write %d: conditions belong in Reads", ErrInvalid, i)
		case w.Type == OpDelete && len(w.Value) != 0:
			return fmt.Errorf("%w: write %d: delete with a value", ErrInvalid, i)
		case len(w.Value) > l.MaxValueSize:
			return fmt.Errorf("%w: write %d: value of %d bytes, limit %d", ErrTooLarge, i, len(w.Value), l.MaxValueSize)
		}
		if err := key("write", i, w.Key); err != nil {
			return err
		}
	}
	for i, k := range p.Keys {
		if err := key("key", i, k); err != nil {
			return err
		}
	}
	for i, m := range p.More {
		switch {
		case m.TxnID == "":
			return fmt.Errorf("%w: resolution %d without a transaction ID", ErrInvalid, i)
		case len(m.TxnID) > 256:
			return fmt.Errorf("%w: resolution %d: transaction ID of %d bytes, limit 256", ErrTooLarge, i, len(m.TxnID))
		}
		for j, k := range m.Keys {
			if err := key(fmt.Sprintf("resolution %d key", i), j, k); err != nil {
				return err
			}
		}
	}
	for i, sc := range p.Scans {
		if err := checkScanRead(sc, l.MaxKeySize); err != nil {
			return fmt.Errorf("%w: scan %d: %w", ErrInvalid, i, err)
		}
	}
	b, c := footprint(cmd, s.opts.ValueThreshold)
	if b > l.MaxFootprint || c > l.MaxCount {
		return fmt.Errorf("%w: %s needs %d bytes in one transaction, limit %d", ErrTooLarge, p.Kind, b, l.MaxFootprint)
	}
	return nil
}

// checkScanRead checks that a scanned range is well formed: End after Start
// (or open), and the items inside it in strictly increasing key order.
func checkScanRead(sc ScanRead, maxKey int) error {
	if len(sc.Start) > maxKey || len(sc.End) > maxKey {
		return fmt.Errorf("range bound longer than %d bytes", maxKey)
	}
	if len(sc.End) > 0 && bytes.Compare(sc.Start, sc.End) >= 0 {
		return fmt.Errorf("range [%q, %q) is empty", sc.Start, sc.End)
	}
	var prev []byte
	for j, it := range sc.Items {
		switch {
		case len(it.Key) == 0 || it.Version == 0:
			return fmt.Errorf("item %d: an item needs a key and the version it had", j)
		case bytes.Compare(it.Key, sc.Start) < 0 || len(sc.End) > 0 && bytes.Compare(it.Key, sc.End) >= 0:
			return fmt.Errorf("item %d: key %q outside the range", j, it.Key)
		case prev != nil && bytes.Compare(prev, it.Key) >= 0:
			return fmt.Errorf("item %d: keys out of order", j)
		}
		prev = it.Key
	}
	return nil
}
