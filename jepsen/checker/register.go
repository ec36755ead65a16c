package checker

import (
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/cairndb/cairn/jepsen/history"
)

// ErrorVersionMismatch is the Error of a cas that failed because the value
// was not the one it expected.
const ErrorVersionMismatch = "version_mismatch"

// Register workload operations.
const (
	FGet    = "get"
	FPut    = "put"
	FCas    = "cas"
	FDelete = "delete"
)

// NemesisTag is the row under which fault windows are drawn in the
// visualization; the fault's name is appended ("nemesis partition"), so
// overlapping faults of different kinds get rows of their own.
const NemesisTag = "nemesis"

// nemesisColour is the background of fault windows in the visualization.
const nemesisColour = "#f9d7b5"

// RegisterOptions tunes CheckRegister.
type RegisterOptions struct {
	// Timeout bounds the whole check (all keys); zero means no bound. Keys
	// not decided in time are reported as unknown.
	Timeout time.Duration
	// HTMLPath, when set, is where porcupine's visualization is written if
	// the history is not linearizable.
	HTMLPath string
	// AlwaysVisualize writes the visualization to HTMLPath even when the
	// history is linearizable (the check then runs a second time over all
	// keys to gather what the visualization needs).
	AlwaysVisualize bool
}

// RegisterResult is the verdict of CheckRegister.
type RegisterResult struct {
	// Valid is true only when every key was found linearizable.
	Valid bool `json:"valid"`
	// Unknown is true when no key was found to violate linearizability but
	// at least one key could not be decided before the timeout. A definite
	// violation elsewhere takes precedence: Unknown is then false and the
	// undecided keys are still listed in UnknownKeys.
	Unknown bool `json:"unknown"`
	// Keys is the number of keys checked.
	Keys int `json:"keys"`
	// Ops is the number of operations given to the model.
	Ops int `json:"ops"`
	// Indeterminate counts the writes (put, cas, delete) among Ops whose
	// outcome is unknown (info or no completion).
	Indeterminate int `json:"indeterminate"`
	// Dropped counts operations left out of the check: fails that are not a
	// cas mismatch, and gets of unknown outcome.
	Dropped int `json:"dropped"`
	// FailedKeys lists the keys found not linearizable, sorted.
	FailedKeys []string `json:"failed_keys,omitempty"`
	// UnknownKeys lists the keys the checker could not decide in time.
	UnknownKeys []string `json:"unknown_keys,omitempty"`
	// Visualization is the path of the HTML file written, if any.
	Visualization string `json:"visualization,omitempty"`
	// Explanation is a readable account of the verdict.
	Explanation string `json:"explanation"`
}

// String is a summary for the run report.
func (r RegisterResult) String() string {
	var b strings.Builder
	switch {
	case r.Valid:
		b.WriteString("register: linearizable")
	case r.Unknown:
		b.WriteString("register: UNKNOWN (checker timed out)")
	default:
		b.WriteString("register: NOT LINEARIZABLE")
	}
	fmt.Fprintf(&b, " — %d keys, %d operations checked (%d writes of unknown outcome), %d dropped",
		r.Keys, r.Ops, r.Indeterminate, r.Dropped)
	if len(r.FailedKeys) > 0 {
		fmt.Fprintf(&b, "; failed keys: %s", quoteList(r.FailedKeys))
	}
	if len(r.UnknownKeys) > 0 {
		fmt.Fprintf(&b, "; undecided keys: %s", quoteList(r.UnknownKeys))
	}
	b.WriteString("\n")
	if r.Explanation != "" {
		b.WriteString(r.Explanation)
		if !strings.HasSuffix(r.Explanation, "\n") {
			b.WriteString("\n")
		}
	}
	if r.Visualization != "" {
		fmt.Fprintf(&b, "visualization: %s\n", r.Visualization)
	}
	return b.String()
}

func quoteList(keys []string) string {
	const max = 20
	q := make([]string, 0, min(len(keys), max))
	for i, k := range keys {
		if i == max {
			q = append(q, fmt.Sprintf("… (%d more)", len(keys)-max))
			break
		}
		q = append(q, strconv.Quote(k))
	}
	return strings.Join(q, ", ")
}

// regValue is the content of a register: absent, or an int.
type regValue struct {
	Present bool
	V       int
}

func valueOf(p *int) regValue {
	if p == nil {
		return regValue{}
	}
	return regValue{Present: true, V: *p}
}

func (v regValue) String() string {
	if !v.Present {
		return "absent"
	}
	return strconv.Itoa(v.V)
}

// regOutcome is how an operation given to the model ended.
type regOutcome uint8

const (
	outcomeOK       regOutcome = iota // took effect as reported
	outcomeMismatch                   // cas whose condition did not hold
	outcomeUnknown                    // write that may or may not have happened
)

// regInput is a porcupine operation's input.
type regInput struct {
	Key   string
	F     string
	Value regValue // put, cas: the value written
	From  regValue // cas: the value expected
}

// regOutput is a porcupine operation's output.
type regOutput struct {
	Outcome regOutcome
	Read    regValue // get: the value read
}

// regMeta ties a porcupine operation back to the history.
type regMeta struct {
	Process  int
	Node     string
	Invoke   int   // index of the invocation event
	Complete int   // index of the completion event, -1 when none
	Call     int64 // history time of the invocation
	Return   int64 // history time of the completion, -1 when unknown
	Error    string
}

// RegisterModel is the sequential specification CheckRegister uses, with
// operations partitioned by key. Its inputs and outputs are this package's
// own types; it is exported so a caller can visualize a LinearizationInfo
// it obtained itself.
func RegisterModel() porcupine.Model {
	return porcupine.Model{
		Partition: partitionByKey,
		Init:      func() any { return regValue{} },
		Step:      registerStep,
		Equal:     func(a, b any) bool { return a.(regValue) == b.(regValue) },
		Hash: func(s any) uint64 {
			v := s.(regValue)
			if !v.Present {
				return 0
			}
			return uint64(v.V)*0x9e3779b97f4a7c15 + 1
		},
		DescribeOperation:         describeRegisterOp,
		DescribeState:             func(s any) string { return s.(regValue).String() },
		DescribeOperationMetadata: describeRegisterMeta,
	}
}

// registerStep says whether the register, holding state, could have done
// the operation with the outcome seen, and what it holds afterwards.
func registerStep(state, input, output any) (bool, any) {
	cur := state.(regValue)
	in := input.(regInput)
	out := output.(regOutput)
	switch in.F {
	case FGet:
		return out.Read == cur, cur
	case FPut:
		return true, in.Value
	case FDelete:
		return true, regValue{}
	case FCas:
		holds := cur == in.From
		switch out.Outcome {
		case outcomeOK:
			return holds, in.Value
		case outcomeMismatch:
			return !holds, cur
		default:
			// Unknown: if it took effect here, it swapped exactly when
			// the condition held; otherwise it changed nothing.
			if holds {
				return true, in.Value
			}
			return true, cur
		}
	}
	return false, cur
}

func describeRegisterOp(input, output any) string {
	in := input.(regInput)
	out := output.(regOutput)
	var s string
	switch in.F {
	case FGet:
		return fmt.Sprintf("get(%q) -> %s", in.Key, out.Read)
	case FPut:
		s = fmt.Sprintf("put(%q, %s)", in.Key, in.Value)
	case FDelete:
		s = fmt.Sprintf("delete(%q)", in.Key)
	case FCas:
		s = fmt.Sprintf("cas(%q, %s -> %s)", in.Key, in.From, in.Value)
		if out.Outcome == outcomeMismatch {
			return s + " mismatch"
		}
		if out.Outcome == outcomeOK {
			return s + " ok"
		}
	default:
		s = in.F
	}
	if out.Outcome == outcomeUnknown {
		s += " ?"
	}
	return s
}

func describeRegisterMeta(meta any) string {
	m, ok := meta.(regMeta)
	if !ok {
		return ""
	}
	s := fmt.Sprintf("process %d", m.Process)
	if m.Node != "" {
		s += ", node " + m.Node
	}
	if m.Complete >= 0 {
		s += fmt.Sprintf(", events #%d-#%d", m.Invoke, m.Complete)
	} else {
		s += fmt.Sprintf(", event #%d, no completion", m.Invoke)
	}
	if m.Error != "" {
		s += ", error " + m.Error
	}
	return s
}

// partitionByKey splits a history into one sub-history per key, keys in
// sorted order and operations in their original order.
func partitionByKey(ops []porcupine.Operation) [][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	for _, op := range ops {
		k := op.Input.(regInput).Key
		byKey[k] = append(byKey[k], op)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([][]porcupine.Operation, len(keys))
	for i, k := range keys {
		parts[i] = byKey[k]
	}
	return parts
}

func isRegisterOp(f string) bool {
	return f == FGet || f == FPut || f == FCas || f == FDelete
}

// registerHistory is a history translated for porcupine.
type registerHistory struct {
	keys          []string // sorted
	byKey         map[string][]porcupine.Operation
	end           int64 // a time after every event of the history
	ops           int
	indeterminate int
	dropped       int
}

// registerOperations turns client operations into porcupine operations.
func registerOperations(ops []history.Op) (*registerHistory, error) {
	pairs, err := history.Pairs(ops)
	if err != nil {
		return nil, err
	}
	h := &registerHistory{byKey: map[string][]porcupine.Operation{}}
	for _, op := range ops {
		h.end = max(h.end, op.Time+1)
	}
	// porcupine's visualization draws one row per client id, so give the
	// processes dense ids in increasing order.
	var procs []int
	for _, p := range pairs {
		if isRegisterOp(p.Invoke.F) {
			procs = append(procs, p.Invoke.Process)
		}
	}
	slices.Sort(procs)
	procs = slices.Compact(procs)
	client := make(map[int]int, len(procs))
	for i, p := range procs {
		client[p] = i
	}

	for _, p := range pairs {
		inv := p.Invoke
		if !isRegisterOp(inv.F) {
			continue // another workload's operation
		}
		in := regInput{Key: inv.Key, F: inv.F}
		out := regOutput{}
		meta := regMeta{Process: inv.Process, Node: inv.Node, Invoke: inv.Index, Complete: -1, Call: inv.Time, Return: -1}
		ret := h.end
		outcome := p.Outcome()
		if c := p.Completion; c != nil {
			meta.Complete, meta.Error = c.Index, c.Error
			if c.Node != "" {
				meta.Node = c.Node
			}
			if outcome != history.Info {
				meta.Return, ret = c.Time, c.Time
			}
		}
		switch inv.F {
		case FGet:
			if outcome != history.OK {
				h.dropped++
				continue
			}
			out.Read = valueOf(p.Completion.Value)
		case FPut, FCas, FDelete:
			if inv.F != FDelete {
				if inv.Value == nil {
					return nil, fmt.Errorf("checker: %s event %d has no value", inv.F, inv.Index)
				}
				in.Value = valueOf(inv.Value)
			}
			if inv.F == FCas {
				in.From = valueOf(inv.From)
			}
			switch {
			case outcome == history.OK:
				out.Outcome = outcomeOK
			case outcome == history.Info:
				out.Outcome = outcomeUnknown
				h.indeterminate++
			case inv.F == FCas && p.Completion.Error == ErrorVersionMismatch:
				out.Outcome = outcomeMismatch
			default: // fail: certainly not applied
				h.dropped++
				continue
			}
		}
		if _, seen := h.byKey[inv.Key]; !seen {
			h.keys = append(h.keys, inv.Key)
		}
		h.byKey[inv.Key] = append(h.byKey[inv.Key], porcupine.Operation{
			ClientId: client[inv.Process],
			Input:    in,
			Call:     inv.Time,
			Output:   out,
			Return:   ret,
			Metadata: meta,
		})
		h.ops++
	}
	sort.Strings(h.keys)
	return h, nil
}

// keyVerdict is the outcome of checking one key.
type keyVerdict struct {
	result porcupine.CheckResult
	info   porcupine.LinearizationInfo
}

// CheckRegister checks that the register operations of a history (F get,
// put, cas or delete; other workloads' operations are ignored) are
// linearizable, key by key. The error reports a history that cannot be
// checked (unpaired events, writes without a value) or
// a visualization that could not be written; in the latter case the verdict
// in the result still stands.
func CheckRegister(ops []history.Op, opts RegisterOptions) (RegisterResult, error) {
	h, err := registerOperations(ops)
	if err != nil {
		return RegisterResult{Explanation: err.Error()}, err
	}
	res := RegisterResult{Keys: len(h.keys), Ops: h.ops, Indeterminate: h.indeterminate, Dropped: h.dropped}
	model := RegisterModel()

	var deadline time.Time
	if opts.Timeout > 0 {
		deadline = time.Now().Add(opts.Timeout)
	}
	verdicts := make([]keyVerdict, len(h.keys))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(h.keys)) {
		wg.Go(func() {
			for i := range next {
				var timeout time.Duration
				if !deadline.IsZero() {
					if timeout = time.Until(deadline); timeout <= 0 {
						verdicts[i].result = porcupine.Unknown
						continue
					}
				}
				r, info := porcupine.CheckOperationsVerbose(model, h.byKey[h.keys[i]], timeout)
				verdicts[i] = keyVerdict{r, info}
			}
		})
	}
	for i := range h.keys {
		next <- i
	}
	close(next)
	wg.Wait()

	var explain strings.Builder
	for i, k := range h.keys {
		switch verdicts[i].result {
		case porcupine.Illegal:
			res.FailedKeys = append(res.FailedKeys, k)
			explain.WriteString(explainKey(model, k, h.byKey[k], verdicts[i].info))
		case porcupine.Unknown:
			res.UnknownKeys = append(res.UnknownKeys, k)
		}
	}
	res.Valid = len(res.FailedKeys) == 0 && len(res.UnknownKeys) == 0
	res.Unknown = len(res.FailedKeys) == 0 && len(res.UnknownKeys) > 0
	switch {
	case res.Valid:
		fmt.Fprintf(&explain, "all %d keys are linearizable (%d operations)\n", res.Keys, res.Ops)
	case len(res.UnknownKeys) > 0:
		fmt.Fprintf(&explain, "the checker ran out of time (%v) on %d of %d keys: %s\n",
			opts.Timeout, len(res.UnknownKeys), res.Keys, quoteList(res.UnknownKeys))
	}
	res.Explanation = explain.String()

	if opts.HTMLPath == "" || (!opts.AlwaysVisualize && len(res.FailedKeys) == 0) {
		return res, nil
	}
	shown := res.FailedKeys
	if opts.AlwaysVisualize {
		shown = h.keys
	}
	var info porcupine.LinearizationInfo
	if len(shown) == 1 && verdicts[slices.Index(h.keys, shown[0])].result != porcupine.Unknown {
		info = verdicts[slices.Index(h.keys, shown[0])].info
	} else {
		// One LinearizationInfo can hold several partitions only if it
		// comes from one partitioned check, so check the keys shown again.
		var sub []porcupine.Operation
		for _, k := range shown {
			sub = append(sub, h.byKey[k]...)
		}
		_, info = porcupine.CheckOperationsVerbose(model, sub, opts.Timeout)
	}
	info.AddAnnotations(nemesisAnnotations(ops, h.end))
	if err := porcupine.VisualizePath(model, info, opts.HTMLPath); err != nil {
		return res, fmt.Errorf("checker: writing visualization: %w", err)
	}
	res.Visualization = opts.HTMLPath
	return res, nil
}

// nemesisAnnotations draws each fault window of the history; a window still
// open when the history ended runs to end.
func nemesisAnnotations(ops []history.Op, end int64) []porcupine.Annotation {
	var as []porcupine.Annotation
	for _, w := range history.Windows(ops) {
		a := porcupine.Annotation{
			Tag:             NemesisTag + " " + w.F,
			Start:           w.Start,
			End:             w.End,
			Description:     w.F,
			Details:         w.Desc,
			BackgroundColor: nemesisColour,
		}
		if w.End < 0 {
			a.End = end
			a.Details = strings.TrimSpace(w.Desc + " (still active when the history ended)")
		}
		as = append(as, a)
	}
	return as
}

// explainKey describes why key is not linearizable: the longest order of
// its operations porcupine found, and what could not come next.
func explainKey(model porcupine.Model, key string, ops []porcupine.Operation, info porcupine.LinearizationInfo) string {
	var b strings.Builder
	fmt.Fprintf(&b, "key %q is not linearizable (%d operations)\n", key, len(ops))

	// The partial linearizations are lists of indices into ops. Take the
	// longest; break ties on the sequence itself so reports are stable.
	var best []int
	if parts := info.PartialLinearizations(); len(parts) == 1 {
		for _, p := range parts[0] {
			if len(p) > len(best) || (len(p) == len(best) && slices.Compare(p, best) < 0) {
				best = p
			}
		}
	}
	state := model.Init()
	in := make([]bool, len(ops))
	for _, id := range best {
		if id < 0 || id >= len(ops) {
			return b.String() + "  (porcupine returned an operation out of range)\n"
		}
		_, state = model.Step(state, ops[id].Input, ops[id].Output)
		in[id] = true
	}
	if len(best) == 0 {
		b.WriteString("  no operation can come first: none is consistent with the initial state (absent)\n")
	} else {
		last := ops[best[len(best)-1]]
		fmt.Fprintf(&b, "  longest linearizable prefix: %d of %d operations, ending with %s; the value is then %s\n",
			len(best), len(ops), describeFull(model, last), model.DescribeState(state))
	}

	// The operation that blocks the search is the remaining one that
	// completed first: nothing invoked after it completed may precede it.
	// The candidates are the remaining operations invoked by then.
	first := -1
	for i, op := range ops {
		if in[i] {
			continue
		}
		if first < 0 || op.Return < ops[first].Return || (op.Return == ops[first].Return && op.Call < ops[first].Call) {
			first = i
		}
	}
	if first < 0 {
		return b.String()
	}
	fmt.Fprintf(&b, "  first operation that cannot be linearized: %s\n", describeFull(model, ops[first]))
	var cands []string
	for i, op := range ops {
		if !in[i] && op.Call <= ops[first].Return && i != first {
			cands = append(cands, describeFull(model, op))
		}
	}
	if len(cands) > 0 {
		const maxCands = 8
		b.WriteString("  the other operations that could have come next are not consistent with that value either:\n")
		for i, c := range cands {
			if i == maxCands {
				fmt.Fprintf(&b, "    … and %d more\n", len(cands)-maxCands)
				break
			}
			fmt.Fprintf(&b, "    %s\n", c)
		}
	}
	return b.String()
}

// describeFull describes an operation with where it sits in the history.
func describeFull(model porcupine.Model, op porcupine.Operation) string {
	s := model.DescribeOperation(op.Input, op.Output)
	m, ok := op.Metadata.(regMeta)
	if !ok {
		return s
	}
	ret := "unknown"
	if m.Return >= 0 {
		ret = time.Duration(m.Return).String()
	}
	return fmt.Sprintf("%s [%s, %s to %s]", s, model.DescribeOperationMetadata(m), time.Duration(m.Call), ret)
}
