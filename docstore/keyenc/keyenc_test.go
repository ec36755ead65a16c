package keyenc_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/cairndb/cairn/docstore/keyenc"
)

// randValue builds a random JSON value, nested up to depth, drawing from
// small pools so that equal and near-equal values are common.
func randValue(r *rand.Rand, depth int) any {
	k := r.IntN(9)
	if depth <= 0 && k >= 7 {
		k = r.IntN(7)
	}
	switch k {
	case 0:
		return nil
	case 1:
		return r.IntN(2) == 0
	case 2:
		return float64(r.IntN(7) - 3)
	case 3:
		return []float64{-1e300, -2.5, -0.5, 0.25, 1.5, 1e-300, 3e15, math.MaxFloat64, -math.SmallestNonzeroFloat64}[r.IntN(9)]
	case 4, 5:
		return []string{"", "a", "ab", "a\x00", "a\x00b", "a\x01", "b", "é", "\x00", "zz"}[r.IntN(10)]
	case 6:
		return float64(r.IntN(3))
	case 7:
		n := r.IntN(4)
		a := make([]any, n)
		for i := range a {
			a[i] = randValue(r, depth-1)
		}
		return a
	default:
		m := map[string]any{}
		for range r.IntN(4) {
			m[[]string{"", "a", "b", "a\x00", "ab"}[r.IntN(5)]] = randValue(r, depth-1)
		}
		return m
	}
}

func sign(c int) int {
	switch {
	case c < 0:
		return -1
	case c > 0:
		return 1
	}
	return 0
}

func mustEncode(t testing.TB, v any) []byte {
	t.Helper()
	b, err := keyenc.Encode(v)
	if err != nil {
		t.Fatalf("encode %#v: %v", v, err)
	}
	return b
}

// For random pairs: bytes.Compare of the encodings agrees with Compare,
// also with a further value appended to each (compound keys), and every
// encoding decodes back to its value.
func TestOrderAndRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 200000 {
		a, b := randValue(r, 3), randValue(r, 3)
		ea, eb := mustEncode(t, a), mustEncode(t, b)
		want := sign(keyenc.Compare(a, b))
		if got := sign(bytes.Compare(ea, eb)); got != want {
			t.Fatalf("pair %d: %#v vs %#v: bytes %d, Compare %d\n%x\n%x", i, a, b, got, want, ea, eb)
		}
		if want != 0 {
			// A suffix must not change the order of different values.
			sa, sb := mustEncode(t, randValue(r, 1)), mustEncode(t, randValue(r, 1))
			if got := sign(bytes.Compare(append(ea, sa...), append(eb, sb...))); got != want {
				t.Fatalf("pair %d with suffixes: %#v vs %#v: %d, want %d", i, a, b, got, want)
			}
		}
		if want == 0 && !bytes.Equal(ea, eb) {
			t.Fatalf("equal values %#v and %#v encode differently", a, b)
		}
		v, rest, err := keyenc.Decode(append(ea, 0x99))
		if err != nil || !reflect.DeepEqual(v, canonical(a)) || !bytes.Equal(rest, []byte{0x99}) {
			t.Fatalf("decode of %#v: %#v rest %x, %v", a, v, rest, err)
		}
	}
}

// canonical is v as Decode returns it: empty arrays non-nil.
func canonical(v any) any {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = canonical(x[i])
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = canonical(e)
		}
		return out
	}
	return v
}

func TestTypeOrderAndNumbers(t *testing.T) {
	ordered := []any{nil, false, true, -1e308, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 1e308, "", "\x00", "a", "a\x00", "b", []any{}, []any{nil}, []any{1.0}, []any{1.0, 2.0}, []any{2.0}, map[string]any{}, map[string]any{"a": 1.0}, map[string]any{"a": 2.0}, map[string]any{"b": 0.0}}
	var prev []byte
	for i, v := range ordered {
		e := mustEncode(t, v)
		if i > 0 && bytes.Compare(prev, e) >= 0 {
			t.Fatalf("%#v does not sort after %#v", v, ordered[i-1])
		}
		prev = e
	}
	// 1, 1.0, 1e0 and json numbers are one number; -0 is 0.
	one := mustEncode(t, 1.0)
	for _, v := range []any{1, int64(1), json.Number("1"), json.Number("1.0"), json.Number("1e0"), json.Number("10e-1")} {
		if !bytes.Equal(mustEncode(t, v), one) {
			t.Fatalf("%#v encodes unlike 1", v)
		}
	}
	if !bytes.Equal(mustEncode(t, math.Copysign(0, -1)), mustEncode(t, 0.0)) {
		t.Fatal("-0 and 0 differ")
	}
}

func TestRejects(t *testing.T) {
	for _, v := range []any{math.NaN(), math.Inf(1), []any{math.Inf(-1)}, map[string]any{"a": struct{}{}}, struct{}{}, json.Number("x")} {
		if _, err := keyenc.Encode(v); err == nil {
			t.Fatalf("%#v encoded", v)
		}
	}
	for _, b := range [][]byte{nil, {0x20, 1}, {0x30, 'a'}, {0x30, 0, 7}, {0x40}, {0x50, 0x30, 'b', 0, 1, 0x05, 0x30, 'a', 0, 1, 0x05, 0}, {0x50, 'a', 0, 1, 0x05, 0}, {0x77}} {
		if _, _, err := keyenc.Decode(b); !errors.Is(err, keyenc.ErrCorrupt) {
			t.Fatalf("decode %x: %v", b, err)
		}
	}
	deep := strings.Repeat("\x40", 1000)
	if _, _, err := keyenc.Decode([]byte(deep)); !errors.Is(err, keyenc.ErrCorrupt) {
		t.Fatalf("deep: %v", err)
	}
}

// FuzzOrder: any two JSON documents encode in Compare's order and decode
// back; any bytes decode without panicking.
func FuzzOrder(f *testing.F) {
	for _, s := range [][2]string{{`1`, `1.0`}, {`"a"`, `"a\u0000"`}, {`[1,[2]]`, `[1,{"a":null}]`}, {`{"a":{}}`, `{"a":{"\u0000":1},"b":2}`}, {`null`, `false`}, {`-0.0`, `0`}} {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, ja, jb []byte) {
		_, _, _ = keyenc.Decode(ja) // garbage must not panic
		var a, b any
		if json.Unmarshal(ja, &a) != nil || json.Unmarshal(jb, &b) != nil {
			return
		}
		ea, erra := keyenc.Encode(a)
		eb, errb := keyenc.Encode(b)
		if erra != nil || errb != nil {
			return // numbers out of float64 range
		}
		if got, want := sign(bytes.Compare(ea, eb)), sign(keyenc.Compare(a, b)); got != want {
			t.Fatalf("%s vs %s: bytes %d, Compare %d", ja, jb, got, want)
		}
		v, rest, err := keyenc.Decode(ea)
		if err != nil || len(rest) != 0 || keyenc.Compare(v, a) != 0 {
			t.Fatalf("round trip of %s: %#v %x %v", ja, v, rest, err)
		}
		if !bytes.Equal(mustEncode(t, v), ea) {
			t.Fatalf("re-encoding of %s differs", ja)
		}
	})
}
