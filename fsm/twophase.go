package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Cross-shard transactions commit in two phases over the shard leaders. The
// state machine keeps the two kinds of state they need and applies the
// steps of the protocol as commands (Command.Phase):
//
//   - an intent per key a transaction prepared on this shard: the lock, and
//     for a write the new value. Only one transaction holds a key. Plain
//     writes and one-shard transactions on a locked key fail with Conflict;
//     reads of a key with a write intent fail with a *LockedError until the
//     intent is resolved.
//   - a transaction record on the shard of the transaction's first key:
//     pending until a Decide makes it committed or aborted, which is final.
//     A pending record carries a deadline; a Decide that aborts on behalf of
//     someone else (Phase.Now set) applies only past it.
//
// Deadlines and "now" are wall-clock milliseconds stamped by the proposer:
// apply compares the numbers in the log, never its own clock.

// PhaseKind is a step of a cross-shard transaction.
type PhaseKind uint8

const (
	// PhaseBegin creates the transaction's record, pending until Deadline.
	// On an existing record it changes nothing and reports its status.
	PhaseBegin PhaseKind = 1
	// PhasePrepare checks that each of Reads still holds (the versions the
	// transaction read) and that no other transaction holds any of the keys,
	// then writes an intent for each key: Writes carry their op and value,
	// keys only read are locked.
	PhasePrepare PhaseKind = 2
	// PhaseDecide turns a pending record committed (Commit) or aborted. An
	// abort with Now set applies only when the record's deadline is before
	// Now. A missing record is recorded as aborted. The result's Status is
	// the record's status afterwards: a coordinator whose commit found the
	// record aborted has lost.
	PhaseDecide PhaseKind = 3
	// PhaseResolve applies (Commit) or drops the transaction's intents on
	// Keys of this shard; keys without an intent of this transaction are
	// skipped, so resolving twice is harmless.
	PhaseResolve PhaseKind = 4
	// PhaseHeartbeat moves a pending record's deadline to Deadline (never
	// earlier).
	PhaseHeartbeat PhaseKind = 5
	// PhaseForget deletes a decided record once every participant has
	// resolved its intents.
	PhaseForget PhaseKind = 6
)

func (k PhaseKind) String() string {
	switch k {
	case PhaseBegin:
		return "begin"
	case PhasePrepare:
		return "prepare"
	case PhaseDecide:
		return "decide"
	case PhaseResolve:
		return "resolve"
	case PhaseHeartbeat:
		return "heartbeat"
	case PhaseForget:
		return "forget"
	}
	return fmt.Sprintf("phase(%d)", uint8(k))
}

// Phase is one step of a cross-shard transaction; which fields count
// depends on Kind (see the PhaseKind constants).
type Phase struct {
	Kind  PhaseKind
	TxnID string
	// RecordShard is where the transaction's record lives (Prepare: kept
	// in the intents, so that whoever meets one can find the decision).
	RecordShard ShardID
	// Deadline (Begin, Heartbeat) and Now (Decide; Prepare: kept in the
	// intents to tell their age): unix milliseconds.
	Deadline uint64
	Now      uint64
	Commit   bool // Decide, Resolve
	// Participants (Begin): the shards holding the transaction's keys.
	Participants []ShardID
	// Reads (Prepare): CompareVersion conditions, one per key read.
	Reads []Compare
	// Writes (Prepare): puts and deletes.
	Writes []Op
	// Keys (Resolve): the keys whose intents to resolve.
	Keys [][]byte
}

// TxnStatus is the state of a transaction record.
type TxnStatus uint8

const (
	TxnPending   TxnStatus = 1
	TxnCommitted TxnStatus = 2
	TxnAborted   TxnStatus = 3
)

func (s TxnStatus) String() string {
	switch s {
	case TxnPending:
		return "pending"
	case TxnCommitted:
		return "committed"
	case TxnAborted:
		return "aborted"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// ErrLocked: a read met the write intent of an undecided transaction.
var ErrLocked = errors.New("fsm: key locked by a transaction")

// LockedError names the key and the transaction holding it, and where that
// transaction's record lives. It unwraps to ErrLocked. From a Get it also
// carries the key's committed state in the same view (Committed, Found):
// a reader that then learns the transaction is still pending may return
// it, since the transaction cannot have taken effect before then.
type LockedError struct {
	Key         []byte
	TxnID       string
	RecordShard ShardID
	Committed   Item
	Found       bool
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("fsm: key %q locked by transaction %s (record on %v)", e.Key, e.TxnID, e.RecordShard)
}

func (e *LockedError) Unwrap() error { return ErrLocked }

// intent ops: what resolving a committed intent does to its key.
const (
	intentPut    byte = 1
	intentDelete byte = 2
	intentRead   byte = 3 // a lock only
)

type intent struct {
	txnID       string
	recordShard ShardID
	since       uint64 // unix ms stamped by the proposer of the prepare
	op          byte
	value       []byte
}

func (in intent) encode() []byte {
	b := appendBytes(nil, []byte(in.txnID))
	b = binary.AppendUvarint(b, uint64(in.recordShard))
	b = binary.AppendUvarint(b, in.since)
	b = append(b, in.op)
	return append(b, in.value...)
}

func decodeIntent(b []byte) (intent, error) {
	d := decoder{b: b}
	in := intent{txnID: string(d.bytes()), recordShard: ShardID(d.uvarint()), since: d.uvarint(), op: d.byte()}
	if d.err != nil || in.op < intentPut || in.op > intentRead {
		return intent{}, fmt.Errorf("fsm: bad intent record")
	}
	in.value = bytes.Clone(d.b)
	return in, nil
}

type txnRecord struct {
	status       TxnStatus
	deadline     uint64
	participants []ShardID
}

func (r txnRecord) encode() []byte {
	b := []byte{byte(r.status)}
	b = binary.AppendUvarint(b, r.deadline)
	b = binary.AppendUvarint(b, uint64(len(r.participants)))
	for _, p := range r.participants {
		b = binary.AppendUvarint(b, uint64(p))
	}
	return b
}

func decodeTxnRecord(b []byte) (txnRecord, error) {
	d := decoder{b: b}
	r := txnRecord{status: TxnStatus(d.byte()), deadline: d.uvarint()}
	n := d.count(1)
	for i := uint64(0); i < n && d.err == nil; i++ {
		r.participants = append(r.participants, ShardID(d.uvarint()))
	}
	if d.err != nil || len(d.b) != 0 || r.status < TxnPending || r.status > TxnAborted {
		return txnRecord{}, fmt.Errorf("fsm: bad transaction record")
	}
	return r, nil
}

// intentOf returns the intent on key, if any.
func (a *applier) intentOf(key []byte) (intent, bool) {
	item, err := a.txn.Get(a.ks.intent(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return intent{}, false
	}
	a.must(err)
	var in intent
	a.must(item.Value(func(b []byte) error {
		in, err = decodeIntent(b)
		return err
	}))
	return in, true
}

func (a *applier) record(id string) (txnRecord, bool) {
	item, err := a.txn.Get(a.ks.txnRecord(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return txnRecord{}, false
	}
	a.must(err)
	var r txnRecord
	a.must(item.Value(func(b []byte) error {
		r, err = decodeTxnRecord(b)
		return err
	}))
	return r, true
}

func (a *applier) putRecord(id string, r txnRecord) {
	a.must(a.txn.Set(a.ks.txnRecord(id), r.encode()))
}

// conflict returns a Conflict result if another transaction than self holds
// one of keys ("" for a command outside any transaction).
func (a *applier) conflict(self string, keys [][]byte) (Result, bool) {
	if a.f.intents.Load() == 0 {
		return Result{}, false
	}
	for _, k := range keys {
		if in, ok := a.intentOf(k); ok && in.txnID != self {
			return Result{Code: Conflict, Key: k, Holder: in.txnID, HolderShard: in.recordShard}, true
		}
	}
	return Result{}, false
}

// applyPhase applies one step of a cross-shard transaction.
func (a *applier) applyPhase(index, base uint64, cmd Command) Result {
	p := cmd.Phase
	switch p.Kind {
	case PhaseBegin:
		r, ok := a.record(p.TxnID)
		if !ok {
			r = txnRecord{status: TxnPending, deadline: p.Deadline, participants: p.Participants}
			a.putRecord(p.TxnID, r)
		}
		return Result{Status: r.status}
	case PhaseHeartbeat:
		r, ok := a.record(p.TxnID)
		if !ok {
			return Result{Status: TxnAborted}
		}
		if r.status == TxnPending && p.Deadline > r.deadline {
			r.deadline = p.Deadline
			a.putRecord(p.TxnID, r)
		}
		return Result{Status: r.status}
	case PhaseDecide:
		r, ok := a.record(p.TxnID)
		switch {
		case !ok:
			// Never begun, or forgotten after every participant resolved:
			// either way nothing may commit under this ID any more.
			r = txnRecord{status: TxnAborted}
			a.putRecord(p.TxnID, r)
		case r.status != TxnPending:
		case p.Commit:
			r.status = TxnCommitted
			a.putRecord(p.TxnID, r)
		case p.Now == 0 || r.deadline < p.Now:
			r.status = TxnAborted
			a.putRecord(p.TxnID, r)
		}
		return Result{Status: r.status}
	case PhaseForget:
		r, ok := a.record(p.TxnID)
		if !ok {
			return Result{Status: TxnAborted}
		}
		if r.status != TxnPending {
			a.must(a.txn.Delete(a.ks.txnRecord(p.TxnID)))
		}
		return Result{Status: r.status}
	case PhasePrepare:
		return a.prepare(p)
	case PhaseResolve:
		return a.resolve(index, base, p)
	}
	// The decoder admits no other kind.
	panic(fmt.Sprintf("fsm: phase kind %d", p.Kind))
}

func (a *applier) prepare(p *Phase) Result {
	keys := make([][]byte, 0, len(p.Reads)+len(p.Writes))
	for _, r := range p.Reads {
		keys = append(keys, r.Key)
	}
	for _, w := range p.Writes {
		keys = append(keys, w.Key)
	}
	if res, ok := a.conflict(p.TxnID, keys); ok {
		return res
	}
	for i, r := range p.Reads {
		if cur := a.version(r.Key); cur != r.Version && !bugSkipReadValidation {
			return Result{Code: VersionMismatch, FailedOp: i, Key: r.Key, Current: cur}
		}
	}
	for _, w := range p.Writes {
		in := intent{txnID: p.TxnID, recordShard: p.RecordShard, since: p.Now, op: intentPut, value: w.Value}
		if w.Type == OpDelete {
			in.op, in.value = intentDelete, nil
		}
		a.lock(w.Key, in)
	}
	for _, r := range p.Reads {
		if _, held := a.intentOf(r.Key); !held {
			a.lock(r.Key, intent{txnID: p.TxnID, recordShard: p.RecordShard, since: p.Now, op: intentRead})
		}
	}
	return Result{}
}

// lock writes an intent, counting it if the key held none.
func (a *applier) lock(key []byte, in intent) {
	if _, held := a.intentOf(key); !held {
		a.f.intents.Add(1)
	}
	a.must(a.txn.Set(a.ks.intent(key), in.encode()))
}

func (a *applier) resolve(index, base uint64, p *Phase) Result {
	res := Result{Ops: make([]OpResult, len(p.Keys))}
	for i, k := range p.Keys {
		in, ok := a.intentOf(k)
		if !ok || in.txnID != p.TxnID {
			continue
		}
		a.must(a.txn.Delete(a.ks.intent(k)))
		a.released++
		if !p.Commit {
			continue
		}
		switch in.op {
		case intentPut:
			v := index<<20 | (base + uint64(i) + 1)
			a.must(a.txn.Set(a.ks.data(k), append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(in.value)), v), in.value...)))
			res.Ops[i].Version = v
		case intentDelete:
			if a.version(k) != 0 {
				a.must(a.txn.Delete(a.ks.data(k)))
				res.Ops[i].Existed = true
			}
		}
	}
	return res
}

// lockedError reports a write intent on key in txn's view, if the replica
// holds any intents at all.
func (f *FSM) lockedError(txn *badger.Txn, ks keyspace, key []byte) error {
	if f.intents.Load() == 0 {
		return nil
	}
	item, err := txn.Get(ks.intent(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var in intent
	if err := item.Value(func(b []byte) error {
		in, err = decodeIntent(b)
		return err
	}); err != nil {
		return err
	}
	if in.op == intentRead {
		return nil
	}
	return &LockedError{Key: bytes.Clone(key), TxnID: in.txnID, RecordShard: in.recordShard}
}

// countIntents counts the intents of generation gen.
func (f *FSM) countIntents(gen uint32) (int64, error) {
	var n int64
	err := f.db.View(func(txn *badger.Txn) error {
		opts := badger.IteratorOptions{Prefix: newKeyspace(f.id, gen).key(spaceIntent)}
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	return n, err
}

// IntentInfo describes one intent (Intents).
type IntentInfo struct {
	Key         []byte
	TxnID       string
	RecordShard ShardID
	Write       bool   // a put or delete; false for a read lock
	Since       uint64 // unix ms when its transaction prepared (proposer's clock)
}

// Intents returns up to limit intents of this replica in key order,
// starting after the key after (nil: from the first), for resolvers and
// operators.
func (f *FSM) Intents(after []byte, limit int) ([]IntentInfo, error) {
	var out []IntentInfo
	if f.intents.Load() == 0 {
		return nil, nil
	}
	err := f.view(func(txn *badger.Txn, ks keyspace) error {
		prefix := ks.key(spaceIntent)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		it.Seek(append(bytes.Clone(prefix), after...))
		for ; it.Valid() && len(out) < limit; it.Next() {
			key := it.Item().Key()[len(prefix):]
			if after != nil && bytes.Equal(key, after) {
				continue
			}
			var in intent
			if err := it.Item().Value(func(b []byte) error {
				var err error
				in, err = decodeIntent(b)
				return err
			}); err != nil {
				return err
			}
			out = append(out, IntentInfo{Key: bytes.Clone(key), TxnID: in.txnID, RecordShard: in.recordShard, Write: in.op != intentRead, Since: in.since})
		}
		return nil
	})
	return out, err
}

// Record returns the status of transaction id's record on this replica
// (false if there is none).
func (f *FSM) Record(id string) (TxnStatus, uint64, bool, error) {
	var r txnRecord
	var found bool
	err := f.view(func(txn *badger.Txn, ks keyspace) error {
		item, err := txn.Get(ks.txnRecord(id))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		return item.Value(func(b []byte) error {
			r, err = decodeTxnRecord(b)
			return err
		})
	})
	return r.status, r.deadline, found, err
}
