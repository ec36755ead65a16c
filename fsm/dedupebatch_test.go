package fsm_test

import (
	"fmt"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/cairndb/cairn/fsm"
)

// Retries find their own outcome whether the first attempt is in an
// earlier transaction, earlier in the same batch (not yet written), or in
// a batch of records split because it outgrew the value threshold; and
// when every request ID hashes alike, so that apply's index points at
// another ID's record and apply must look through all of them.
func TestDedupeBatchedRetries(t *testing.T) {
	for _, collide := range []bool{false, true} {
		t.Run(fmt.Sprintf("collide=%t", collide), func(t *testing.T) {
			if collide {
				fsm.SetIndexHash(func(string) uint64 { return 7 })
				t.Cleanup(func() { fsm.SetIndexHash(nil) })
			}
			f := openShard(t, openStore(t, t.TempDir()), 1) // on disk: the default value threshold
			id := func(i int) string { return fmt.Sprintf("req-%03d", i) }
			put := func(i int, v string) fsm.Command {
				return fsm.Command{RequestID: id(i), Ops: []fsm.Op{kv(fmt.Sprintf("k%03d", i), v)}}
			}
			// 60 first attempts, 4 per entry, in one ApplyBatch: more records
			// than fit one batch below the threshold. Entry 2 retries one of
			// entry 1's, which is not written yet.
			var logs []*raft.Log
			for e := range 15 {
				var cmds []fsm.Command
				for i := e * 4; i < e*4+4; i++ {
					cmds = append(cmds, put(i, "first"))
				}
				if e == 1 {
					cmds = append(cmds, put(2, "retry in batch"))
				}
				logs = append(logs, cmdLog(uint64(e+1), cmds...))
			}
			resp := f.ApplyBatch(logs)
			versions := map[int]uint64{}
			for e, r := range resp {
				for j, res := range r.([]fsm.Result) {
					if j == 4 {
						if !res.Duplicate || res.Ops[0].Version != versions[2] {
							t.Fatalf("retry in the same batch: %s, want the duplicate of %s", fmtResult(res), fmtVer(versions[2]))
						}
						continue
					}
					if res.Duplicate {
						t.Fatalf("first attempt %d: %s", e*4+j, fmtResult(res))
					}
					versions[e*4+j] = res.Ops[0].Version
				}
			}
			if _, records, _ := dedupeBatches(t, f); records != 60 {
				t.Fatalf("%d batched records, want 60", records)
			}
			if raw := rawKeys(t, f)[f.Generation()]; raw[fsm.SpaceDedupeBat] < 2 {
				t.Fatalf("%d batches: the records did not outgrow one", raw[fsm.SpaceDedupeBat])
			}
			// Retries of every one, newest first, in transactions of their
			// own; then a new ID.
			for i := 59; i >= 0; i-- {
				r := apply(t, f, put(i, "retry"))[0]
				if !r.Duplicate || r.Ops[0].Version != versions[i] {
					t.Fatalf("retry of %s: %s, want the duplicate of %s", id(i), fmtResult(r), fmtVer(versions[i]))
				}
			}
			next := f.Applied() + 1
			if r := apply(t, f, put(60, "new"))[0]; r.Duplicate || r.Ops[0].Version != ver(next, 1) {
				t.Fatalf("new request: %s, want it applied at %d", fmtResult(r), next)
			}
			for i := range 60 {
				want := fmt.Sprintf("k%03d=first@%s", i, fmtVer(versions[i]))
				if got := fmtItems(scanAll(t, f))[i]; got != want {
					t.Fatalf("item %d: %s, want %s", i, got, want)
				}
			}
		})
	}
}
