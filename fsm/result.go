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
	// Duplicate is set when the command's RequestID had applied before; the
	// result is that first outcome.
	Duplicate bool
}

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

// Err returns nil for OK, or a *ConditionError.
func (r Result) Err() error {
	if r.Code == OK {
		return nil
	}
	return &ConditionError{Op: r.FailedOp, Key: r.Key, Current: r.Current}
}

// txnOK marks the encoding of an OK result of a transaction in a dedupe
// record (it adds the branch taken); it is never a Result.Code.
const txnOK Code = 2

// encode is how a result is kept in a dedupe record: get values are left
// out (they could be large, and a retry returns the first outcome of the
// writes only).
func (r Result) encode(txn bool) []byte {
	b := []byte{byte(r.Code)}
	if r.Code != OK {
		b = binary.AppendUvarint(b, uint64(r.FailedOp))
		b = appendBytes(b, r.Key)
		return binary.AppendUvarint(b, r.Current)
	}
	if txn {
		b[0] = byte(txnOK)
		if r.Succeeded {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(r.Ops)))
	for _, o := range r.Ops {
		v := o.Version
		if o.Found { // a get: not kept
			v = 0
		}
		b = binary.AppendUvarint(b, v)
		if o.Existed {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	}
	return b
}

func decodeResult(b []byte) (Result, error) {
	d := decoder{b: b}
	r := Result{Code: Code(d.byte())}
	switch r.Code {
	case OK, txnOK:
		if r.Code == txnOK {
			r.Code, r.Succeeded = OK, d.byte() == 1
		}
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
	default:
		d.fail("unknown result code")
	}
	return r, d.err
}
