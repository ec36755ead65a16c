package elle

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

// builder writes histories by hand. Events get increasing times and
// indexes in the order they are added.
type builder struct {
	ops []Op
}

// invoke starts a transaction on process p. Reads in mops are cleared:
// an invocation does not know what it will read.
func (b *builder) invoke(p int, mops ...Mop) *builder {
	inv := make([]Mop, len(mops))
	for i, m := range mops {
		inv[i] = m
		inv[i].Read = nil
	}
	return b.add(p, Invoke, inv)
}

// end completes process p's open transaction with the given outcome; for
// OK, mops carry the reads' results.
func (b *builder) end(p int, typ OpType, mops ...Mop) *builder { return b.add(p, typ, mops) }

// txn invokes and completes a transaction at once.
func (b *builder) txn(p int, typ OpType, mops ...Mop) *builder {
	return b.invoke(p, mops...).end(p, typ, mops...)
}

func (b *builder) add(p int, typ OpType, mops []Mop) *builder {
	n := len(b.ops)
	b.ops = append(b.ops, Op{Index: n + 1, Process: p, Type: typ, Time: int64(n+1) * 1000, Txn: mops})
	return b
}

func app(k string, v int) Mop   { return Append(k, v) }
func r(k string, vs ...int) Mop { return Read(k, vs) }
func models() []Model           { return []Model{Serializable, StrongSessionSerializable, StrictSerializable} }
func check(t *testing.T, h []Op, m Model) Result {
	t.Helper()
	res, err := Check(h, Options{Model: m})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return res
}

// TestAnomalies runs one hand-made history per anomaly and asserts the
// exact set of anomaly types found under every model.
func TestAnomalies(t *testing.T) {
	tests := []struct {
		name string
		h    *builder
		want []AnomalyType // under every model
	}{
		{
			// T1 and T2 each append to x and y; the final reads show x
			// ordered T1, T2 and y ordered T2, T1.
			name: "G0 write cycle",
			h: new(builder).
				invoke(1, app("x", 1), app("y", 1)).
				invoke(2, app("x", 2), app("y", 2)).
				end(1, OK, app("x", 1), app("y", 1)).
				end(2, OK, app("x", 2), app("y", 2)).
				txn(3, OK, r("x", 1, 2), r("y", 2, 1)),
			want: []AnomalyType{G0},
		},
		{
			name: "G1a aborted read",
			h: new(builder).
				txn(1, Fail, app("x", 1)).
				txn(2, OK, r("x", 1)),
			want: []AnomalyType{G1a},
		},
		{
			// T2 sees x = [1] while T1 appended 1 and 2 in one transaction.
			name: "G1b intermediate read",
			h: new(builder).
				invoke(1, app("x", 1), app("x", 2)).
				invoke(2, r("x")).
				end(2, OK, r("x", 1)).
				end(1, OK, app("x", 1), app("x", 2)),
			want: []AnomalyType{G1b},
		},
		{
			// Each transaction reads the other's append.
			name: "G1c circular information flow",
			h: new(builder).
				invoke(1, app("x", 1), r("y")).
				invoke(2, app("y", 1), r("x")).
				end(1, OK, app("x", 1), r("y", 1)).
				end(2, OK, app("y", 1), r("x", 1)),
			want: []AnomalyType{G1c},
		},
		{
			// T2 sees y's new value but x's old one: read skew.
			name: "G-single read skew",
			h: new(builder).
				invoke(1, app("x", 1), app("y", 1)).
				invoke(2, r("x"), r("y")).
				end(2, OK, r("x"), r("y", 1)).
				end(1, OK, app("x", 1), app("y", 1)).
				txn(3, OK, r("x", 1), r("y", 1)),
			want: []AnomalyType{GSingle},
		},
		{
			// Both read x = [], both append: one update is lost.
			name: "G-single lost update",
			h: new(builder).
				invoke(1, r("x"), app("x", 1)).
				invoke(2, r("x"), app("x", 2)).
				end(1, OK, r("x"), app("x", 1)).
				end(2, OK, r("x"), app("x", 2)).
				txn(3, OK, r("x", 1, 2)),
			want: []AnomalyType{GSingle},
		},
		{
			// Write skew: each reads the key the other appends to, and
			// sees it empty.
			name: "G2-item write skew",
			h: new(builder).
				invoke(1, r("x"), app("y", 1)).
				invoke(2, r("y"), app("x", 1)).
				end(1, OK, r("x"), app("y", 1)).
				end(2, OK, r("y"), app("x", 1)).
				txn(3, OK, r("x", 1), r("y", 1)),
			want: []AnomalyType{G2Item},
		},
		{
			name: "internal: own append missing",
			h: new(builder).
				txn(1, OK, r("x"), app("x", 5), r("x")),
			want: []AnomalyType{Internal},
		},
		{
			name: "internal: reads differ without an append",
			h: new(builder).
				invoke(3, r("x"), r("x")).
				txn(1, OK, app("x", 1)).
				txn(2, OK, app("x", 2)).
				end(3, OK, r("x", 1), r("x", 1, 2)),
			want: []AnomalyType{Internal},
		},
		{
			name: "internal: read of a later own append",
			h: new(builder).
				txn(1, OK, r("x", 7), app("x", 7)),
			want: []AnomalyType{Internal},
		},
		{
			name: "duplicate elements",
			h: new(builder).
				txn(1, OK, app("x", 1)).
				txn(2, OK, r("x", 1, 1)),
			want: []AnomalyType{DuplicateElements},
		},
		{
			name: "incompatible order",
			h: new(builder).
				invoke(1, app("x", 1)).
				invoke(2, app("x", 2)).
				end(1, OK, app("x", 1)).
				end(2, OK, app("x", 2)).
				txn(3, OK, r("x", 1, 2)).
				txn(4, OK, r("x", 2, 1)),
			want: []AnomalyType{IncompatibleOrder},
		},
		{
			name: "garbage read",
			h: new(builder).
				txn(1, OK, app("x", 1)).
				txn(2, OK, r("x", 1, 99)),
			want: []AnomalyType{GarbageRead},
		},
	}
	for _, tt := range tests {
		for _, m := range models() {
			t.Run(tt.name+"/"+string(m), func(t *testing.T) {
				res := check(t, tt.h.ops, m)
				if res.Valid {
					t.Fatalf("Valid = true, want anomalies %v", tt.want)
				}
				if !slices.Equal(res.AnomalyTypes, tt.want) {
					t.Fatalf("anomaly types = %v, want %v\n%s", res.AnomalyTypes, tt.want, res.String())
				}
				for _, a := range res.Anomalies {
					if a.Explanation == "" || len(a.Ops) == 0 {
						t.Errorf("%s: explanation %q, %d ops", a.Type, a.Explanation, len(a.Ops))
					}
				}
			})
		}
	}
}

// TestCycleDetails checks that a reported cycle names the right
// transactions and edges, and that the explanation shows the evidence.
func TestCycleDetails(t *testing.T) {
	h := new(builder).
		invoke(1, app("x", 1), app("y", 1)).  // index 1
		invoke(2, r("x"), r("y")).            // index 2
		end(2, OK, r("x"), r("y", 1)).        // index 3: T3
		end(1, OK, app("x", 1), app("y", 1)). // index 4: T4
		txn(3, OK, r("x", 1), r("y", 1))      // T6 sees both
	res := check(t, h.ops, Serializable)
	if len(res.Anomalies) != 1 {
		t.Fatalf("got %d anomalies, want 1\n%s", len(res.Anomalies), res.String())
	}
	a := res.Anomalies[0]
	// Cycles start at the transaction invoked first.
	want := []Edge{
		{From: "T4", To: "T3", Kind: "wr"},
		{From: "T3", To: "T4", Kind: "rw"},
	}
	if len(a.Cycle) != len(want) {
		t.Fatalf("cycle = %+v, want %+v", a.Cycle, want)
	}
	for i, e := range a.Cycle {
		if e.From != want[i].From || e.To != want[i].To || e.Kind != want[i].Kind || e.Why == "" {
			t.Errorf("edge %d = %+v, want %+v with a reason", i, e, want[i])
		}
	}
	for _, s := range []string{
		"T3 read x = [], missing 1, the first value of x's order, which T4 appended",
		"T3 read y = [1], whose last value 1 was appended by T4",
		"T3 = process 2, ok: [r x []] [r y [1]]",
		"T4 = process 1, ok: [append x 1] [append y 1]",
	} {
		if !strings.Contains(a.Explanation, s) {
			t.Errorf("explanation lacks %q:\n%s", s, a.Explanation)
		}
	}
	if got := []int{a.Ops[0].Index, a.Ops[1].Index}; !slices.Equal(got, []int{4, 3}) {
		t.Errorf("ops = %v, want indexes [4 3]", got)
	}
}

// TestRealtime: a read that starts after an append committed, yet misses
// it, is serializable but not strictly serializable (a stale read).
func TestRealtime(t *testing.T) {
	otherProcess := new(builder).
		txn(1, OK, app("x", 1)).
		txn(2, OK, r("x")).
		txn(3, OK, r("x", 1))
	sameProcess := new(builder).
		txn(1, OK, app("x", 1)).
		txn(1, OK, r("x")).
		txn(3, OK, r("x", 1))
	tests := []struct {
		name  string
		h     *builder
		model Model
		want  []AnomalyType
	}{
		{"other process/serializable", otherProcess, Serializable, nil},
		{"other process/strong session", otherProcess, StrongSessionSerializable, nil},
		{"other process/strict", otherProcess, StrictSerializable, []AnomalyType{"G-single-realtime"}},
		{"same process/serializable", sameProcess, Serializable, nil},
		{"same process/strong session", sameProcess, StrongSessionSerializable, []AnomalyType{"G-single-process"}},
		{"same process/strict", sameProcess, StrictSerializable, []AnomalyType{"G-single-realtime"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := check(t, tt.h.ops, tt.model)
			if res.Valid != (len(tt.want) == 0) || !slices.Equal(res.AnomalyTypes, tt.want) {
				t.Fatalf("Valid = %v, types = %v; want %v\n%s", res.Valid, res.AnomalyTypes, tt.want, res.String())
			}
		})
	}
}

// TestRealtimeFutureRead: a read that completed before an append was even
// invoked, yet sees it.
func TestRealtimeFutureRead(t *testing.T) {
	h := new(builder).
		txn(1, OK, r("x", 1)).
		txn(2, OK, app("x", 1))
	if res := check(t, h.ops, Serializable); !res.Valid {
		t.Fatalf("serializable: want valid\n%s", res.String())
	}
	res := check(t, h.ops, StrictSerializable)
	if want := []AnomalyType{"G1c-realtime"}; !slices.Equal(res.AnomalyTypes, want) {
		t.Fatalf("types = %v, want %v\n%s", res.AnomalyTypes, want, res.String())
	}
}

// TestValidHistories are histories every model must accept.
func TestValidHistories(t *testing.T) {
	tests := []struct {
		name string
		h    *builder
	}{
		{"empty", new(builder)},
		{
			name: "sequential",
			h: new(builder).
				txn(1, OK, r("x"), app("x", 1)).
				txn(2, OK, r("x", 1), app("x", 2), app("y", 1)).
				txn(1, OK, r("x", 1, 2), r("y", 1), app("y", 2), r("y", 1, 2)).
				txn(2, OK, r("x", 1, 2), r("y", 1, 2)),
		},
		{
			// T2 is invoked first but takes effect after T1, which the
			// overlap allows.
			name: "concurrent serializable",
			h: new(builder).
				invoke(2, r("x"), app("y", 1)).
				invoke(1, app("x", 1)).
				end(1, OK, app("x", 1)).
				end(2, OK, r("x", 1), app("y", 1)).
				invoke(3, r("x"), r("y")).
				invoke(4, app("x", 2)).
				end(3, OK, r("x", 1), r("y", 1)).
				end(4, OK, app("x", 2)).
				txn(3, OK, r("x", 1, 2), r("y", 1)),
		},
		{
			name: "info txn observed",
			h: new(builder).
				txn(1, Info, app("x", 1)).
				txn(2, OK, r("x", 1), app("x", 2)).
				txn(3, OK, r("x", 1, 2)),
		},
		{
			name: "info txn not observed",
			h: new(builder).
				txn(1, Info, app("x", 1)).
				txn(2, OK, r("x"), app("x", 2)).
				txn(3, OK, r("x", 2)),
		},
		{
			// An unknown transaction may take effect long after it was
			// invoked, even after later transactions of its process.
			name: "info txn applied late",
			h: new(builder).
				txn(1, Info, app("x", 1)).
				txn(1, OK, r("x"), app("y", 1)).
				txn(2, OK, r("x", 1), r("y", 1)),
		},
		{
			name: "never completed txn observed",
			h: new(builder).
				invoke(1, app("x", 1)).
				txn(2, OK, r("x", 1)),
		},
		{
			name: "failed txn not observed",
			h: new(builder).
				txn(1, Fail, app("x", 1)).
				txn(2, OK, r("x"), app("x", 2)).
				txn(3, OK, r("x", 2)),
		},
		{
			name: "own appends read back",
			h: new(builder).
				txn(1, OK, app("x", 1), r("x", 1), app("x", 2), r("x", 1, 2)).
				txn(2, OK, r("x", 1, 2), app("x", 3), r("x", 1, 2, 3)),
		},
	}
	for _, tt := range tests {
		for _, m := range models() {
			t.Run(tt.name+"/"+string(m), func(t *testing.T) {
				res := check(t, tt.h.ops, m)
				if !res.Valid || len(res.Anomalies) != 0 {
					t.Fatalf("want valid\n%s", res.String())
				}
			})
		}
	}
}

func TestMalformed(t *testing.T) {
	tests := []struct {
		name string
		h    []Op
	}{
		{"completion without invocation", []Op{{Process: 1, Type: OK}}},
		{"two open transactions", new(builder).invoke(1, app("x", 1)).invoke(1, app("x", 2)).ops},
		{"unknown type", []Op{{Process: 1, Type: "crashed"}}},
		{"unknown function", []Op{{Process: 1, Type: Invoke, Txn: []Mop{{F: "cas", Key: "x"}}}}},
		{"completion differs", new(builder).invoke(1, app("x", 1)).end(1, OK, app("x", 2)).ops},
		{"value appended twice", new(builder).txn(1, OK, app("x", 1)).txn(2, Fail, app("x", 1)).ops},
		{"time goes backwards", []Op{
			{Process: 1, Type: Invoke, Time: 10, Txn: []Mop{app("x", 1)}},
			{Process: 1, Type: OK, Time: 5, Txn: []Mop{app("x", 1)}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Check(tt.h, Options{})
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	if err := DefaultOptions().Validate(); err != nil {
		t.Fatalf("DefaultOptions: %v", err)
	}
	err := Options{Model: "linearizable", MaxExamples: -1, SearchBudget: -1}.Validate()
	for _, s := range []string{"linearizable", "MaxExamples", "SearchBudget"} {
		if err == nil || !strings.Contains(err.Error(), s) {
			t.Errorf("Validate error %v does not mention %s", err, s)
		}
	}
	if _, err := Check(nil, Options{Model: "bogus"}); err == nil {
		t.Error("Check accepted an unknown model")
	}
}

// TestMaxExamples keeps counts exact while trimming the examples.
func TestMaxExamples(t *testing.T) {
	b := new(builder).txn(1, Fail, app("x", 1))
	for p := 2; p < 7; p++ {
		b.txn(p, OK, r("x", 1))
	}
	res, err := Check(b.ops, Options{MaxExamples: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.Counts.Anomalies[G1a] != 5 || len(res.Anomalies) != 2 || res.Counts.Omitted != 3 {
		t.Fatalf("count %d, kept %d, omitted %d; want 5, 2, 3", res.Counts.Anomalies[G1a], len(res.Anomalies), res.Counts.Omitted)
	}
}

// TestResultJSON checks a result survives a JSON round trip, micro-ops in
// Jepsen's array form included.
func TestResultJSON(t *testing.T) {
	h := new(builder).
		txn(1, Fail, app("x", 1)).
		txn(2, OK, r("x", 1), app("y", 2))
	res := check(t, h.ops, StrictSerializable)
	data, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"valid":false`, `"type":"G1a"`, `["r","x",[1]]`, `["append","y",2]`, `"anomalies":{"G1a":1}`} {
		if !strings.Contains(string(data), s) {
			t.Errorf("JSON lacks %s: %s", s, data)
		}
	}
	var back Result
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back.Valid || len(back.Anomalies) != 1 || !slices.Equal(back.Anomalies[0].Ops[0].Txn[0].Read, []int{1}) {
		t.Fatalf("round trip lost data: %+v", back)
	}
	var m Mop
	if err := json.Unmarshal([]byte(`["cas","x",1]`), &m); err == nil {
		t.Error("decoded an unknown function")
	}
}

func TestWriteText(t *testing.T) {
	h := new(builder).
		txn(1, OK, app("x", 1)).
		txn(2, OK, r("x")).
		txn(3, OK, r("x", 1))
	res := check(t, h.ops, StrictSerializable)
	text := res.String()
	for _, s := range []string{
		"against strict-serializable: INVALID",
		"G-single-realtime",
		"--- G-single-realtime #1 ---",
		"T2 completed (event index 2, time 2000) before T4 was invoked (event index 3, time 3000)",
		"T4 read x = [], missing 1",
	} {
		if !strings.Contains(text, s) {
			t.Errorf("report lacks %q:\n%s", s, text)
		}
	}
}
