package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Domain errors. They travel as values inside Result, never as raft errors.
var (
	ErrVersionMismatch = errors.New("fsm: version mismatch")
	ErrNotFound        = errors.New("fsm: not found")
)

// Code is the outcome of one Command.
type Code uint8

const (
	// OK: every write of the command applied.
	OK Code = 0
	// VersionMismatch: a condition failed and nothing of the command applied.
	VersionMismatch Code = 1
	// Conflict: a key of the command is held by a cross-shard transaction
	// (another one, for a phase of a transaction); nothing applied.
	Conflict Code = 2
)

// OpResult is the outcome of one write of an applied command.
type OpResult struct {
	// Version is the key's new version after a put; 0 after a delete.
	Version uint64
	// Existed, for a delete, reports whether the key was present; a delete of
	// an absent key writes nothing. Puts leave it false: an unconditional
	// put does not look at the key's current state.
	Existed bool
	// Found and Value: for a get, whether the key is present and its value
	// (Version is then its version). A duplicate's gets are not repeated:
	// Found is false and Value nil (Result.Duplicate says so).
	Found bool
	Value []byte
}

// Result is the outcome of one Command.
type Result struct {
	Code Code
	// On VersionMismatch: the position of the failing op, its key and the key's
	// version at that time (0 if absent).
	FailedOp int
	Key      []byte
	Current  uint64
	// On OK: one entry per op (of the branch that ran, for a transaction).
	Ops []OpResult
	// Succeeded: for a transaction, whether its comparisons held (Ops ran)
	// or not (Else ran).
	Succeeded bool
	// On Conflict: the transaction holding Key, the shard of its record,
	// and when its lock was taken (the proposer's unix milliseconds; 0:
	// not known). Not kept in dedupe records (conflicts are not).
	Holder      string
	HolderShard ShardID
	HolderSince uint64
	// Status: for a Begin, Decide, Heartbeat or Forget phase, the
	// transaction record's status afterwards.
	Status TxnStatus
	// Duplicate is set when the command's RequestID had applied before; the
	// result is that first outcome.
	Duplicate bool
}

// ErrConflict: a key is held by another (cross-shard) transaction.
var ErrConflict = errors.New("fsm: conflict with a transaction")

// ConflictError is the error form of a Conflict result; it unwraps to
// ErrConflict.
type ConflictError struct {
	Key         []byte
	Holder      string
	HolderShard ShardID
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("fsm: key %q is held by transaction %s (record on %v)", e.Key, e.Holder, e.HolderShard)
}

func (e *ConflictError) Unwrap() error { return ErrConflict }

// ConditionError is the error form of a VersionMismatch result.
type ConditionError struct {
	Op      int
	Key     []byte
	Current uint64
}

func (e *ConditionError) Error() string {
	return fmt.Sprintf("fsm: version mismatch on op %d (key %q is at version %d)", e.Op, e.Key, e.Current)
}

func (e *ConditionError) Unwrap() error { return ErrVersionMismatch }

// Err returns nil for OK, a *ConditionError or a *ConflictError.
func (r Result) Err() error {
	switch r.Code {
	case OK:
		return nil
	case Conflict:
		return &ConflictError{Key: r.Key, Holder: r.Holder, HolderShard: r.HolderShard}
	}
	return &ConditionError{Op: r.FailedOp, Key: r.Key, Current: r.Current}
}

// Markers of OK results in dedupe records that carry more than the ops:
// a transaction's branch, a phase's record status. Never a Result.Code.
const (
	txnOK   Code = 3
	phaseOK Code = 4
)

// encode is how cmd's result is kept in a dedupe record: get values are
// left out (they could be large, and a retry returns the first outcome of
// the writes only).
func (r Result) encode(cmd Command) []byte {
	b := []byte{byte(r.Code)}
	switch r.Code {
	case VersionMismatch:
		b = binary.AppendUvarint(b, uint64(r.FailedOp))
		b = appendBytes(b, r.Key)
		return binary.AppendUvarint(b, r.Current)
	case Conflict:
		b = appendBytes(b, r.Key)
		b = appendBytes(b, []byte(r.Holder))
		return binary.AppendUvarint(b, uint64(r.HolderShard))
	}
	switch {
	case cmd.Txn:
		b[0] = byte(txnOK)
		b = appendBool(b, r.Succeeded)
	case cmd.Phase != nil:
		b[0] = byte(phaseOK)
		b = append(b, byte(r.Status))
	}
	b = binary.AppendUvarint(b, uint64(len(r.Ops)))
	for _, o := range r.Ops {
		v := o.Version
		if o.Found { // a get: not kept
			v = 0
		}
		b = binary.AppendUvarint(b, v)
		b = appendBool(b, o.Existed)
	}
	return b
}

func decodeResult(b []byte) (Result, error) {
	d := decoder{b: b}
	r := Result{Code: Code(d.byte())}
	switch r.Code {
	case OK, txnOK, phaseOK:
		switch r.Code {
		case txnOK:
			r.Succeeded = d.byte() == 1
		case phaseOK:
			r.Status = TxnStatus(d.byte())
		}
		r.Code = OK
		n := d.count(2)
		r.Ops = make([]OpResult, n)
		for i := range r.Ops {
			r.Ops[i].Version = d.uvarint()
			r.Ops[i].Existed = d.byte() == 1
		}
	case VersionMismatch:
		r.FailedOp = int(d.uvarint())
		r.Key = append([]byte(nil), d.bytes()...)
		r.Current = d.uvarint()
	case Conflict:
		r.Key = append([]byte(nil), d.bytes()...)
		r.Holder = string(d.bytes())
		r.HolderShard = ShardID(d.uvarint())
	default:
		d.fail("unknown result code")
	}
	return r, d.err
}
