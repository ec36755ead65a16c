package jsonx

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestDecodeTakesOneValue(t *testing.T) {
	for _, s := range []string{`{"a":1}`, " \t\r\n{\"a\":1} \n", `{"a":1}` + "\n\n"} {
		var v any
		if err := Decode([]byte(s), &v, Options{Numbers: true}); err != nil {
			t.Fatalf("Decode(%q): %v", s, err)
		}
		if want := map[string]any{"a": json.Number("1")}; !reflect.DeepEqual(v, want) {
			t.Fatalf("Decode(%q) = %#v, want %#v", s, v, want)
		}
	}
}

func TestDecodeRefusesWhatFollows(t *testing.T) {
	for _, s := range []string{`{"a":1}]`, `{"a":1}}`, `{"a":1} {}`, `{"a":1} x`, `[1]]`, `1 2`, `{"a":1},`} {
		var v any
		if err := Decode([]byte(s), &v, Options{}); err == nil {
			t.Errorf("Decode(%q) = %v, want an error", s, v)
		}
		// json.Unmarshal, the reference, refuses the same.
		if err := json.Unmarshal([]byte(s), &v); err == nil {
			t.Errorf("json.Unmarshal(%q) accepted it", s)
		}
	}
	for _, s := range []string{``, `{"a":`, `{"a":1,}`} {
		var v any
		if err := Decode([]byte(s), &v, Options{}); err == nil {
			t.Errorf("Decode(%q) = %v, want an error", s, v)
		}
	}
}

func TestDecodeOptions(t *testing.T) {
	var v any
	if err := Decode([]byte(`{"a":1.5}`), &v, Options{}); err != nil || v.(map[string]any)["a"] != 1.5 {
		t.Fatalf("without Numbers: %#v, %v", v, err)
	}
	var s struct{ A int }
	if err := Decode([]byte(`{"A":1,"B":2}`), &s, Options{}); err != nil || s.A != 1 {
		t.Fatalf("unknown field without Strict: %+v, %v", s, err)
	}
	if err := Decode([]byte(`{"A":1,"B":2}`), &s, Options{Strict: true}); err == nil {
		t.Fatal("unknown field with Strict accepted")
	}
}
