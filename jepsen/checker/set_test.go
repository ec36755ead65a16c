package checker

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/cairndb/cairn/jepsen/history"
)

// counts is the part of a SetResult the tests compare.
type counts struct {
	Valid                                                           bool
	Attempted, Acknowledged, Failed, Indeterminate, Reads, Final    int
	Lost, Unexpected, Stale, Recovered                              int
	LostElements, UnexpectedElements, StaleElements, RecoveredElems []int
}

func countsOf(r SetResult) counts {
	return counts{r.Valid, r.Attempted, r.Acknowledged, r.Failed, r.Indeterminate, r.Reads, r.FinalReads,
		r.Lost, r.Unexpected, r.Stale, r.Recovered, r.LostElements, r.UnexpectedElements, r.StaleElements, r.RecoveredElements}
}

func equalCounts(a, b counts) bool {
	return a.Valid == b.Valid && a.Attempted == b.Attempted && a.Acknowledged == b.Acknowledged &&
		a.Failed == b.Failed && a.Indeterminate == b.Indeterminate && a.Reads == b.Reads && a.Final == b.Final &&
		a.Lost == b.Lost && a.Unexpected == b.Unexpected && a.Stale == b.Stale && a.Recovered == b.Recovered &&
		slices.Equal(a.LostElements, b.LostElements) && slices.Equal(a.UnexpectedElements, b.UnexpectedElements) &&
		slices.Equal(a.StaleElements, b.StaleElements) && slices.Equal(a.RecoveredElems, b.RecoveredElems)
}

func TestSet(t *testing.T) {
	cases := []struct {
		name  string
		build func(h *hist)
		want  counts
		why   string // in the explanation when not valid
	}{
		{
			name: "valid with fails, unknowns and concurrent reads",
			build: func(h *hist) {
				h.addE(0, 1).ok(0)
				h.addE(0, 2).fail(0, "not_leader")
				h.addE(0, 3).info(0) // recovered below
				h.addE(1, 4).info(1) // never seen: fine
				h.addE(2, 5)         // no completion, seen: recovered
				h.addE(3, 6)         // concurrent with the read below
				h.readSet(4, false, "n1").elems(4, 1)
				h.ok(3)
				h.readSet(4, false, "n2").elems(4, 1, 3, 6)
				h.nemesis("start-partition", "n1 | n2 n3").nemesis("stop-partition", "")
				h.readSet(4, true, "n1").elems(4, 1, 3, 5, 6)
				h.readSet(5, true, "n2").elems(5, 6, 5, 3, 1)
			},
			want: counts{Valid: true, Attempted: 6, Acknowledged: 2, Failed: 1, Indeterminate: 3, Reads: 2, Final: 2,
				Recovered: 2, RecoveredElems: []int{3, 5}},
		},
		{
			name: "lost acknowledged adds",
			build: func(h *hist) {
				h.addE(0, 1).ok(0).addE(0, 2).ok(0).addE(0, 3).ok(0)
				h.readSet(1, true, "n1").elems(1, 1, 3)
			},
			want: counts{Attempted: 3, Acknowledged: 3, Final: 1, Lost: 1, LostElements: []int{2}},
			why:  "element 2, acknowledged at 40ns (add #2-#3), is missing from final read #6-#7 (process 1, node n1, invoked at 70ns)",
		},
		{
			name: "missing from one of several final reads",
			build: func(h *hist) {
				h.addE(0, 1).ok(0).addE(0, 2).ok(0)
				h.readSet(1, true, "n1").readSet(2, true, "n2").readSet(3, true, "n3")
				h.elems(1, 1, 2).elems(2, 1).elems(3, 1, 2)
			},
			want: counts{Attempted: 2, Acknowledged: 2, Final: 3, Lost: 1, LostElements: []int{2}},
			why:  "node n2",
		},
		{
			name: "unknown add seen during the run, then lost",
			build: func(h *hist) {
				h.addE(0, 1).info(0)
				h.readSet(1, false, "").elems(1, 1)
				h.readSet(1, true, "").elems(1)
			},
			want: counts{Attempted: 1, Indeterminate: 1, Reads: 1, Final: 1, Lost: 1, LostElements: []int{1}},
			why:  "returned by a read that completed at",
		},
		{
			name: "unexpected elements",
			build: func(h *hist) {
				h.addE(0, 1).ok(0).addE(0, 2).fail(0, "not_leader")
				h.readSet(1, false, "").elems(1, 1, 99)
				h.readSet(1, true, "").elems(1, 1, 2)
			},
			want: counts{Attempted: 2, Acknowledged: 1, Failed: 1, Reads: 1, Final: 1, Unexpected: 2, UnexpectedElements: []int{2, 99}},
			why:  "element 99 returned by read #4-#5 (process 1, invoked at 50ns), but no add of it was attempted; element 2 returned by final read #6-#7 (process 1, invoked at 70ns), but its add #2-#3 failed",
		},
		{
			name: "stale read during the run",
			build: func(h *hist) {
				h.addE(0, 1).ok(0).addE(0, 2).ok(0)
				h.readSet(1, false, "n3").elems(1, 1)
				h.readSet(1, true, "").elems(1, 1, 2)
			},
			want: counts{Attempted: 2, Acknowledged: 2, Reads: 1, Final: 1, Stale: 1, StaleElements: []int{2}},
			why:  "element 2, acknowledged at 40ns (add #2-#3), is missing from read #4-#5 (process 1, node n3, invoked at 50ns)",
		},
		{
			name: "an element once read must stay",
			build: func(h *hist) {
				h.addE(0, 1)
				h.readSet(1, false, "").elems(1, 1)
				h.readSet(1, false, "").elems(1)
				h.ok(0)
				h.readSet(1, true, "").elems(1, 1)
			},
			want: counts{Attempted: 1, Acknowledged: 1, Reads: 2, Final: 1, Stale: 1, StaleElements: []int{1}},
		},
		{
			name: "read concurrent with the add may miss it",
			build: func(h *hist) {
				h.addE(0, 1).readSet(1, false, "").ok(0).elems(1)
				h.addE(0, 2).ok(0).readSet(1, true, "").elems(1, 1, 2)
			},
			want: counts{Valid: true, Attempted: 2, Acknowledged: 2, Reads: 1, Final: 1},
		},
		{
			name: "no final read",
			build: func(h *hist) {
				h.addE(0, 1).ok(0).readSet(1, false, "").elems(1, 1)
			},
			want: counts{Attempted: 1, Acknowledged: 1, Reads: 1},
			why:  "no final read completed ok (0 attempted)",
		},
		{
			name: "final read did not complete",
			build: func(h *hist) {
				h.addE(0, 1).ok(0).readSet(1, true, "").info(1).readSet(2, true, "").fail(2, "unavailable")
			},
			want: counts{Attempted: 1, Acknowledged: 1},
			why:  "no final read completed ok (2 attempted)",
		},
		{
			name: "empty final read of an empty history",
			build: func(h *hist) {
				h.readSet(1, true, "").elems(1)
			},
			want: counts{Valid: true, Final: 1},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHist()
			c.build(h)
			res := CheckSet(h.ops)
			if got := countsOf(res); !equalCounts(got, c.want) {
				t.Fatalf("got  %+v\nwant %+v\n%s", got, c.want, res)
			}
			if res.Valid != (res.Explanation == "") {
				t.Fatalf("valid %v with explanation %q", res.Valid, res.Explanation)
			}
			if !strings.Contains(res.Explanation, c.why) {
				t.Fatalf("explanation lacks %q:\n%s", c.why, res.Explanation)
			}
		})
	}
}

// Intervals are closed: a read invoked at the very time an add was
// acknowledged is concurrent with it and may miss it; one nanosecond later
// it may not.
func TestSetStaleBoundary(t *testing.T) {
	for _, gap := range []int64{0, 1} {
		ops := []history.Op{
			{Process: 0, Type: history.Invoke, F: FAdd, Element: iv(1), Time: 10},
			{Process: 0, Type: history.OK, F: FAdd, Element: iv(1), Time: 20},
			{Process: 1, Type: history.Invoke, F: FRead, Time: 20 + gap},
			{Process: 1, Type: history.OK, F: FRead, Time: 30},
			{Process: 1, Type: history.Invoke, F: FFinalRead, Time: 40},
			{Process: 1, Type: history.OK, F: FFinalRead, Elements: []int{1}, Time: 50},
		}
		for i := range ops {
			ops[i].Index = i
		}
		res := CheckSet(ops)
		if wantStale := int(gap); res.Stale != wantStale || res.Valid != (gap == 0) {
			t.Errorf("gap %d: got %+v", gap, res)
		}
	}
}

func TestSetListsAreCapped(t *testing.T) {
	h := newHist()
	for e := range 100 {
		h.addE(0, e).ok(0)
	}
	h.readSet(1, true, "").elems(1, 0)
	res := CheckSet(h.ops)
	if res.Valid || res.Lost != 99 || len(res.LostElements) != MaxListed || res.LostElements[0] != 1 {
		t.Fatalf("got %+v", res)
	}
	if !strings.Contains(res.String(), "(67 more)") {
		t.Fatalf("summary:\n%s", res)
	}
}

func TestSetRejectsBadHistories(t *testing.T) {
	for name, ops := range map[string][]history.Op{
		"add without element":           newHist().invoke(0, history.Op{F: FAdd}).ok(0).readSet(1, true, "").elems(1).ops,
		"completion without invocation": {{Index: 0, Time: 1, Process: 3, Type: history.OK, F: FAdd, Element: iv(1)}},
	} {
		t.Run(name, func(t *testing.T) {
			if res := CheckSet(ops); res.Valid || res.Explanation == "" {
				t.Fatalf("got %+v", res)
			}
		})
	}
}

// Register and set workloads may share one history: each checker keeps to
// its own operations.
func TestMixedWorkloads(t *testing.T) {
	h := newHist()
	h.addE(0, 1).sPut(1, "x", 2).ok(0)
	h.sGet(1, "x", iv(2)).readSet(2, false, "").elems(2, 1)
	h.cas(1, "x", 2, 3).ok(1).sDel(1, "x")
	h.readSet(2, true, "").elems(2, 1)
	reg, err := CheckRegister(h.ops, RegisterOptions{})
	if err != nil || !reg.Valid || reg.Keys != 1 || reg.Ops != 4 {
		t.Fatalf("register: %+v, %v", reg, err)
	}
	set := CheckSet(h.ops)
	if want := (counts{Valid: true, Attempted: 1, Acknowledged: 1, Reads: 1, Final: 1}); !equalCounts(countsOf(set), want) {
		t.Fatalf("set: %+v", set)
	}

	// And each still finds its own violations.
	h.sGet(1, "x", iv(3)).readSet(2, true, "").elems(2)
	reg, _ = CheckRegister(h.ops, RegisterOptions{})
	if set = CheckSet(h.ops); reg.Valid || set.Valid || set.Lost != 1 || !slices.Equal(reg.FailedKeys, []string{"x"}) {
		t.Fatalf("register %+v\nset %+v", reg, set)
	}
}

func TestSetResultJSONAndString(t *testing.T) {
	h := newHist()
	h.addE(0, 1).ok(0).addE(0, 2).ok(0).readSet(1, true, "").elems(1, 1, 7)
	res := CheckSet(h.ops)
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var back SetResult
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !equalCounts(countsOf(back), countsOf(res)) || back.Explanation != res.Explanation {
		t.Fatalf("round trip: %s", b)
	}
	if !strings.Contains(string(b), `"lost_elements":[2]`) || !strings.Contains(string(b), `"unexpected_elements":[7]`) {
		t.Fatalf("json: %s", b)
	}
	s := res.String()
	for _, want := range []string{"set: INVALID", "lost 1, unexpected 1, stale 0", "lost: 2\n", "unexpected: 7\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
}
