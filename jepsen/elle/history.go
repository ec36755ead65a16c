package elle

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrMalformed is wrapped by every error Check returns: the history breaks
// one of the rules in the package documentation, so no verdict can be given.
var ErrMalformed = errors.New("elle: malformed history")

// OpType says whether an event starts an operation or how it ended.
type OpType string

// The event types of a history.
const (
	// Invoke starts an operation; its Txn holds the appends and unread reads.
	Invoke OpType = "invoke"
	// OK ends a committed operation; its Txn holds every read's result.
	OK OpType = "ok"
	// Fail ends an operation that certainly had no effect.
	Fail OpType = "fail"
	// Info ends an operation whose outcome is unknown: it may or may not
	// have taken effect, at any moment after its invocation.
	Info OpType = "info"
)

// Func names a micro-operation.
type Func string

// The micro-operations of the list-append workload.
const (
	// FuncAppend appends Value to the list stored at Key.
	FuncAppend Func = "append"
	// FuncRead reads the whole list stored at Key.
	FuncRead Func = "r"
)

// Mop is one micro-operation of a transaction.
//
// In JSON a Mop is written the way Jepsen writes it: ["append","x",3] or
// ["r","x",[1,2]] (["r","x",null] for a read whose result is not known).
type Mop struct {
	F   Func
	Key string
	// Value is the element an append adds. Values appended to one key are
	// unique across the whole history.
	Value int
	// Read is the list a read returned, oldest element first. In an OK
	// completion nil means the empty list; elsewhere reads are not looked at.
	Read []int
}

// Append returns the micro-operation appending value to key.
func Append(key string, value int) Mop { return Mop{F: FuncAppend, Key: key, Value: value} }

// Read returns the micro-operation reading key; values is what the read
// returned (nil in an invocation, where it is not known yet).
func Read(key string, values []int) Mop { return Mop{F: FuncRead, Key: key, Read: values} }

// String renders the micro-operation as "append x 3" or "r x [1 2]".
func (m Mop) String() string {
	if m.F == FuncAppend {
		return fmt.Sprintf("append %s %d", m.Key, m.Value)
	}
	return fmt.Sprintf("%s %s %s", m.F, m.Key, formatList(m.Read))
}

// MarshalJSON writes the micro-operation as a three-element array.
func (m Mop) MarshalJSON() ([]byte, error) {
	if m.F == FuncAppend {
		return json.Marshal([]any{m.F, m.Key, m.Value})
	}
	return json.Marshal([]any{m.F, m.Key, m.Read})
}

// UnmarshalJSON reads the three-element array MarshalJSON writes.
func (m *Mop) UnmarshalJSON(data []byte) error {
	var parts []json.RawMessage
	if err := json.Unmarshal(data, &parts); err != nil {
		return fmt.Errorf("elle: decode mop: %w", err)
	}
	if len(parts) != 3 {
		return fmt.Errorf("elle: decode mop: want 3 elements, got %d", len(parts))
	}
	var out Mop
	if err := json.Unmarshal(parts[0], &out.F); err != nil {
		return fmt.Errorf("elle: decode mop function: %w", err)
	}
	if err := json.Unmarshal(parts[1], &out.Key); err != nil {
		return fmt.Errorf("elle: decode mop key: %w", err)
	}
	var err error
	switch out.F {
	case FuncAppend:
		err = json.Unmarshal(parts[2], &out.Value)
	case FuncRead:
		err = json.Unmarshal(parts[2], &out.Read)
	default:
		return fmt.Errorf("elle: decode mop: unknown function %q", out.F)
	}
	if err != nil {
		return fmt.Errorf("elle: decode mop value: %w", err)
	}
	*m = out
	return nil
}

// Op is one event of a history: the invocation or the completion of a
// transaction run by Process.
type Op struct {
	// Index identifies the event in reports ("T12" is the transaction whose
	// completion has Index 12). If every event of a history has Index 0,
	// Check uses positions in the history slice instead.
	Index   int    `json:"index"`
	Process int    `json:"process"`
	Type    OpType `json:"type"`
	// Time is a monotonic timestamp in nanoseconds. Check uses the order of
	// the history slice as the real-time order and only verifies that Time
	// never decreases along it.
	Time int64 `json:"time"`
	Txn  []Mop `json:"txn"`
}

// txn is a transaction rebuilt from its invocation and completion.
type txn struct {
	status   OpType // OK, Fail or Info (Info also when it never completed)
	process  int
	invoke   int // position of the invocation in the history
	complete int // position of the completion, -1 if none
	mops     []Mop
	name     string
}

// node reports whether the transaction belongs to the dependency graph:
// committed ones did happen and unknown ones may have.
func (t *txn) node() bool { return t.status != Fail }

// parse pairs invocations with completions and checks the rules every
// history must follow. It returns the transactions in invocation order and,
// for each history position, the transaction that event belongs to.
func parse(history []Op) ([]txn, []int32, error) {
	useIndex := hasIndexes(history)
	var (
		txns     []txn
		eventTxn = make([]int32, len(history))
		pending  = make(map[int]int32)
		lastTime int64
	)
	for pos, op := range history {
		if pos > 0 && op.Time < lastTime {
			return nil, nil, fmt.Errorf("%w: event %d: time %d is before the previous event's %d", ErrMalformed, pos, op.Time, lastTime)
		}
		lastTime = op.Time
		switch op.Type {
		case Invoke:
			if open, busy := pending[op.Process]; busy {
				return nil, nil, fmt.Errorf("%w: event %d: process %d invoked a transaction while event %d was still open", ErrMalformed, pos, op.Process, txns[open].invoke)
			}
			if err := checkMops(op.Txn); err != nil {
				return nil, nil, fmt.Errorf("%w: event %d: %w", ErrMalformed, pos, err)
			}
			pending[op.Process] = int32(len(txns))
			eventTxn[pos] = int32(len(txns))
			txns = append(txns, txn{status: Info, process: op.Process, invoke: pos, complete: -1, mops: op.Txn})
		case OK, Fail, Info:
			id, open := pending[op.Process]
			if !open {
				return nil, nil, fmt.Errorf("%w: event %d: process %d completed a transaction it never invoked", ErrMalformed, pos, op.Process)
			}
			delete(pending, op.Process)
			eventTxn[pos] = id
			t := &txns[id]
			t.status, t.complete = op.Type, pos
			if op.Type == OK {
				if err := sameShape(t.mops, op.Txn); err != nil {
					return nil, nil, fmt.Errorf("%w: event %d: completion does not match invocation %d: %w", ErrMalformed, pos, t.invoke, err)
				}
				t.mops = op.Txn
			}
		default:
			return nil, nil, fmt.Errorf("%w: event %d: unknown type %q", ErrMalformed, pos, op.Type)
		}
	}
	for i := range txns {
		t := &txns[i]
		pos := t.invoke
		if t.complete >= 0 {
			pos = t.complete
		}
		id := pos
		if useIndex {
			id = history[pos].Index
		}
		t.name = "T" + strconv.Itoa(id)
	}
	return txns, eventTxn, nil
}

// hasIndexes reports whether the history numbers its events itself.
func hasIndexes(history []Op) bool {
	for _, op := range history {
		if op.Index != 0 {
			return true
		}
	}
	return false
}

func checkMops(mops []Mop) error {
	for i, m := range mops {
		if m.F != FuncAppend && m.F != FuncRead {
			return fmt.Errorf("mop %d: unknown function %q", i, m.F)
		}
	}
	return nil
}

// sameShape reports why a completion's micro-operations are not those of
// its invocation with the reads filled in.
func sameShape(inv, done []Mop) error {
	if len(inv) != len(done) {
		return fmt.Errorf("%d micro-operations, invocation had %d", len(done), len(inv))
	}
	for i := range inv {
		a, b := inv[i], done[i]
		if a.F != b.F || a.Key != b.Key || (a.F == FuncAppend && a.Value != b.Value) {
			return fmt.Errorf("mop %d is %v, invocation had %v", i, b, a)
		}
	}
	return nil
}

func formatList(l []int) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, v := range l {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.Itoa(v))
	}
	b.WriteByte(']')
	return b.String()
}

// shortList is formatList for explanations: a long list keeps its first
// and last few values and says how many there are.
func shortList(l []int) string {
	const head, tail = 4, 8
	if len(l) <= head+tail+4 {
		return formatList(l)
	}
	h, t := formatList(l[:head]), formatList(l[len(l)-tail:])
	return fmt.Sprintf("%s ... %s (%d values)", h[:len(h)-1], t[1:], len(l))
}
