package jepsen

import (
	"testing"
	"time"

	"github.com/cairndb/cairn/jepsen/history"
)

// Operations are counted in the fault window they were invoked in, and in
// "none" outside every window; unfinished ones count as info.
func TestSummarizeCountsByWindow(t *testing.T) {
	ops := []history.Op{
		{Time: 0, Process: 0, Type: history.Invoke, F: "put"},
		{Time: 1, Process: 0, Type: history.OK, F: "put"},
		{Time: 10, Process: history.NemesisProcess, Type: history.Info, F: "start-partition", Desc: "isolate n1"},
		{Time: 11, Process: 0, Type: history.Invoke, F: "get"},
		{Time: 12, Process: 1, Type: history.Invoke, F: "put"},
		{Time: 13, Process: 0, Type: history.Fail, F: "get"},
		{Time: 14, Process: 1, Type: history.Info, F: "put"},
		{Time: 15, Process: 2, Type: history.Invoke, F: "put"}, // never completes
		{Time: 20, Process: history.NemesisProcess, Type: history.Info, F: "stop-partition", Desc: "healed"},
		{Time: 21, Process: 3, Type: history.Invoke, F: "get"},
		{Time: 22, Process: 3, Type: history.OK, F: "get"},
	}
	for i := range ops {
		ops[i].Index = i
	}
	r := &Report{ClientTime: 2 * time.Second}
	r.summarize(ops)
	if r.Counts != (Counts{OK: 2, Fail: 1, Info: 2}) {
		t.Fatalf("counts %+v", r.Counts)
	}
	if len(r.Windows) != 2 {
		t.Fatalf("windows %+v", r.Windows)
	}
	p, none := r.Windows[0], r.Windows[1]
	if p.F != "partition" || p.Desc != "isolate n1" || p.Start != 10 || p.End != 20 || p.Counts != (Counts{Fail: 1, Info: 2}) {
		t.Fatalf("partition window %+v", p)
	}
	if none.F != "none" || none.Counts != (Counts{OK: 2}) {
		t.Fatalf("healthy window %+v", none)
	}
	if r.OKPerSecond != 1 {
		t.Fatalf("ok/s %v", r.OKPerSecond)
	}
}
