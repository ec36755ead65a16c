package fsm_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/cairndb/cairn/fsm"
)

func TestPutGetVersions(t *testing.T) {
	f := memShard(t)

	var seen []uint64 // versions of "a", in write order
	r := apply1(t, f, kv("a", "1"))
	if want := (fsm.OpResult{Version: ver(1, 1), Existed: false}); r.Code != fsm.OK || len(r.Ops) != 1 || !reflect.DeepEqual(r.Ops[0], want) {
		t.Fatalf("first put = %s, want ok %v", fmtResult(r), want)
	}
	wantValue(t, f, "a", "1", ver(1, 1))
	seen = append(seen, r.Ops[0].Version)

	r = apply1(t, f, kv("a", "2"))
	if want := (fsm.OpResult{Version: ver(2, 1)}); !reflect.DeepEqual(r.Ops[0], want) {
		t.Fatalf("overwrite = %s, want %v", fmtResult(r), want)
	}
	wantValue(t, f, "a", "2", ver(2, 1))
	seen = append(seen, r.Ops[0].Version)

	r = apply1(t, f, del("a"))
	if want := (fsm.OpResult{Version: 0, Existed: true}); r.Code != fsm.OK || !reflect.DeepEqual(r.Ops[0], want) {
		t.Fatalf("delete = %s, want %v", fmtResult(r), want)
	}
	wantAbsent(t, f, "a")

	r = apply1(t, f, kv("a", "3"))
	if want := (fsm.OpResult{Version: ver(4, 1), Existed: false}); !reflect.DeepEqual(r.Ops[0], want) {
		t.Fatalf("put after delete = %s, want %v", fmtResult(r), want)
	}
	wantValue(t, f, "a", "3", ver(4, 1))
	seen = append(seen, r.Ops[0].Version)
	for i := 1; i < len(seen); i++ {
		if seen[i] <= seen[i-1] {
			t.Fatalf("versions of a not increasing: %v", seen)
		}
	}

	// Positions count writes across the commands of one entry.
	rs := apply(t, f,
		fsm.Command{Ops: []fsm.Op{kv("b", "b"), kv("c", "c")}},
		fsm.Command{Ops: []fsm.Op{kv("d", "d")}},
	)
	if got, want := fmtResult(rs[0])+fmtResult(rs[1]), "{ok 5.1/false 5.2/false dup=false}{ok 5.3/false dup=false}"; got != want {
		t.Fatalf("group results %s, want %s", got, want)
	}
	wantValue(t, f, "b", "b", ver(5, 1))
	wantValue(t, f, "c", "c", ver(5, 2))
	wantValue(t, f, "d", "d", ver(5, 3))

	// Empty keys and values are stored as given.
	r = apply1(t, f, kv("e", ""))
	wantValue(t, f, "e", "", r.Ops[0].Version)
}

func TestConditionalPut(t *testing.T) {
	f := memShard(t)

	r := apply1(t, f, kv("k", "v1").If(0)) // index 1: must be absent
	if r.Err() != nil || r.Ops[0].Version != ver(1, 1) {
		t.Fatalf("create if absent: %s", fmtResult(r))
	}
	v1 := r.Ops[0].Version

	steps := []struct {
		name    string
		op      fsm.Op
		ok      bool
		current uint64 // on mismatch
	}{
		{"create again", kv("k", "x").If(0), false, v1},
		{"wrong version", kv("k", "x").If(v1 + 1), false, v1},
		{"matching version", kv("k", "v2").If(v1), true, 0},          // index 4 -> v(4,1)
		{"stale version", kv("k", "x").If(v1), false, ver(4, 1)},     // index 5
		{"delete", del("k"), true, 0},                                // index 6
		{"stale after delete", kv("k", "x").If(ver(4, 1)), false, 0}, // index 7
		{"recreate", kv("k", "v3"), true, 0},                         // index 8 -> v(8,1)
		{"pre-delete version", kv("k", "x").If(ver(4, 1)), false, ver(8, 1)},
		{"first version", kv("k", "x").If(v1), false, ver(8, 1)},
		{"absent after recreate", kv("k", "x").If(0), false, ver(8, 1)},
		{"current version", kv("k", "v4").If(ver(8, 1)), true, 0},
	}
	for _, s := range steps {
		before, _ := f.Get([]byte("k"))
		idx := f.Applied() + 1
		r := apply1(t, f, s.op)
		if s.ok {
			if r.Code != fsm.OK || r.Err() != nil {
				t.Fatalf("%s: %s, want ok", s.name, fmtResult(r))
			}
			continue
		}
		if r.Code != fsm.VersionMismatch || r.FailedOp != 0 || string(r.Key) != "k" || r.Current != s.current {
			t.Fatalf("%s: %s, want mismatch at op 0 with current %s", s.name, fmtResult(r), fmtVer(s.current))
		}
		if !errors.Is(r.Err(), fsm.ErrVersionMismatch) {
			t.Fatalf("%s: Err() = %v, want ErrVersionMismatch", s.name, r.Err())
		}
		if s.current == 0 {
			wantAbsent(t, f, "k")
		} else {
			wantValue(t, f, "k", string(before.Value), before.Version)
		}
		if f.Applied() != idx {
			t.Fatalf("%s: applied %d, want %d (a failed condition still applies the entry)", s.name, f.Applied(), idx)
		}
	}
	wantValue(t, f, "k", "v4", ver(12, 1))
}

func TestConditionalDelete(t *testing.T) {
	f := memShard(t)
	apply1(t, f, kv("k", "v")) // v(1,1)

	r := apply1(t, f, del("k").If(ver(1, 2)))
	if r.Code != fsm.VersionMismatch || r.Current != ver(1, 1) {
		t.Fatalf("delete with wrong version: %s", fmtResult(r))
	}
	wantValue(t, f, "k", "v", ver(1, 1))

	r = apply1(t, f, del("k").If(0))
	if r.Code != fsm.VersionMismatch || r.Current != ver(1, 1) {
		t.Fatalf("delete if absent of a present key: %s", fmtResult(r))
	}

	r = apply1(t, f, del("k").If(ver(1, 1)))
	if r.Code != fsm.OK || !reflect.DeepEqual(r.Ops[0], (fsm.OpResult{Existed: true})) {
		t.Fatalf("delete with current version: %s", fmtResult(r))
	}
	wantAbsent(t, f, "k")

	r = apply1(t, f, del("k").If(0))
	if r.Code != fsm.OK || !reflect.DeepEqual(r.Ops[0], (fsm.OpResult{Existed: false})) {
		t.Fatalf("delete if absent of an absent key: %s", fmtResult(r))
	}
	r = apply1(t, f, del("k").If(ver(1, 1)))
	if r.Code != fsm.VersionMismatch || r.Current != 0 {
		t.Fatalf("delete of a deleted key with its old version: %s", fmtResult(r))
	}
}

// A delete of an absent key must not write a tombstone: the state after it
// equals the state after a command that writes nothing.
func TestDeleteAbsentWritesNothing(t *testing.T) {
	f, ref := memShard(t), memShard(t)
	for _, g := range []*fsm.FSM{f, ref} {
		apply1(t, g, kv("x", "1"))
	}

	r := apply1(t, f, del("missing"))
	if r.Code != fsm.OK || !reflect.DeepEqual(r.Ops[0], (fsm.OpResult{})) {
		t.Fatalf("delete absent = %s, want ok with Existed=false", fmtResult(r))
	}
	apply(t, ref, fsm.Command{}) // a command with no writes

	if n, err := f.CountVersions(fsm.SpaceData); err != nil || n != 1 {
		t.Fatalf("data versions after deleting an absent key: %d, %v; want 1 (only x)", n, err)
	}
	if a, b := hashOf(t, f), hashOf(t, ref); a != b {
		t.Fatalf("hash after delete of absent key %v, after empty command %v", a, b)
	}
	wantAbsent(t, f, "missing")
	wantAbsent(t, f, "missing")
}

func TestAtomicCommand(t *testing.T) {
	f := memShard(t)
	apply1(t, f, kv("a", "old"), kv("b", "old")) // v(1,1), v(1,2)

	tests := []struct {
		name     string
		ops      []fsm.Op
		failedOp int
		key      string
		current  uint64
	}{
		{"last op fails", []fsm.Op{kv("a", "new"), kv("c", "new"), kv("b", "new").If(99)}, 2, "b", ver(1, 2)},
		{"middle delete fails", []fsm.Op{del("a"), del("b").If(0), kv("c", "new")}, 1, "b", ver(1, 2)},
		{"first op fails", []fsm.Op{kv("c", "new").If(ver(1, 1)), del("a")}, 0, "c", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := apply1(t, f, tt.ops...)
			if r.Code != fsm.VersionMismatch || r.FailedOp != tt.failedOp || string(r.Key) != tt.key || r.Current != tt.current || r.Ops != nil {
				t.Fatalf("result %s, want mismatch at op %d key %q current %s", fmtResult(r), tt.failedOp, tt.key, fmtVer(tt.current))
			}
			var ce *fsm.ConditionError
			if !errors.As(r.Err(), &ce) || ce.Op != tt.failedOp || string(ce.Key) != tt.key || ce.Current != tt.current {
				t.Fatalf("Err() = %#v", r.Err())
			}
			wantValue(t, f, "a", "old", ver(1, 1))
			wantValue(t, f, "b", "old", ver(1, 2))
			wantAbsent(t, f, "c")
		})
	}
	// Nothing was written, not even a tombstone.
	if items := scanAll(t, f); len(items) != 2 {
		t.Fatalf("%d keys after failed commands, want 2", len(items))
	}
	if n, _ := f.CountVersions(fsm.SpaceData); n != 2 {
		t.Fatalf("%d data versions after failed commands, want 2", n)
	}
}

func TestConditionsSeeEarlierOpsOfCommand(t *testing.T) {
	f := memShard(t)
	apply1(t, f, kv("gone", "x")) // index 1

	tests := []struct {
		name string
		ops  []fsm.Op
		want string // fmtResult
		// keys expected afterwards: key -> value ("" = absent)
		after map[string]string
	}{
		{
			name:  "put then put if its version",
			ops:   []fsm.Op{kv("k", "1"), kv("k", "2").If(ver(2, 1))},
			want:  "{ok 2.1/false 2.2/false dup=false}",
			after: map[string]string{"k": "2"},
		},
		{
			name:  "delete then create if absent",
			ops:   []fsm.Op{del("gone"), kv("gone", "again").If(0)},
			want:  "{ok 0.0/true 3.2/false dup=false}",
			after: map[string]string{"gone": "again"},
		},
		{
			name:  "put then delete if its version",
			ops:   []fsm.Op{kv("n", "1"), del("n").If(ver(4, 1))},
			want:  "{ok 4.1/false 0.0/true dup=false}",
			after: map[string]string{"n": ""},
		},
		{
			name:  "put then create if absent fails",
			ops:   []fsm.Op{kv("m", "1"), kv("m", "2").If(0)},
			want:  `{mismatch op=1 key="m" cur=5.1 dup=false}`,
			after: map[string]string{"m": ""},
		},
		{
			name:  "condition on the pre-command version fails after a put",
			ops:   []fsm.Op{kv("k", "3"), kv("k", "4").If(ver(2, 2))},
			want:  `{mismatch op=1 key="k" cur=6.1 dup=false}`,
			after: map[string]string{"k": "2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fmtResult(apply1(t, f, tt.ops...)); got != tt.want {
				t.Fatalf("result %s, want %s", got, tt.want)
			}
			for k, v := range tt.after {
				if v == "" {
					wantAbsent(t, f, k)
				} else if got := get(t, f, k); string(got.Value) != v {
					t.Fatalf("%s = %q, want %q", k, got.Value, v)
				}
			}
		})
	}
}

func TestGroupCommandsApplyIndependently(t *testing.T) {
	f := memShard(t)
	apply1(t, f, kv("x", "0")) // v(1,1)

	rs := apply(t, f,
		fsm.Command{Ops: []fsm.Op{kv("a", "1")}},                             // pos 1
		fsm.Command{Ops: []fsm.Op{kv("b", "1"), kv("x", "1").If(ver(9, 9))}}, // pos 2,3: fails
		fsm.Command{Ops: []fsm.Op{kv("c", "1"), kv("a", "2").If(ver(2, 1))}}, // pos 4,5: sees command 1
		fsm.Command{Ops: []fsm.Op{del("x").If(ver(1, 1))}},                   // pos 6
	)
	want := []string{
		"{ok 2.1/false dup=false}",
		`{mismatch op=1 key="x" cur=1.1 dup=false}`,
		"{ok 2.4/false 2.5/false dup=false}",
		"{ok 0.0/true dup=false}",
	}
	for i := range want {
		if got := fmtResult(rs[i]); got != want[i] {
			t.Errorf("command %d: %s, want %s", i, got, want[i])
		}
	}
	wantValue(t, f, "a", "2", ver(2, 5))
	wantAbsent(t, f, "b")
	wantValue(t, f, "c", "1", ver(2, 4))
	wantAbsent(t, f, "x")
	if rs[1].Err() == nil || rs[0].Err() != nil {
		t.Fatalf("Err(): %v, %v", rs[0].Err(), rs[1].Err())
	}
}

func TestRequestIDDedupe(t *testing.T) {
	f := memShard(t)

	first := apply(t, f, fsm.Command{RequestID: "r1", Ops: []fsm.Op{kv("a", "1")}})[0] // index 1
	if fmtResult(first) != "{ok 1.1/false dup=false}" {
		t.Fatalf("first: %s", fmtResult(first))
	}
	// A retry in a later entry, even with other writes, returns the first outcome.
	apply1(t, f, kv("other", "x")) // index 2
	commands := f.AppliedCommands()
	retry := apply(t, f, fsm.Command{RequestID: "r1", Ops: []fsm.Op{kv("a", "2"), kv("b", "2")}})[0]
	if !retry.Duplicate || fmtResult(retry) != "{ok 1.1/false dup=true}" {
		t.Fatalf("retry: %s, want the first outcome marked duplicate", fmtResult(retry))
	}
	wantValue(t, f, "a", "1", ver(1, 1))
	wantAbsent(t, f, "b")
	if got := f.AppliedCommands(); got != commands+1 {
		t.Fatalf("applied commands %d, want %d", got, commands+1)
	}

	// A failed command is remembered too, and not re-evaluated on retry
	// even though its condition would now hold.
	failed := apply(t, f, fsm.Command{RequestID: "r2", Ops: []fsm.Op{kv("c", "1").If(ver(1, 1))}})[0]
	if failed.Code != fsm.VersionMismatch || failed.Current != 0 {
		t.Fatalf("r2: %s", fmtResult(failed))
	}
	apply1(t, f, kv("c", "0")) // c now at v(5,1)
	again := apply(t, f, fsm.Command{RequestID: "r2", Ops: []fsm.Op{kv("c", "1").If(ver(5, 1))}})[0]
	if !again.Duplicate || again.Code != fsm.VersionMismatch || string(again.Key) != "c" || again.Current != 0 {
		t.Fatalf("r2 retry: %s, want the first mismatch marked duplicate", fmtResult(again))
	}
	if !errors.Is(again.Err(), fsm.ErrVersionMismatch) {
		t.Fatalf("r2 retry Err() = %v", again.Err())
	}
	wantValue(t, f, "c", "0", ver(5, 1))

	// The same ID twice in one entry: the second is a duplicate of the first,
	// and an unrelated command between them is unaffected.
	rs := apply(t, f,
		fsm.Command{RequestID: "r3", Ops: []fsm.Op{kv("d", "1")}},
		fsm.Command{Ops: []fsm.Op{kv("e", "1")}},
		fsm.Command{RequestID: "r3", Ops: []fsm.Op{kv("d", "2")}},
	)
	if got := fmtResult(rs[0]) + fmtResult(rs[1]) + fmtResult(rs[2]); got != "{ok 7.1/false dup=false}{ok 7.2/false dup=false}{ok 7.1/false dup=true}" {
		t.Fatalf("same id twice in one entry: %s", got)
	}
	wantValue(t, f, "d", "1", ver(7, 1))
	wantValue(t, f, "e", "1", ver(7, 2))

	// A record is not consumed by a retry.
	if r := apply(t, f, fsm.Command{RequestID: "r1", Ops: []fsm.Op{del("a")}})[0]; !r.Duplicate {
		t.Fatalf("third r1: %s", fmtResult(r))
	}
	wantValue(t, f, "a", "1", ver(1, 1))
}

func TestResultErr(t *testing.T) {
	if err := (fsm.Result{Code: fsm.OK}).Err(); err != nil {
		t.Fatalf("OK.Err() = %v", err)
	}
	r := fsm.Result{Code: fsm.VersionMismatch, FailedOp: 2, Key: []byte("key"), Current: ver(3, 4)}
	err := fmt.Errorf("propose: %w", r.Err())
	if !errors.Is(err, fsm.ErrVersionMismatch) {
		t.Fatalf("errors.Is(%v, ErrVersionMismatch) = false", err)
	}
	if errors.Is(err, fsm.ErrNotFound) {
		t.Fatalf("mismatch matches ErrNotFound")
	}
	var ce *fsm.ConditionError
	if !errors.As(err, &ce) || ce.Op != 2 || string(ce.Key) != "key" || ce.Current != ver(3, 4) {
		t.Fatalf("errors.As: %#v", ce)
	}
	if msg := err.Error(); !strings.Contains(msg, `"key"`) || !strings.Contains(msg, "op 2") {
		t.Fatalf("message %q does not name the op and key", msg)
	}
}

func TestConfigurationEntriesAdvanceApplied(t *testing.T) {
	f := memShard(t)
	apply1(t, f, kv("a", "1"))
	h := hashOf(t, f)
	resp := f.ApplyBatch([]*raft.Log{confLog(2), confLog(3)})
	if resp[0] != nil || resp[1] != nil {
		t.Fatalf("responses for configuration entries: %v", resp)
	}
	if f.Applied() != 3 {
		t.Fatalf("applied %d after configuration entries, want 3", f.Applied())
	}
	if got := hashOf(t, f); got.Index != 3 || got.Sum != h.Sum {
		t.Fatalf("hash %v, want the data hash %v at index 3", got, h)
	}
	// Versions follow the raft index, gaps included.
	if r := apply1(t, f, kv("a", "2")); r.Ops[0].Version != ver(4, 1) {
		t.Fatalf("put after configuration entries: %s", fmtResult(r))
	}
}

func TestWaitApplied(t *testing.T) {
	f := memShard(t)
	changed := f.AppliedChanged()
	done := make(chan error, 1)
	go func() { done <- f.WaitApplied(t.Context(), 2) }()

	apply1(t, f, kv("a", "1"))
	select {
	case <-changed:
	default:
		t.Fatal("AppliedChanged not closed after an apply")
	}
	apply1(t, f, kv("a", "2"))
	if err := <-done; err != nil {
		t.Fatalf("WaitApplied(2): %v", err)
	}
	if err := f.WaitApplied(t.Context(), 1); err != nil {
		t.Fatalf("WaitApplied of a past index: %v", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := f.WaitApplied(ctx, 3); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitApplied(3) with a cancelled context = %v, want context.Canceled", err)
	}
}

// An entry that cannot be decoded stops the replica instead of diverging,
// and nothing of its batch becomes visible.
func TestUndecodableEntryPanics(t *testing.T) {
	valid := fsm.EncodeGroup([]fsm.Command{{Ops: []fsm.Op{kv("k", "v")}}})
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"garbage", []byte("not a command")},
		{"unknown type", append([]byte{valid[0], 0x7f}, valid[2:]...)},
		{"unknown version", append([]byte{valid[0], valid[1], 0x7f}, valid[3:]...)},
		{"truncated", valid[:len(valid)-1]},
		{"trailing bytes", append(append([]byte(nil), valid...), 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := memShard(t)
			apply1(t, f, kv("before", "1"))
			h := hashOf(t, f)
			logs := []*raft.Log{
				cmdLog(2, fsm.Command{Ops: []fsm.Op{kv("same-batch", "1")}}),
				{Index: 3, Term: 1, Type: raft.LogCommand, Data: tt.data},
			}
			msg := func() (msg string) {
				defer func() {
					if r := recover(); r != nil {
						msg = fmt.Sprint(r)
					}
				}()
				f.ApplyBatch(logs)
				return ""
			}()
			if !strings.Contains(msg, "undecodable entry at index 3") {
				t.Fatalf("ApplyBatch did not panic on the undecodable entry (recovered %q)", msg)
			}
			if f.Applied() != 1 || hashOf(t, f) != h {
				t.Fatalf("state moved: applied %d", f.Applied())
			}
			wantAbsent(t, f, "same-batch")
		})
	}
}
