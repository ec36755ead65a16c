package fsm_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/cairndb/cairn/fsm"
)

// sameCommands compares decoded commands; nil and empty byte slices are equal
// (the encoding does not tell them apart).
func sameCommands(a, b []fsm.Command) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d commands vs %d", len(a), len(b))
	}
	for i := range a {
		if a[i].RequestID != b[i].RequestID {
			return fmt.Errorf("command %d: request id %q vs %q", i, a[i].RequestID, b[i].RequestID)
		}
		if a[i].Txn != b[i].Txn {
			return fmt.Errorf("command %d: txn %t vs %t", i, a[i].Txn, b[i].Txn)
		}
		if err := sameOps(a[i].Ops, b[i].Ops); err != nil {
			return fmt.Errorf("command %d: %w", i, err)
		}
		if err := sameOps(a[i].Else, b[i].Else); err != nil {
			return fmt.Errorf("command %d else: %w", i, err)
		}
		if err := samePhase(a[i].Phase, b[i].Phase); err != nil {
			return fmt.Errorf("command %d phase: %w", i, err)
		}
		if len(a[i].If) != len(b[i].If) {
			return fmt.Errorf("command %d: %d comparisons vs %d", i, len(a[i].If), len(b[i].If))
		}
		for j, x := range a[i].If {
			y := b[i].If[j]
			if x.Kind != y.Kind || x.Version != y.Version || !bytes.Equal(x.Key, y.Key) || !bytes.Equal(x.Value, y.Value) {
				return fmt.Errorf("command %d comparison %d: %+v vs %+v", i, j, x, y)
			}
		}
	}
	return nil
}

func samePhase(a, b *fsm.Phase) error {
	if (a == nil) != (b == nil) {
		return fmt.Errorf("%v vs %v", a, b)
	}
	if a == nil {
		return nil
	}
	if a.Kind != b.Kind || a.TxnID != b.TxnID || a.RecordShard != b.RecordShard || a.Deadline != b.Deadline ||
		a.Now != b.Now || a.Commit != b.Commit || fmt.Sprint(a.Participants) != fmt.Sprint(b.Participants) ||
		fmt.Sprint(a.Reads) != fmt.Sprint(b.Reads) || fmt.Sprintf("%q", a.Keys) != fmt.Sprintf("%q", b.Keys) ||
		fmt.Sprintf("%+v", a.More) != fmt.Sprintf("%+v", b.More) {
		return fmt.Errorf("%+v vs %+v", a, b)
	}
	return sameOps(a.Writes, b.Writes)
}

func sameOps(a, b []fsm.Op) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d ops vs %d", len(a), len(b))
	}
	for j, x := range a {
		y := b[j]
		if x.Type != y.Type || !bytes.Equal(x.Key, y.Key) || !bytes.Equal(x.Value, y.Value) ||
			(x.IfVersion == nil) != (y.IfVersion == nil) || (x.IfVersion != nil && *x.IfVersion != *y.IfVersion) {
			return fmt.Errorf("op %d: %+v vs %+v", j, x, y)
		}
	}
	return nil
}

func randBytes(r *rand.Rand, max int) []byte {
	b := make([]byte, r.IntN(max+1))
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	return b
}

// randGroup returns well-formed commands: puts carry values, deletes none;
// about one in four is a transaction (comparisons, gets, an else branch).
func randGroup(r *rand.Rand) []fsm.Command {
	cmds := make([]fsm.Command, r.IntN(5))
	for i := range cmds {
		if r.IntN(2) == 0 {
			cmds[i].RequestID = string(randBytes(r, 20))
		}
		if r.IntN(5) == 0 {
			cmds[i].Phase = randPhase(r)
			continue
		}
		txn := r.IntN(4) == 0
		cmds[i].Ops = randOps(r, txn)
		if txn {
			cmds[i].Txn = true
			cmds[i].Else = randOps(r, true)
			cmds[i].If = make([]fsm.Compare, r.IntN(4))
			for j := range cmds[i].If {
				c := fsm.Compare{Kind: fsm.CompareKind(1 + r.IntN(6)), Key: randBytes(r, 30)}
				if c.Kind == fsm.CompareValue {
					c.Value = randBytes(r, 40)
				} else {
					c.Version = r.Uint64()
				}
				cmds[i].If[j] = c
			}
		}
	}
	return cmds
}

func randPhase(r *rand.Rand) *fsm.Phase {
	p := &fsm.Phase{Kind: fsm.PhaseKind(1 + r.IntN(6)), TxnID: string(randBytes(r, 20)), RecordShard: fsm.ShardID(r.Uint64()),
		Deadline: r.Uint64(), Now: r.Uint64(), Commit: r.IntN(2) == 0}
	for range r.IntN(3) {
		p.Participants = append(p.Participants, fsm.ShardID(r.UintN(1000)))
	}
	for range r.IntN(3) {
		p.Reads = append(p.Reads, fsm.Compare{Kind: fsm.CompareVersion, Key: randBytes(r, 20), Version: r.Uint64()})
	}
	p.Writes = randOps(r, false)
	for range r.IntN(3) {
		p.Keys = append(p.Keys, randBytes(r, 20))
	}
	if r.IntN(4) == 0 { // a batched resolve
		for range 1 + r.IntN(3) {
			m := fsm.Resolution{TxnID: string(randBytes(r, 20)), Commit: r.IntN(2) == 0}
			for range r.IntN(3) {
				m.Keys = append(m.Keys, randBytes(r, 20))
			}
			p.More = append(p.More, m)
		}
	}
	return p
}

func randOps(r *rand.Rand, gets bool) []fsm.Op {
	ops := make([]fsm.Op, r.IntN(6))
	for j := range ops {
		var op fsm.Op
		switch {
		case gets && r.IntN(4) == 0:
			ops[j] = fsm.Get(randBytes(r, 30))
			continue
		case r.IntN(3) == 0:
			op = fsm.Delete(randBytes(r, 30))
		default:
			op = fsm.Put(randBytes(r, 30), randBytes(r, 300))
		}
		switch r.IntN(4) {
		case 0:
			op = op.If(0)
		case 1:
			op = op.If(r.Uint64())
		case 2:
			op = op.If(math.MaxUint64)
		}
		ops[j] = op
	}
	return ops
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	fixed := [][]fsm.Command{
		nil,
		{{}},
		{{RequestID: "id", Ops: []fsm.Op{kv("k", "v"), del("k").If(0), kv("", "").If(math.MaxUint64)}}},
		{{Ops: []fsm.Op{fsm.Put([]byte{0, 0xff}, bytes.Repeat([]byte{0xca}, 1<<16))}}},
	}
	for i := 0; i < 500; i++ {
		fixed = append(fixed, randGroup(r))
	}
	for i, cmds := range fixed {
		enc := fsm.EncodeGroup(cmds)
		got, err := fsm.DecodeGroup(enc)
		if err != nil {
			t.Fatalf("group %d: decode: %v", i, err)
		}
		if err := sameCommands(cmds, got); err != nil {
			t.Fatalf("group %d: %v", i, err)
		}
		// Encoding is canonical: decoded commands encode to the same bytes.
		if again := fsm.EncodeGroup(got); !bytes.Equal(again, enc) {
			t.Fatalf("group %d: re-encoding differs", i)
		}
		// Strict prefixes (all of them for the first groups, a sample after)
		// and any extension are rejected.
		for k := 0; k < len(enc); k++ {
			n := k
			if i >= 50 {
				if k == 20 {
					break
				}
				n = r.IntN(len(enc))
			}
			if _, err := fsm.DecodeGroup(enc[:n]); !errors.Is(err, fsm.ErrCorrupt) {
				t.Fatalf("group %d: prefix of %d/%d bytes decoded (err %v)", i, n, len(enc), err)
			}
		}
		if _, err := fsm.DecodeGroup(append(enc, 0)); !errors.Is(err, fsm.ErrCorrupt) {
			t.Fatalf("group %d: trailing byte accepted (err %v)", i, err)
		}
	}
}

func TestDecodeGroupRejects(t *testing.T) {
	valid := fsm.EncodeGroup([]fsm.Command{{Ops: []fsm.Op{kv("k", "v")}}})
	patch := func(at int, b byte) []byte {
		p := append([]byte(nil), valid...)
		p[at] = b
		return p
	}
	// Header (3) + count(1) + id len(1) + op count(1), then the op.
	opAt := 6
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"short envelope", valid[:2]},
		{"bad magic", patch(0, 0)},
		{"unknown type", patch(1, 9)},
		{"unknown version", patch(2, 9)},
		{"unknown op type", patch(opAt, 3)},
		{"zero op type", patch(opAt, 0)},
		{"bad condition flag", patch(opAt+1, 2)},
		{"key longer than input", patch(opAt+2, 100)},
		{"count exceeds input", patch(3, 100)},
		{"overlong varint", append(append([]byte(nil), valid[:3]...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)},
		{"too many writes in one entry", fsm.EncodeGroup([]fsm.Command{
			{Ops: deletes(fsm.MaxOpsPerEntry / 2)},
			{Ops: deletes(fsm.MaxOpsPerEntry/2 + 2)},
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmds, err := fsm.DecodeGroup(tt.data)
			if !errors.Is(err, fsm.ErrCorrupt) || cmds != nil {
				t.Fatalf("DecodeGroup = %v, %v; want ErrCorrupt", cmds, err)
			}
		})
	}
}

func deletes(n int) []fsm.Op {
	ops := make([]fsm.Op, n)
	for i := range ops {
		ops[i] = fsm.Delete(nil)
	}
	return ops
}

func TestDecodeGroupMaxOps(t *testing.T) {
	ops := deletes(fsm.MaxOpsPerEntry)
	cmds, err := fsm.DecodeGroup(fsm.EncodeGroup([]fsm.Command{{Ops: ops[:1000]}, {Ops: ops[1000:]}}))
	if err != nil || len(cmds) != 2 || len(cmds[0].Ops)+len(cmds[1].Ops) != fsm.MaxOpsPerEntry {
		t.Fatalf("entry with MaxOpsPerEntry writes: %d commands, %v", len(cmds), err)
	}
}

func FuzzDecodeGroup(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 20; i++ {
		f.Add(fsm.EncodeGroup(randGroup(r)))
	}
	f.Add(fsm.EncodeGroup(nil))
	f.Add(fsm.EncodeGroup([]fsm.Command{{RequestID: "r", Ops: []fsm.Op{kv("k", "v").If(7), del("d")}}}))
	f.Add(fsm.EncodeGroup([]fsm.Command{{RequestID: "t", Txn: true,
		If:   []fsm.Compare{{Kind: fsm.CompareValue, Key: []byte("a"), Value: []byte("x")}, {Kind: fsm.CompareVersionLt, Key: []byte("b"), Version: 9}},
		Ops:  []fsm.Op{fsm.Get([]byte("a")), kv("b", "1")},
		Else: []fsm.Op{del("a")}}}))
	f.Add(fsm.EncodeGroup([]fsm.Command{{RequestID: "p", Phase: &fsm.Phase{Kind: fsm.PhasePrepare, TxnID: "t1", RecordShard: 3,
		Reads: []fsm.Compare{{Kind: fsm.CompareVersion, Key: []byte("r"), Version: 5}}, Writes: []fsm.Op{kv("w", "v"), del("d")}}}}))
	f.Add(fsm.EncodeGroup([]fsm.Command{{Phase: &fsm.Phase{Kind: fsm.PhaseResolve, TxnID: "t1", Commit: true, Keys: [][]byte{[]byte("w")}}}}))
	f.Add(fsm.EncodeGroup([]fsm.Command{{Phase: &fsm.Phase{Kind: fsm.PhaseResolve, TxnID: "t1", Commit: true, Keys: [][]byte{[]byte("w")},
		More: []fsm.Resolution{{TxnID: "t2", Keys: [][]byte{[]byte("x"), []byte("y")}}, {TxnID: "t3", Commit: true}}}}}))
	f.Add([]byte{})
	f.Add([]byte{0xca, 1, 1})
	f.Add([]byte{0xca, 1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte("garbage that is not a command"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cmds, err := fsm.DecodeGroup(data)
		if err != nil {
			if !errors.Is(err, fsm.ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			if cmds != nil {
				t.Fatalf("commands returned with an error")
			}
			return
		}
		n := 0
		for _, c := range cmds {
			n += len(c.Ops) + len(c.Else)
			if p := c.Phase; p != nil {
				n += len(p.Reads) + len(p.Writes) + len(p.Keys)
				for _, m := range p.More {
					n += len(m.Keys)
				}
				if c.Txn || c.Ops != nil || c.If != nil || c.Else != nil {
					t.Fatalf("decoded a phase with ops of its own")
				}
				if p.Kind < fsm.PhaseBegin || p.Kind > fsm.PhaseCommit {
					t.Fatalf("decoded phase kind %v", p.Kind)
				}
				for _, w := range p.Writes {
					if w.Type != fsm.OpPut && w.Type != fsm.OpDelete {
						t.Fatalf("decoded a phase write of type %v", w.Type)
					}
				}
			}
			if !c.Txn && (c.If != nil || c.Else != nil) {
				t.Fatalf("decoded a plain command with comparisons or an else branch")
			}
			for _, op := range append(c.Ops, c.Else...) {
				if op.Type != fsm.OpPut && op.Type != fsm.OpDelete && (op.Type != fsm.OpGet || !c.Txn) {
					t.Fatalf("decoded op of type %v (txn %t)", op.Type, c.Txn)
				}
				if op.Type == fsm.OpDelete && op.Value != nil {
					t.Fatalf("decoded delete with a value")
				}
			}
		}
		if n > fsm.MaxOpsPerEntry {
			t.Fatalf("decoded %d writes, more than MaxOpsPerEntry", n)
		}
		enc := fsm.EncodeGroup(cmds)
		again, err := fsm.DecodeGroup(enc)
		if err != nil {
			t.Fatalf("re-encoded commands do not decode: %v", err)
		}
		if err := sameCommands(cmds, again); err != nil {
			t.Fatalf("re-encoded commands decode differently: %v", err)
		}
		if len(enc) > len(data) {
			t.Fatalf("re-encoding grew from %d to %d bytes", len(data), len(enc))
		}
	})
}

func TestOpTypeString(t *testing.T) {
	for _, tt := range []struct {
		t    fsm.OpType
		want string
	}{{fsm.OpPut, "put"}, {fsm.OpDelete, "delete"}, {9, "op(9)"}} {
		if got := tt.t.String(); got != tt.want {
			t.Errorf("%d.String() = %q, want %q", uint8(tt.t), got, tt.want)
		}
	}
}
