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
	// (The coordinator begins the record in the record shard's Prepare
	// instead; Begin remains for callers that lock nothing there.)
	PhaseBegin PhaseKind = 1
	// PhasePrepare checks that each of Reads still holds (the versions the
	// transaction read), that each of Scans still holds exactly the keys
	// and versions read, and that no other transaction holds any of the
	// keys or a write intent in a scanned range; then it writes an intent
	// for each key (Writes carry their op and value, keys only read are
	// locked) and a range lock for each scan. A scan that changed fails
	// with VersionMismatch and FailedOp len(Reads)+its index. With
	// Deadline set the shard holds the record: a successful prepare also
	// begins it (as Begin, with Participants) and reports TxnPending; on a
	// record already decided it changes nothing and reports that status.
	// The result's Ops carry, by position in Writes, the version each put
	// takes if the transaction commits (fixed now, while the key is
	// locked), so the answer need not wait for Resolve.
	PhasePrepare PhaseKind = 2
	// PhaseDecide turns a pending record committed (Commit) or aborted. An
	// abort with Now set applies only when the record's deadline is before
	// Now. A missing record is recorded as aborted, unless Now and Deadline
	// are both set and Now is before Deadline: then it may be a record
	// whose Commit has not come yet (its other participants prepare first),
	// and it is left missing, reported pending. The result's Status is
	// the record's status afterwards: a coordinator whose commit found the
	// record aborted has lost. With Keys, a decided record's intents on
	// those keys (and the transaction's range locks) are resolved in the
	// same step, as Resolve would.
	PhaseDecide PhaseKind = 3
	// PhaseResolve applies (Commit) or drops the transaction's intents on
	// Keys of this shard; keys without an intent of this transaction are
	// skipped, so resolving twice is harmless. A committed put takes the
	// version its prepare fixed (intents written before versions were
	// fixed at prepare take one from the resolve's entry). More resolves
	// further transactions in the same step (the result's Ops are
	// TxnID's only).
	PhaseResolve PhaseKind = 4
	// PhaseHeartbeat moves a pending record's deadline to Deadline (never
	// earlier).
	PhaseHeartbeat PhaseKind = 5
	// PhaseForget deletes a decided record once every participant has
	// resolved its intents: TxnID's, and those of the transaction IDs in
	// Keys (a coordinator forgets many at once). The result's Status is
	// TxnID's.
	PhaseForget PhaseKind = 6
	// PhaseCommit is the record shard's whole part in one step, once every
	// other participant prepared: it checks what Prepare checks (Reads,
	// Scans, no other transaction's locks on the keys) and, if all holds,
	// writes Writes at once and records the transaction committed (with
	// Participants); if not, it records it aborted and reports why, as
	// Prepare would. On a record already there it changes nothing and
	// reports its status. The result's Ops carry the writes' versions, by
	// position in Writes.
	PhaseCommit PhaseKind = 7
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
	case PhaseCommit:
		return "commit"
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
	// Deadline (Begin, Heartbeat; Prepare on the record's shard) and Now
	// (Decide; Prepare: kept in the intents to tell their age): unix
	// milliseconds.
	Deadline uint64
	Now      uint64
	Commit   bool // Decide, Resolve
	// Participants (Begin, record shard's Prepare): the shards holding the
	// transaction's keys.
	Participants []ShardID
	// Reads (Prepare): CompareVersion conditions, one per key read.
	Reads []Compare
	// Writes (Prepare): puts and deletes.
	Writes []Op
	// Keys (Resolve, Decide): the keys whose intents to resolve. A Resolve
	// also releases every range lock the transaction holds on the shard.
	// Keys (Forget): more transaction IDs whose records to delete.
	Keys [][]byte
	// Scans (Prepare): ranges the transaction scanned, each with what this
	// shard held in it. Prepare checks each range still holds exactly
	// that and locks it against writers until the transaction resolves.
	Scans []ScanRead
	// More (Resolve): further transactions resolved in the same step,
	// after TxnID's, each as its own Resolve would (a coordinator batches
	// the resolves that follow its answers).
	More []Resolution
}

// moreKeys counts the keys of More.
func (p *Phase) moreKeys() int {
	n := 0
	for _, m := range p.More {
		n += len(m.Keys)
	}
	return n
}

// Resolution is one transaction's part of a batched Resolve.
type Resolution struct {
	TxnID  string
	Commit bool
	Keys   [][]byte
}

// ScanRead is a range a transaction scanned: [Start, End), End empty for
// no upper bound, and every key of the shard in it with the version read,
// in key order.
type ScanRead struct {
	Start, End []byte
	Items      []KeyVersion
}

// KeyVersion is a key and a version of it.
type KeyVersion struct {
	Key     []byte
	Version uint64
}

func (p *Phase) scanItems() int {
	n := 0
	for _, sc := range p.Scans {
		n += 1 + len(sc.Items)
	}
	return n
}

// inRange reports whether key lies in [start, end) (end empty: no bound).
func inRange(key, start, end []byte) bool {
	return bytes.Compare(key, start) >= 0 && (len(end) == 0 || bytes.Compare(key, end) < 0)
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
	Since       uint64 // when the intent was written (proposer's unix ms; 0: not known)
	Committed   Item
	Found       bool
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("fsm: key %q locked by transaction %s (record on %v)", e.Key, e.TxnID, e.RecordShard)
}

func (e *LockedError) Unwrap() error { return ErrLocked }

// intent ops: what resolving a committed intent does to its key.
const (
	intentPut    byte = 1 // written before versions were fixed at prepare: the resolve's entry gives the version
	intentDelete byte = 2
	intentRead   byte = 3 // a lock only
	intentPutAt  byte = 4 // a put whose version the prepare fixed (intent.version)
)

type intent struct {
	txnID       string
	recordShard ShardID
	since       uint64 // unix ms stamped by the proposer of the prepare
	op          byte
	version     uint64 // intentPutAt: the version the put takes when it commits
	value       []byte
}

func (in intent) encode() []byte {
	b := appendBytes(nil, []byte(in.txnID))
	b = binary.AppendUvarint(b, uint64(in.recordShard))
	b = binary.AppendUvarint(b, in.since)
	b = append(b, in.op)
	if in.op == intentPutAt {
		b = binary.AppendUvarint(b, in.version)
	}
	return append(b, in.value...)
}

func decodeIntent(b []byte) (intent, error) {
	d := decoder{b: b}
	in := intent{txnID: string(d.bytes()), recordShard: ShardID(d.uvarint()), since: d.uvarint(), op: d.byte()}
	if in.op == intentPutAt {
		in.version = d.uvarint()
	}
	if d.err != nil || in.op < intentPut || in.op > intentPutAt {
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
	if _, ok := a.f.locked[string(key)]; !ok {
		return intent{}, false
	}
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
// an intent on one of keys, or a range lock over one of writes (the keys
// among them to be written); self is "" for a command outside any
// transaction.
func (a *applier) conflict(self string, keys, writes [][]byte) (Result, bool) {
	if a.f.intents.Load() == 0 {
		return Result{}, false
	}
	for _, k := range keys {
		if in, ok := a.intentOf(k); ok && in.txnID != self {
			return Result{Code: Conflict, Key: k, Holder: in.txnID, HolderShard: in.recordShard, HolderSince: in.since}, true
		}
	}
	var res Result
	found := false
	if a.f.rangeLocks.Load() == 0 {
		return res, false
	}
	a.eachRangeLock(func(rl rangeLock) bool {
		if rl.txnID == self {
			return true
		}
		for _, k := range writes {
			if inRange(k, rl.start, rl.end) {
				res, found = Result{Code: Conflict, Key: k, Holder: rl.txnID, HolderShard: rl.recordShard, HolderSince: rl.since}, true
				return false
			}
		}
		return true
	})
	return res, found
}

// scanConflict returns a Conflict result if another transaction than self
// holds a write intent in one of the ranges: its commit would change what
// the scan read.
func (a *applier) scanConflict(self string, scans []ScanRead) (Result, bool) {
	if a.f.intents.Load() == 0 {
		return Result{}, false
	}
	base := a.ks.key(spaceIntent)
	for _, sc := range scans {
		it := a.txn.NewIterator(badger.IteratorOptions{Prefix: base})
		for it.Seek(a.ks.intent(sc.Start)); it.Valid(); it.Next() {
			key := it.Item().Key()[len(base):]
			if !inRange(key, sc.Start, sc.End) {
				break
			}
			var in intent
			a.must(it.Item().Value(func(b []byte) error {
				var err error
				in, err = decodeIntent(b)
				return err
			}))
			if in.txnID != self && in.op != intentRead {
				it.Close()
				return Result{Code: Conflict, Key: bytes.Clone(key), Holder: in.txnID, HolderShard: in.recordShard, HolderSince: in.since}, true
			}
		}
		it.Close()
	}
	return Result{}, false
}

// scanHolds reports whether the shard holds exactly sc.Items in sc's range.
func (a *applier) scanHolds(sc ScanRead) bool {
	base := a.ks.dataPrefix()
	it := a.txn.NewIterator(badger.IteratorOptions{Prefix: base})
	defer it.Close()
	i := 0
	for it.Seek(a.ks.data(sc.Start)); it.Valid(); it.Next() {
		key := it.Item().Key()[len(base):]
		if !inRange(key, sc.Start, sc.End) {
			break
		}
		if i == len(sc.Items) || !bytes.Equal(key, sc.Items[i].Key) {
			return false
		}
		var v uint64
		a.must(it.Item().Value(func(b []byte) error {
			if len(b) < 8 {
				return fmt.Errorf("record %q of %d bytes", key, len(b))
			}
			v = binary.BigEndian.Uint64(b)
			return nil
		}))
		if v != sc.Items[i].Version {
			return false
		}
		i++
	}
	return i == len(sc.Items)
}

// rangeLock is a scanned range a prepared transaction holds against
// writers.
type rangeLock struct {
	txnID       string
	recordShard ShardID
	since       uint64
	start, end  []byte
}

func (rl rangeLock) encode() []byte {
	b := appendBytes(nil, []byte(rl.txnID))
	b = binary.AppendUvarint(b, uint64(rl.recordShard))
	b = binary.AppendUvarint(b, rl.since)
	b = appendBytes(b, rl.start)
	return appendBytes(b, rl.end)
}

func decodeRangeLock(b []byte) (rangeLock, error) {
	d := decoder{b: b}
	rl := rangeLock{txnID: string(d.bytes()), recordShard: ShardID(d.uvarint()), since: d.uvarint()}
	rl.start, rl.end = bytes.Clone(d.bytes()), bytes.Clone(d.bytes())
	if d.err != nil || len(d.b) != 0 {
		return rangeLock{}, fmt.Errorf("fsm: bad range lock")
	}
	return rl, nil
}

// eachRangeLock calls fn for every range lock of the shard until it
// returns false.
func (a *applier) eachRangeLock(fn func(rangeLock) bool) {
	it := a.txn.NewIterator(badger.IteratorOptions{Prefix: a.ks.key(spaceRangeLock)})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		var rl rangeLock
		a.must(it.Item().Value(func(b []byte) error {
			var err error
			rl, err = decodeRangeLock(b)
			return err
		}))
		if !fn(rl) {
			return
		}
	}
}

// applyPhase applies one step of a cross-shard transaction.
func (a *applier) applyPhase(index, base uint64, cmd Command) (res Result) {
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
		defer func() {
			// Keys: the decision also resolves this shard's intents.
			if len(p.Keys) > 0 && r.status != TxnPending {
				q := *p
				q.Commit = r.status == TxnCommitted
				res = a.resolve(index, base, &q)
				res.Status = r.status
			}
		}()
		switch {
		case !ok && p.Now > 0 && p.Deadline > 0 && p.Now < p.Deadline:
			// Perhaps not begun yet: its Commit may still come.
			r.status = TxnPending // and no intents resolved (see above)
			return Result{Status: TxnPending}
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
		for _, id := range p.Keys {
			a.forget(string(id))
		}
		return Result{Status: a.forget(p.TxnID)}
	case PhasePrepare:
		return a.prepare(index, base, p)
	case PhaseCommit:
		return a.commitInOne(index, base, p)
	case PhaseResolve:
		res := a.resolve(index, base, p)
		base += uint64(len(p.Keys))
		for _, m := range p.More {
			a.resolve(index, base, &Phase{Kind: PhaseResolve, TxnID: m.TxnID, Commit: m.Commit, Keys: m.Keys})
			base += uint64(len(m.Keys))
		}
		return res
	}
	// The decoder admits no other kind.
	panic(fmt.Sprintf("fsm: phase kind %d", p.Kind))
}

// prepare checks and locks. A put's version is fixed here, from this
// entry's index and the write's position, so the coordinator can answer
// once the record commits, before this shard resolves; the key stays
// locked until then, so no other write to it comes between.
func (a *applier) prepare(index, base uint64, p *Phase) Result {
	// With a deadline this is the record's shard: the prepare begins the
	// record too, unless it is decided already.
	if p.Deadline > 0 {
		if r, ok := a.record(p.TxnID); ok && r.status != TxnPending {
			return Result{Status: r.status}
		}
	}
	if res, failed := a.check(p); failed {
		return res
	}
	for i, sc := range p.Scans {
		key := a.ks.rangeLock(p.TxnID, i)
		if _, err := a.txn.Get(key); errors.Is(err, badger.ErrKeyNotFound) {
			a.f.intents.Add(1)
			a.f.rangeLocks.Add(1)
		} else {
			a.must(err)
		}
		rl := rangeLock{txnID: p.TxnID, recordShard: p.RecordShard, since: p.Now, start: sc.Start, end: sc.End}
		a.must(a.txn.Set(key, rl.encode()))
	}
	ops := make([]OpResult, len(p.Writes))
	for i, w := range p.Writes {
		in := intent{txnID: p.TxnID, recordShard: p.RecordShard, since: p.Now, op: intentPutAt,
			version: index<<20 | (base + uint64(i) + 1), value: w.Value}
		cur, held := a.intentOf(w.Key)
		if w.Type == OpDelete {
			in.op, in.version, in.value = intentDelete, 0, nil
		} else if held && cur.txnID == p.TxnID && cur.op == intentPutAt {
			in.version = cur.version // prepared before: the version already answered
		}
		ops[i].Version = in.version
		a.lock(w.Key, in, held)
	}
	for _, r := range p.Reads {
		if _, held := a.intentOf(r.Key); !held {
			a.lock(r.Key, intent{txnID: p.TxnID, recordShard: p.RecordShard, since: p.Now, op: intentRead}, false)
		}
	}
	if p.Deadline > 0 {
		if _, ok := a.record(p.TxnID); !ok {
			a.putRecord(p.TxnID, txnRecord{status: TxnPending, deadline: p.Deadline, participants: p.Participants})
		}
		return Result{Status: TxnPending, Ops: ops}
	}
	return Result{Ops: ops}
}

// forget deletes transaction id's record if it is decided and returns its
// status (aborted when there is none).
func (a *applier) forget(id string) TxnStatus {
	r, ok := a.record(id)
	if !ok {
		return TxnAborted
	}
	if r.status != TxnPending {
		a.must(a.txn.Delete(a.ks.txnRecord(id)))
	}
	return r.status
}

// check is what Prepare and Commit verify before they change anything: no
// other transaction holds the keys (or a write intent in a scanned range),
// and every read and scanned range still holds.
func (a *applier) check(p *Phase) (Result, bool) {
	keys := make([][]byte, 0, len(p.Reads)+len(p.Writes))
	for _, r := range p.Reads {
		keys = append(keys, r.Key)
	}
	for _, w := range p.Writes {
		keys = append(keys, w.Key)
	}
	if res, ok := a.conflict(p.TxnID, keys, keys[len(p.Reads):]); ok {
		return res, true
	}
	if res, ok := a.scanConflict(p.TxnID, p.Scans); ok {
		return res, true
	}
	for i, r := range p.Reads {
		if cur := a.version(r.Key); cur != r.Version && !bugSkipReadValidation {
			return Result{Code: VersionMismatch, FailedOp: i, Key: r.Key, Current: cur}, true
		}
	}
	for i, sc := range p.Scans {
		if !a.scanHolds(sc) && !bugSkipReadValidation {
			return Result{Code: VersionMismatch, FailedOp: len(p.Reads) + i, Key: sc.Start}, true
		}
	}
	return Result{}, false
}

// commitInOne applies a PhaseCommit: the record shard's checks, writes and
// decision in one step.
func (a *applier) commitInOne(index, base uint64, p *Phase) Result {
	if r, ok := a.record(p.TxnID); ok {
		return Result{Status: r.status}
	}
	if res, failed := a.check(p); failed {
		a.putRecord(p.TxnID, txnRecord{status: TxnAborted})
		res.Status = TxnAborted
		return res
	}
	res := Result{Ops: make([]OpResult, len(p.Writes)), Status: TxnCommitted}
	for i, w := range p.Writes {
		switch w.Type {
		case OpPut:
			v := index<<20 | (base + uint64(i) + 1)
			a.putData(w.Key, v, w.Value)
			res.Ops[i].Version = v
		case OpDelete:
			if a.version(w.Key) != 0 {
				a.must(a.txn.Delete(a.ks.data(w.Key)))
				res.Ops[i].Existed = true
			}
		}
	}
	a.putRecord(p.TxnID, txnRecord{status: TxnCommitted, participants: p.Participants})
	return res
}

// lock writes an intent on key, counting it if the key held none (held:
// what the caller's intentOf found).
func (a *applier) lock(key []byte, in intent, held bool) {
	if !held {
		a.f.intents.Add(1)
		a.f.locked[string(key)] = struct{}{}
	}
	a.must(a.txn.Set(a.ks.intent(key), in.encode()))
}

func (a *applier) resolve(index, base uint64, p *Phase) Result {
	res := Result{Ops: make([]OpResult, len(p.Keys))}
	if a.f.rangeLocks.Load() > 0 {
		var locks [][]byte
		it := a.txn.NewIterator(badger.IteratorOptions{Prefix: a.ks.rangeLocks(p.TxnID)})
		for it.Rewind(); it.Valid(); it.Next() {
			locks = append(locks, it.Item().KeyCopy(nil))
		}
		it.Close()
		for _, k := range locks {
			a.must(a.txn.Delete(k))
			a.released++
			a.releasedLocks++
		}
	}
	for i, k := range p.Keys {
		in, ok := a.intentOf(k)
		if !ok || in.txnID != p.TxnID {
			continue
		}
		a.must(a.txn.Delete(a.ks.intent(k)))
		delete(a.f.locked, string(k))
		a.released++
		if !p.Commit {
			continue
		}
		switch in.op {
		case intentPut, intentPutAt:
			v := in.version
			if in.op == intentPut {
				v = index<<20 | (base + uint64(i) + 1)
			}
			a.putData(k, v, in.value)
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

// lockedError reports a write intent on key in txn's view (a readView's,
// which says whether there can be one).
func (f *FSM) lockedError(txn *badger.Txn, ks keyspace, key []byte) error {
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
	return &LockedError{Key: bytes.Clone(key), TxnID: in.txnID, RecordShard: in.recordShard, Since: in.since}
}

// countIntents counts the intents and range locks of generation gen (n
// counts both), and the range locks alone, and returns the set of keys
// holding an intent (FSM.locked).
func (f *FSM) countIntents(gen uint32) (n, locks int64, locked map[string]struct{}, err error) {
	locked = map[string]struct{}{}
	err = f.db.View(func(txn *badger.Txn) error {
		for _, space := range []byte{spaceIntent, spaceRangeLock} {
			prefix := newKeyspace(f.id, gen).key(space)
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			for it.Rewind(); it.Valid(); it.Next() {
				n++
				if space == spaceRangeLock {
					locks++
				} else {
					locked[string(it.Item().Key()[len(prefix):])] = struct{}{}
				}
			}
			it.Close()
		}
		return nil
	})
	return n, locks, locked, err
}

// IntentInfo describes one intent or range lock (Intents).
type IntentInfo struct {
	Key         []byte
	TxnID       string
	RecordShard ShardID
	Write       bool   // a put or delete; false for a read lock
	Since       uint64 // unix ms when its transaction prepared (proposer's clock)
	// Range: a scanned range [Key, End) locked against writers (End
	// empty: no upper bound).
	Range bool
	End   []byte
}

// Intents returns up to limit of this replica's range locks and intents
// (range locks first, each kind in key order), for resolvers and
// operators.
func (f *FSM) Intents(limit int) ([]IntentInfo, error) {
	var out []IntentInfo
	if f.intents.Load() == 0 {
		return nil, nil
	}
	err := f.view(func(txn *badger.Txn, ks keyspace) error {
		locks := txn.NewIterator(badger.IteratorOptions{Prefix: ks.key(spaceRangeLock)})
		for locks.Rewind(); locks.Valid() && len(out) < limit; locks.Next() {
			var rl rangeLock
			if err := locks.Item().Value(func(b []byte) error {
				var err error
				rl, err = decodeRangeLock(b)
				return err
			}); err != nil {
				locks.Close()
				return err
			}
			out = append(out, IntentInfo{Key: rl.start, End: rl.end, Range: true, TxnID: rl.txnID, RecordShard: rl.recordShard, Since: rl.since})
		}
		locks.Close()
		prefix := ks.key(spaceIntent)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid() && len(out) < limit; it.Next() {
			key := it.Item().Key()[len(prefix):]
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
