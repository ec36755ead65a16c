package load

import (
	"bytes"
	"encoding/hex"
	"math"
	"slices"
	"strings"
	"testing"
)

// ops returns the first n operations of a generator, values copied.
func ops(g *Gen, n int) []Op {
	out := make([]Op, n)
	for i := range out {
		op := g.Next()
		op.Value = bytes.Clone(op.Value)
		out[i] = op
	}
	return out
}

func equalOps(a, b []Op) bool {
	return slices.EqualFunc(a, b, func(x, y Op) bool {
		return x.Kind == y.Kind && x.Key == y.Key && x.Key2 == y.Key2 && bytes.Equal(x.Value, y.Value) && x.Stale == y.Stale && x.Limit == y.Limit &&
			x.Doc == y.Doc && x.Group == y.Group
	})
}

func TestGenDeterministic(t *testing.T) {
	for _, w := range Workloads {
		t.Run(string(w), func(t *testing.T) {
			a := ops(NewGen(w, 7, 3, 1000, 256), 500)
			b := ops(NewGen(w, 7, 3, 1000, 256), 500)
			if !equalOps(a, b) {
				t.Fatal("same seed and client gave different operations")
			}
			if equalOps(a, ops(NewGen(w, 8, 3, 1000, 256), 500)) {
				t.Error("another seed gave the same operations")
			}
			if equalOps(a, ops(NewGen(w, 7, 4, 1000, 256), 500)) {
				t.Error("another client gave the same operations")
			}
		})
	}
}

// TestGenGolden pins the stream: a change here changes every benchmark's
// keys and values, which makes old and new results incomparable.
func TestGenGolden(t *testing.T) {
	g := NewGen(Mix, 1, 0, 10000, 8)
	var keys []string
	for _, op := range ops(g, 6) {
		keys = append(keys, op.Key)
	}
	want := []string{"bench/00005982", "bench/00007153", "bench/00007015", "bench/00008106", "bench/00003060", "bench/00004990"}
	if !slices.Equal(keys, want) {
		t.Errorf("mix seed 1 client 0 keys = %q, want %q", keys, want)
	}
	op := NewGen(Put, 1, 3, 10000, 8).Next()
	if op.Kind != KindPut || op.Key != "bench/00005676" || hex.EncodeToString(op.Value) != "65ce6e74dc6a81b1" {
		t.Errorf("put seed 1 client 3 = %v %s %x, want put bench/00005676 65ce6e74dc6a81b1", op.Kind, op.Key, op.Value)
	}
	if v := hex.EncodeToString(PreloadValue(1, 7, 8)); v != "4618998e35f3b572" {
		t.Errorf("PreloadValue(1, 7, 8) = %s, want 4618998e35f3b572", v)
	}
}

func TestGenWorkloads(t *testing.T) {
	tests := []struct {
		w         Workload
		kinds     map[Kind]float64 // expected share of each kind
		stale     bool
		limit     int
		valueSize int
	}{
		{Put, map[Kind]float64{KindPut: 1}, false, 0, 256},
		{Get, map[Kind]float64{KindGet: 1}, false, 0, 0},
		{StaleGet, map[Kind]float64{KindGet: 1}, true, 0, 0},
		{Mix, map[Kind]float64{KindGet: 0.9, KindPut: 0.1}, false, 0, 256},
		{Scan, map[Kind]float64{KindScan: 1}, false, ScanLimit, 0},
		{Txn, map[Kind]float64{KindTxn: 1}, false, 0, 256},
	}
	const n = 100000
	for _, tt := range tests {
		t.Run(string(tt.w), func(t *testing.T) {
			g := NewGen(tt.w, 1, 0, 10, 256)
			count := map[Kind]int{}
			keys, second := map[string]int{}, map[string]int{}
			for range n {
				op := g.Next()
				count[op.Kind]++
				keys[op.Key]++
				if op.Stale != tt.stale || op.Limit != tt.limit {
					t.Fatalf("%v: stale %v limit %d, want %v %d", op.Kind, op.Stale, op.Limit, tt.stale, tt.limit)
				}
				if (op.Kind == KindPut || op.Kind == KindTxn) && len(op.Value) != tt.valueSize {
					t.Fatalf("%v value of %d bytes, want %d", op.Kind, len(op.Value), tt.valueSize)
				}
				if op.Kind == KindTxn {
					if op.Key2 == op.Key || op.Key2 == "" {
						t.Fatalf("transaction keys %q and %q, want two distinct keys", op.Key, op.Key2)
					}
					second[op.Key2]++
				} else if op.Key2 != "" {
					t.Fatalf("%v with a second key %q", op.Kind, op.Key2)
				}
			}
			for k, share := range tt.kinds {
				if got := float64(count[k]) / n; math.Abs(got-share) > 0.01 {
					t.Errorf("%v share %.3f, want %.2f", k, got, share)
				}
			}
			if len(keys) != 10 {
				t.Fatalf("%d distinct keys over 10, want 10", len(keys))
			}
			for k, c := range keys { // uniform: each of 10 keys about n/10 times
				if math.Abs(float64(c)-n/10) > 0.05*n/10 {
					t.Errorf("key %s drawn %d times, want about %d", k, c, n/10)
				}
			}
			if tt.w == Txn { // the second key uniform too
				if len(second) != 10 {
					t.Fatalf("%d distinct second keys over 10, want 10", len(second))
				}
				for k, c := range second {
					if math.Abs(float64(c)-n/10) > 0.05*n/10 {
						t.Errorf("second key %s drawn %d times, want about %d", k, c, n/10)
					}
				}
			}
		})
	}
}

// Document inserts: IDs unique, salted and the client's own; grp uniform
// over the keys' groups; age in [0, 100); a hex pad of the value size.
// Finds: grp uniform.
func TestGenDocuments(t *testing.T) {
	const n, keys, groups = 50000, 100, 100 / DocsPerGroup
	g := NewGen(DocInsert, 1, 3, keys, 20)
	g.salt = "s-"
	ids, byGroup := map[string]bool{}, map[int]int{}
	for range n {
		op := g.Next()
		d := op.Doc
		if op.Kind != KindDocInsert || ids[d.ID] || !strings.HasPrefix(d.ID, "s-c3-") {
			t.Fatalf("%v %q: want a document insert with a new ID starting s-c3-", op.Kind, d.ID)
		}
		ids[d.ID] = true
		if d.Age < 0 || d.Age >= 100 || len(d.Pad) != 20 {
			t.Fatalf("%+v: age outside [0, 100) or a pad not of 20 characters", d)
		}
		if _, err := hex.DecodeString(d.Pad); err != nil {
			t.Fatalf("pad %q is not hex", d.Pad)
		}
		byGroup[d.Group]++
	}
	f := NewGen(DocFind, 1, 3, keys, 20)
	finds := map[int]int{}
	for range n {
		op := f.Next()
		if op.Kind != KindDocFind || op.Doc != (Doc{}) {
			t.Fatalf("%v %+v: want a find", op.Kind, op.Doc)
		}
		finds[op.Group]++
	}
	for name, m := range map[string]map[int]int{"insert": byGroup, "find": finds} {
		if len(m) != groups {
			t.Fatalf("%s: %d groups, want %d", name, len(m), groups)
		}
		for grp, c := range m {
			if math.Abs(float64(c)-n/groups) > 0.05*n/groups {
				t.Errorf("%s: grp %d drawn %d times, want about %d", name, grp, c, n/groups)
			}
		}
	}
}

func TestPutValuesVary(t *testing.T) {
	g := NewGen(Put, 1, 0, 10, 256)
	a := bytes.Clone(g.Next().Value)
	b := g.Next().Value
	if bytes.Equal(a, b) || bytes.Equal(a, make([]byte, 256)) {
		t.Error("consecutive put values are equal or zero")
	}
	if !bytes.Equal(PreloadValue(1, 5, 256), PreloadValue(1, 5, 256)) || bytes.Equal(PreloadValue(1, 5, 256), PreloadValue(1, 6, 256)) {
		t.Error("PreloadValue is not a function of (seed, key) that differs between keys")
	}
	if n := len(PreloadValue(1, 5, 13)); n != 13 {
		t.Errorf("PreloadValue of 13 bytes has %d", n)
	}
}

func TestParseWorkload(t *testing.T) {
	for _, w := range Workloads {
		if got, err := ParseWorkload(string(w)); err != nil || got != w {
			t.Errorf("ParseWorkload(%q) = %q, %v", w, got, err)
		}
	}
	if _, err := ParseWorkload("delete"); err == nil {
		t.Error("ParseWorkload(delete) did not fail")
	}
}

func TestKey(t *testing.T) {
	if k := Key(42); k != "bench/00000042" {
		t.Errorf("Key(42) = %q", k)
	}
	if !(Key(99999999) < KeyPrefixEnd) || !(KeyPrefix < Key(0)) {
		t.Error("keys are not inside [KeyPrefix, KeyPrefixEnd)")
	}
}
