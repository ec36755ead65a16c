package jepsen

import (
	"strings"
	"testing"

	"github.com/cairndb/cairn/jepsen/history"
)

// The unique checker flags two acknowledged inserts of one value, a value
// visible twice, a visible document whose insert failed, and an
// acknowledged insert that is not visible; a clean history passes.
func TestCheckUnique(t *testing.T) {
	type ins struct {
		id, v int
		t     history.Type
	}
	build := func(inserts []ins, visible [][2]int) []history.Op {
		var ops []history.Op
		idx := 0
		add := func(op history.Op) {
			op.Index = idx
			idx++
			ops = append(ops, op)
		}
		for p, in := range inserts {
			add(history.Op{Process: p, Type: history.Invoke, F: "unique-insert", Element: history.Int(in.id), Value: history.Int(in.v)})
			add(history.Op{Process: p, Type: in.t, F: "unique-insert", Element: history.Int(in.id), Value: history.Int(in.v)})
		}
		read := history.Op{Process: 1000, Type: history.OK, F: "unique-final-read"}
		for _, d := range visible {
			read.Elements = append(read.Elements, d[0])
			read.Values = append(read.Values, d[1])
		}
		add(history.Op{Process: 1000, Type: history.Invoke, F: "unique-final-read"})
		add(read)
		return ops
	}
	ok := build([]ins{{1, 7, history.OK}, {2, 7, history.Fail}, {3, 8, history.Info}}, [][2]int{{1, 7}, {3, 8}})
	if r := checkUnique(ok); !r.Valid || r.Acked != 1 || r.Values != 2 || r.Visible != 2 {
		t.Fatalf("clean history: %s", r)
	}
	for name, tc := range map[string]struct {
		ops  []history.Op
		want string
	}{
		"two acknowledged": {build([]ins{{1, 7, history.OK}, {2, 7, history.OK}}, [][2]int{{1, 7}}), "2 inserts acknowledged"},
		"visible twice":    {build([]ins{{1, 7, history.Info}, {2, 7, history.Info}}, [][2]int{{1, 7}, {2, 7}}), "held by 2 documents"},
		"failed visible":   {build([]ins{{1, 7, history.Fail}}, [][2]int{{1, 7}}), "failed insert is visible"},
		"acked invisible":  {build([]ins{{1, 7, history.OK}}, nil), "acknowledged for"},
	} {
		r := checkUnique(tc.ops)
		if r.Valid || !strings.Contains(r.String(), tc.want) {
			t.Errorf("%s: %s, want a problem containing %q", name, r, tc.want)
		}
	}
}
