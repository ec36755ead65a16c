package fsm_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cairndb/cairn/fsm"
)

// fmtTxn renders a transaction's result: the branch, then per op its
// version and, for gets, what was found.
func fmtTxn(r fsm.Result) string {
	if r.Code != fsm.OK {
		return fmtResult(r)
	}
	var b strings.Builder
	if r.Succeeded {
		b.WriteString("then")
	} else {
		b.WriteString("else")
	}
	for _, o := range r.Ops {
		switch {
		case o.Found:
			fmt.Fprintf(&b, " get=%s@%s", o.Value, fmtVer(o.Version))
		case o.Version != 0:
			fmt.Fprintf(&b, " put@%s", fmtVer(o.Version))
		default:
			fmt.Fprintf(&b, " %t", o.Existed)
		}
	}
	if r.Duplicate {
		b.WriteString(" dup")
	}
	return b.String()
}

func txn(ifs []fsm.Compare, then, els []fsm.Op) fsm.Command {
	return fsm.Command{Txn: true, If: ifs, Ops: then, Else: els}
}

func cmpOf(kind fsm.CompareKind, key string, version uint64) fsm.Compare {
	return fsm.Compare{Kind: kind, Key: []byte(key), Version: version}
}

func getOp(k string) fsm.Op { return fsm.Get([]byte(k)) }

// Each comparison kind selects the branch by the state before the
// transaction; the branch's gets see its earlier writes; versions count the
// positions of both branches.
func TestTxnComparisonsSelectTheBranch(t *testing.T) {
	f := memShard(t)
	apply1(t, f, kv("a", "A"), kv("b", "B")) // a = 1.1, b = 1.2

	tests := []struct {
		name string
		ifs  []fsm.Compare
		want string // fmtTxn, the then branch being [get a, put c, get c] and else [get b]
	}{
		{"no comparisons take then", nil, "then get=A@1.1 put@%d.2 get=x@%d.2"},
		{"version equal", []fsm.Compare{cmpOf(fsm.CompareVersion, "a", ver(1, 1))}, "then get=A@1.1 put@%d.2 get=x@%d.2"},
		{"version unequal", []fsm.Compare{cmpOf(fsm.CompareVersion, "a", ver(1, 2))}, "else get=B@1.2"},
		{"version 0 means absent", []fsm.Compare{cmpOf(fsm.CompareVersion, "nope", 0)}, "then get=A@1.1 put@%d.2 get=x@%d.2"},
		{"version less holds", []fsm.Compare{cmpOf(fsm.CompareVersionLt, "a", ver(1, 2))}, "then get=A@1.1 put@%d.2 get=x@%d.2"},
		{"version less fails when equal", []fsm.Compare{cmpOf(fsm.CompareVersionLt, "a", ver(1, 1))}, "else get=B@1.2"},
		{"version greater holds", []fsm.Compare{cmpOf(fsm.CompareVersionGt, "b", ver(1, 1))}, "then get=A@1.1 put@%d.2 get=x@%d.2"},
		{"version greater of absent fails", []fsm.Compare{cmpOf(fsm.CompareVersionGt, "nope", 0)}, "else get=B@1.2"},
		{"exists", []fsm.Compare{cmpOf(fsm.CompareExists, "a", 0)}, "then get=A@1.1 put@%d.2 get=x@%d.2"},
		{"exists of absent", []fsm.Compare{cmpOf(fsm.CompareExists, "nope", 0)}, "else get=B@1.2"},
		{"absent", []fsm.Compare{cmpOf(fsm.CompareAbsent, "nope", 0)}, "then get=A@1.1 put@%d.2 get=x@%d.2"},
		{"absent of present", []fsm.Compare{cmpOf(fsm.CompareAbsent, "b", 0)}, "else get=B@1.2"},
		{"value equal", []fsm.Compare{{Kind: fsm.CompareValue, Key: []byte("b"), Value: []byte("B")}}, "then get=A@1.1 put@%d.2 get=x@%d.2"},
		{"value unequal", []fsm.Compare{{Kind: fsm.CompareValue, Key: []byte("b"), Value: []byte("b")}}, "else get=B@1.2"},
		{"value of absent", []fsm.Compare{{Kind: fsm.CompareValue, Key: []byte("nope")}}, "else get=B@1.2"},
		{"all must hold", []fsm.Compare{cmpOf(fsm.CompareExists, "a", 0), cmpOf(fsm.CompareExists, "nope", 0)}, "else get=B@1.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			apply1(t, f, del("c")) // each case starts without c
			index := f.Applied() + 1
			r := apply(t, f, txn(tt.ifs, []fsm.Op{getOp("a"), kv("c", "x"), getOp("c")}, []fsm.Op{getOp("b")}))[0]
			want := tt.want
			if strings.Contains(want, "%d") {
				want = fmt.Sprintf(want, index, index)
			}
			if got := fmtTxn(r); got != want {
				t.Fatalf("result %s, want %s", got, want)
			}
			if r.Succeeded {
				wantValue(t, f, "c", "x", ver(index, 2))
			} else {
				wantAbsent(t, f, "c")
			}
		})
	}
}

// The else branch writes too; its writes take the positions after the then
// branch's, so versions in an entry never depend on which branch ran.
func TestTxnElseBranchWrites(t *testing.T) {
	f := memShard(t)
	rs := apply(t, f,
		txn([]fsm.Compare{cmpOf(fsm.CompareExists, "k", 0)}, []fsm.Op{kv("t", "1"), kv("t2", "1")}, []fsm.Op{kv("k", "made"), del("gone")}),
		fsm.Command{Ops: []fsm.Op{kv("after", "1")}},
	)
	if got, want := fmtTxn(rs[0]), "else put@1.3 false"; got != want {
		t.Fatalf("txn %s, want %s", got, want)
	}
	if got, want := fmtResult(rs[1]), "{ok 1.5/false dup=false}"; got != want {
		t.Fatalf("next command %s, want %s (positions 1-4 taken by the txn)", got, want)
	}
	wantValue(t, f, "k", "made", ver(1, 3))
	wantAbsent(t, f, "t")
}

// A failed per-op condition inside a branch aborts the whole transaction.
func TestTxnOpConditionAbortsAll(t *testing.T) {
	f := memShard(t)
	apply1(t, f, kv("a", "1"))
	r := apply(t, f, txn(nil, []fsm.Op{kv("b", "1"), kv("a", "2").If(ver(9, 9))}, nil))[0]
	if r.Code != fsm.VersionMismatch || r.FailedOp != 1 || r.Current != ver(1, 1) {
		t.Fatalf("result %s, want a mismatch on op 1", fmtTxn(r))
	}
	wantAbsent(t, f, "b")
	wantValue(t, f, "a", "1", ver(1, 1))
}

// A retried transaction returns its first outcome (branch and writes) and
// applies nothing again; its gets are not repeated.
func TestTxnRetryIsDeduplicated(t *testing.T) {
	f := memShard(t)
	apply1(t, f, kv("a", "1"))
	cmd := txn([]fsm.Compare{cmpOf(fsm.CompareAbsent, "b", 0)}, []fsm.Op{getOp("a"), kv("b", "first")}, []fsm.Op{getOp("b")})
	cmd.RequestID = "txn-1"
	first := apply(t, f, cmd)[0]
	if got, want := fmtTxn(first), "then get=1@1.1 put@2.2"; got != want {
		t.Fatalf("first %s, want %s", got, want)
	}
	again := apply(t, f, cmd)[0]
	if got, want := fmtTxn(again), "then false put@2.2 dup"; got != want {
		t.Fatalf("retry %s, want %s", got, want)
	}
	wantValue(t, f, "b", "first", ver(2, 2))
}

func TestTxnCheckRejects(t *testing.T) {
	s := openStore(t, "")
	big := bytes.Repeat([]byte("k"), 5<<10)
	for _, tt := range []struct {
		name string
		cmd  fsm.Command
		want error
	}{
		{"empty transaction", txn([]fsm.Compare{cmpOf(fsm.CompareExists, "a", 0)}, nil, nil), fsm.ErrInvalid},
		{"get outside a transaction", fsm.Command{Ops: []fsm.Op{getOp("a")}}, fsm.ErrInvalid},
		{"comparison outside a transaction", fsm.Command{If: []fsm.Compare{cmpOf(fsm.CompareExists, "a", 0)}, Ops: []fsm.Op{kv("a", "1")}}, fsm.ErrInvalid},
		{"else outside a transaction", fsm.Command{Ops: []fsm.Op{kv("a", "1")}, Else: []fsm.Op{kv("a", "1")}}, fsm.ErrInvalid},
		{"comparison without a key", txn([]fsm.Compare{cmpOf(fsm.CompareExists, "", 0)}, []fsm.Op{getOp("a")}, nil), fsm.ErrInvalid},
		{"unknown comparison", txn([]fsm.Compare{cmpOf(9, "a", 0)}, []fsm.Op{getOp("a")}, nil), fsm.ErrInvalid},
		{"value on a version comparison", txn([]fsm.Compare{{Kind: fsm.CompareVersion, Key: []byte("a"), Value: []byte("v")}}, []fsm.Op{getOp("a")}, nil), fsm.ErrInvalid},
		{"get with a condition", txn(nil, []fsm.Op{getOp("a").If(1)}, nil), fsm.ErrInvalid},
		{"get without a key", txn(nil, nil, []fsm.Op{getOp("")}), fsm.ErrInvalid},
		{"comparison key too long", txn([]fsm.Compare{{Kind: fsm.CompareExists, Key: big}}, []fsm.Op{getOp("a")}, nil), fsm.ErrTooLarge},
		{"too many ops", txn(nil, deletes(1000), deletes(100)), fsm.ErrTooLarge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.Check(tt.cmd); !errors.Is(err, tt.want) {
				t.Fatalf("Check = %v, want %v", err, tt.want)
			}
		})
	}
	if err := s.Check(txn(nil, nil, []fsm.Op{getOp("only-else")})); err != nil {
		t.Fatalf("a transaction with only an else branch: %v", err)
	}
}

// A transaction that only reads is not deduplicated: a retry under the same
// request ID (the node retries with it when an attempt's outcome was
// unknown) reads afresh instead of returning a duplicate without values.
func TestReadOnlyTxnRetryReadsAgain(t *testing.T) {
	f := memShard(t)
	apply1(t, f, kv("a", "1"))
	cmd := txn(nil, []fsm.Op{getOp("a")}, nil)
	cmd.RequestID = "read-1"
	first := apply(t, f, cmd)[0]
	apply1(t, f, kv("a", "2"))
	again := apply(t, f, cmd)[0]
	if again.Duplicate || !again.Ops[0].Found || string(again.Ops[0].Value) != "2" || string(first.Ops[0].Value) != "1" {
		t.Fatalf("first %s, retry %s; want a fresh read of 2", fmtTxn(first), fmtTxn(again))
	}
}
