package docstore

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// Stored documents are decoded by load with segmentio/encoding/json; what
// it returns must be exactly what ParseDoc (encoding/json, numbers kept
// as json.Number) returns for the same bytes, plus the version.

var loadSamples = []string{
	`{}`,
	`{"a":1}`,
	`{"n":12345678901234567890123456789,"neg":-0,"f":1.5e300,"g":1E-7,"h":-2.50}`,
	`{"s":"quote \" backslash \\ slash \/ controls \b\f\n\r\t"}`,
	`{"u":"\u00e9 \ud83d\ude00 \u0000 \u2028 \u2029 <>&","raw":"é 😀 中文"}`,
	`{"nested":{"a":[1,[2,[3,{"b":null}]],{"c":true,"d":false}],"e":{}},"arr":[]}`,
	`{"_id":"d1","_created_at":"2026-11-28T08:00:00.123456789Z","grp":12,"age":37,"tags":["x","y"]}`,
	` {"spaces" : [ 1 , 2 ] } `,
	`{"dup":1,"dup":2}`,
	`{"big":[1e400,-1e400,0.000000000000000000000001]}`,
	// Not valid UTF-8, and lone surrogates: both decoders put U+FFFD in.
	"{\"a\":\"\xff\"}",
	"{\"a\xfe\":\"x\xed\xa0\x80y\"}",
	`{"a":"\ud800","b":"\udc00\ud800x"}`,
}

func wantLoaded(t *testing.T, b []byte, version uint64) Doc {
	t.Helper()
	d, err := ParseDoc(b)
	if err != nil {
		t.Fatalf("ParseDoc(%s): %v", b, err)
	}
	d[FieldVersion] = json.Number(strconv.FormatUint(version, 10))
	return d
}

func checkLoad(t *testing.T, b []byte, version uint64) {
	t.Helper()
	want := wantLoaded(t, b, version)
	got, err := load(b, version)
	if err != nil {
		t.Fatalf("load(%s): %v", b, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("load(%s)\n got %#v\nwant %#v", b, got, want)
	}
}

func TestLoadDecodesAsParseDoc(t *testing.T) {
	for i, s := range loadSamples {
		// As written by a caller, and as the store writes it back.
		checkLoad(t, []byte(s), uint64(i+1))
		stored, err := json.Marshal(wantLoaded(t, []byte(s), 0))
		if err != nil {
			t.Fatal(err)
		}
		checkLoad(t, stored, 1<<63+uint64(i))
	}
	// The version replaces a _version the bytes might hold.
	got, err := load([]byte(`{"_version":"x","a":1}`), 42)
	if err != nil || got[FieldVersion] != json.Number("42") {
		t.Fatalf("load kept %v (%v), want _version 42", got[FieldVersion], err)
	}
}

// randomValue returns a random JSON value of at most the given depth.
func randomValue(r *rand.Rand, depth int) any {
	k := r.IntN(8)
	if depth == 0 {
		k = r.IntN(5)
	}
	switch k {
	case 0:
		return nil
	case 1:
		return r.IntN(2) == 0
	case 2:
		switch r.IntN(3) {
		case 0:
			return json.Number(strconv.FormatInt(r.Int64()-r.Int64(), 10))
		case 1:
			return json.Number(strconv.FormatFloat(r.NormFloat64()*1e6, 'g', -1, 64))
		default:
			return json.Number(strconv.FormatFloat(r.ExpFloat64()*1e-9, 'e', -1, 64))
		}
	case 3, 4:
		var sb strings.Builder
		for n := r.IntN(12); n > 0; n-- {
			switch r.IntN(4) {
			case 0:
				sb.WriteRune(rune(r.IntN(0x80)))
			case 1:
				sb.WriteRune(rune(0x80 + r.IntN(0x800)))
			case 2:
				sb.WriteRune(rune(0x10000 + r.IntN(0x10000)))
			default:
				sb.WriteString(`"\<>&`[r.IntN(5):][:1])
			}
		}
		return sb.String()
	case 5, 6:
		m := map[string]any{}
		for n := r.IntN(5); n > 0; n-- {
			m[fmt.Sprint("k", r.IntN(20))] = randomValue(r, depth-1)
		}
		return m
	default:
		a := make([]any, r.IntN(5))
		for i := range a {
			a[i] = randomValue(r, depth-1)
		}
		return a
	}
}

// randomDoc returns document i with up to five random fields, encoded.
func randomDoc(t *testing.T, r *rand.Rand, i int) []byte {
	t.Helper()
	doc := map[string]any{"_id": fmt.Sprint("d", i)}
	for n := r.IntN(6); n > 0; n-- {
		doc[fmt.Sprint("f", r.IntN(10))] = randomValue(r, 4)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLoadDecodesRandomDocumentsAsParseDoc(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		checkLoad(t, randomDoc(t, r, i), uint64(i))
	}
}

func TestLoadRefusesWhatIsNotOneObject(t *testing.T) {
	for _, s := range []string{``, `[1]`, `"s"`, `12`, `null`, `{"a":1} {"b":2}`, `{"a":1} x`, `{"a":`, `{"a":1,}`, `{a:1}`} {
		if d, err := load([]byte(s), 1); err == nil {
			t.Errorf("load(%q) = %v, want an error", s, d)
		}
	}
}

// FuzzLoad holds load to ParseDoc for every input ParseDoc accepts, as
// given and as the store would write it back.
func FuzzLoad(f *testing.F) {
	for _, s := range loadSamples {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDoc(b)
		if err != nil {
			return
		}
		checkLoad(t, b, 7)
		stored, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		checkLoad(t, stored, 7)
	})
}

// EncodeJSON writes what json.Marshal writes, byte for byte, for loaded
// documents: the samples as written and as stored, and random documents,
// inside an answer as the find handler builds it.
func TestEncodeJSONMatchesEncodingJSON(t *testing.T) {
	same := func(v any) {
		t.Helper()
		want, werr := json.Marshal(v)
		got, gerr := EncodeJSON(v)
		if (werr == nil) != (gerr == nil) || string(want) != string(got) {
			t.Fatalf("encoding/json: %s (%v)\nEncodeJSON:    %s (%v)", want, werr, got, gerr)
		}
	}
	var docs []Doc
	for i, s := range append(loadSamples, `{"<&>":"\u2028\u2029<script>&amp;","k\"ey":"\\\/","\u00e9":"\u0001\u001f\u007f"}`) {
		d, err := load([]byte(s), uint64(i))
		if err != nil {
			continue // not a document: load's tests cover the refusal
		}
		same(d)
		docs = append(docs, d)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 2000 {
		d, err := load(randomDoc(t, r, i), r.Uint64())
		if err != nil {
			t.Fatal(err)
		}
		same(d)
		docs = append(docs, d)
	}
	same(map[string]any{"docs": docs, "cursor": "Y3Vyc29y"})
	same(map[string]any{"docs": []Doc{}})
}
