// Package history records what a Jepsen-style test did: every client
// operation as an invocation followed by exactly one completion (ok, fail or
// info), and every nemesis action, each with a monotonic time. A run writes
// its history as JSON lines, one operation per line, in the order the events
// happened; checkers read it back.
//
// The completion types carry the weight of the whole harness:
//
//   - ok: the operation took effect (reads: this is what was read);
//   - fail: the operation certainly did not take effect (the server said so
//     before anything was proposed, or the condition of a compare-and-set did
//     not hold);
//   - info: the outcome is unknown — the operation may have taken effect at
//     any time after its invocation, or never. Checkers must never count an
//     info as a failure.
package history

import (
	"bufio"
	"encoding/json"
	"fmt"
	"github.com/cairndb/cairn/jepsen/elle"
	"io"
	"os"
	"sync"
	"time"
)

// Type is an event's kind.
type Type string

const (
	Invoke Type = "invoke"
	OK     Type = "ok"
	Fail   Type = "fail"
	Info   Type = "info"
)

// NemesisProcess is the process of nemesis events.
const NemesisProcess = -1

// Op is one event of a history. Which fields are set depends on the
// workload; unset fields are omitted from the JSON.
type Op struct {
	Index   int    `json:"index"`
	Time    int64  `json:"time"` // nanoseconds since the history started
	Process int    `json:"process"`
	Type    Type   `json:"type"`
	F       string `json:"f"`

	// Register workload: Key; Value is the value written (put, cas) or
	// read (get; nil = absent); From is the value a cas expects.
	Key   string `json:"key,omitempty"`
	Value *int   `json:"value,omitempty"`
	From  *int   `json:"from,omitempty"`

	// Set workload: Element added, or Elements read. Unique workload:
	// Element is the inserted document's number and Value its value; a
	// final read gives Elements and, for each, its value in Values.
	Element  *int  `json:"element,omitempty"`
	Elements []int `json:"elements,omitempty"`
	Values   []int `json:"values,omitempty"`

	// Append workload: the transaction's micro-operations (reads filled in
	// on completion). Bank workload: From/To accounts and Amount of a
	// transfer, or the Balances a read saw.
	Txn      []elle.Mop `json:"txn,omitempty"`
	Accounts []int      `json:"accounts,omitempty"`
	Amount   int        `json:"amount,omitempty"`
	Balances []int      `json:"balances,omitempty"`

	Node  string `json:"node,omitempty"`  // the node the request went to
	Error string `json:"error,omitempty"` // why a fail or info ended as it did
	Desc  string `json:"desc,omitempty"`  // nemesis: what was done
}

// Int returns a pointer to v, for Op.Value, From and Element.
func Int(v int) *int { return &v }

// Recorder appends events to a history, in memory and, when given a
// writer, as JSON lines. It is safe for concurrent use.
type Recorder struct {
	mu    sync.Mutex
	start time.Time
	ops   []Op
	enc   *json.Encoder
	bw    *bufio.Writer
	err   error
}

// NewRecorder starts a history at the current time; w may be nil.
func NewRecorder(w io.Writer) *Recorder {
	r := &Recorder{start: time.Now()}
	if w != nil {
		r.bw = bufio.NewWriterSize(w, 64<<10)
		r.enc = json.NewEncoder(r.bw)
	}
	return r
}

// Since returns the history time of t.
func (r *Recorder) Since(t time.Time) int64 { return t.Sub(r.start).Nanoseconds() }

// Now returns the current history time.
func (r *Recorder) Now() int64 { return r.Since(time.Now()) }

// Add stamps op with the next index and the current time and records it.
func (r *Recorder) Add(op Op) Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	op.Index = len(r.ops)
	op.Time = time.Since(r.start).Nanoseconds()
	r.ops = append(r.ops, op)
	if r.enc != nil && r.err == nil {
		r.err = r.enc.Encode(op)
	}
	return op
}

// Invoke records the invocation of op by process p.
func (r *Recorder) Invoke(p int, op Op) Op {
	op.Process, op.Type = p, Invoke
	return r.Add(op)
}

// Complete records the completion of inv with type t; fill may set the
// completion's results (read values, errors).
func (r *Recorder) Complete(inv Op, t Type, fill func(*Op)) Op {
	op := Op{Process: inv.Process, Type: t, F: inv.F, Key: inv.Key, Value: inv.Value, From: inv.From, Element: inv.Element, Node: inv.Node}
	if fill != nil {
		fill(&op)
	}
	return r.Add(op)
}

// Nemesis records a nemesis event.
func (r *Recorder) Nemesis(f, desc string) Op {
	return r.Add(Op{Process: NemesisProcess, Type: Info, F: f, Desc: desc})
}

// Ops returns a copy of the events recorded so far.
func (r *Recorder) Ops() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Op(nil), r.ops...)
}

// Flush writes buffered events out and reports the first write error.
func (r *Recorder) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bw != nil && r.err == nil {
		r.err = r.bw.Flush()
	}
	return r.err
}

// Read decodes a history written as JSON lines.
func Read(rd io.Reader) ([]Op, error) {
	var ops []Op
	dec := json.NewDecoder(rd)
	for {
		var op Op
		if err := dec.Decode(&op); err == io.EOF {
			return ops, nil
		} else if err != nil {
			return ops, fmt.Errorf("history: event %d: %w", len(ops), err)
		}
		ops = append(ops, op)
	}
}

// ReadFile reads a history file.
func ReadFile(path string) ([]Op, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Read(bufio.NewReader(f))
}

// Pair is a client operation: its invocation and its completion. A
// history cut short may leave Completion nil; such operations count as
// info.
type Pair struct {
	Invoke     Op
	Completion *Op
}

// Outcome is the completion's type, Info when there is none.
func (p Pair) Outcome() Type {
	if p.Completion == nil {
		return Info
	}
	return p.Completion.Type
}

// End is the completion's time, or -1 when the operation never completed.
func (p Pair) End() int64 {
	if p.Completion == nil || p.Completion.Type == Info {
		return -1
	}
	return p.Completion.Time
}

// Pairs matches each client invocation with the next completion of the
// same process. It reports an error when a process invokes twice without
// completing, or completes without invoking: the recorder never writes
// such histories, so they mean corruption.
func Pairs(ops []Op) ([]Pair, error) {
	var pairs []Pair
	open := map[int]int{} // process -> index into pairs
	for _, op := range ops {
		if op.Process == NemesisProcess {
			continue
		}
		switch op.Type {
		case Invoke:
			if _, busy := open[op.Process]; busy {
				return nil, fmt.Errorf("history: process %d invoked event %d before completing its previous operation", op.Process, op.Index)
			}
			open[op.Process] = len(pairs)
			pairs = append(pairs, Pair{Invoke: op})
		default:
			i, ok := open[op.Process]
			if !ok {
				return nil, fmt.Errorf("history: event %d completes nothing process %d invoked", op.Index, op.Process)
			}
			c := op
			pairs[i].Completion = &c
			delete(open, op.Process)
		}
	}
	return pairs, nil
}

// Window is a span of time during which a fault was active.
type Window struct {
	F          string `json:"f"`
	Desc       string `json:"desc"`
	Start, End int64  // End is -1 when the history ended first
}

// Windows pairs nemesis start-X and stop-X events into fault windows.
func Windows(ops []Op) []Window {
	var ws []Window
	open := map[string]int{}
	for _, op := range ops {
		if op.Process != NemesisProcess {
			continue
		}
		switch {
		case len(op.F) > 6 && op.F[:6] == "start-":
			open[op.F[6:]] = len(ws)
			ws = append(ws, Window{F: op.F[6:], Desc: op.Desc, Start: op.Time, End: -1})
		case len(op.F) > 5 && op.F[:5] == "stop-":
			if i, ok := open[op.F[5:]]; ok {
				ws[i].End = op.Time
				delete(open, op.F[5:])
			}
		}
	}
	return ws
}
