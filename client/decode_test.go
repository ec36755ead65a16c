package client

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/cairndb/cairn/internal/nodetest"
)

// The answers decoded here must come out exactly as encoding/json would
// decode them, and be refused where it would refuse them.

type findAnswer struct {
	Docs   []Doc  `json:"docs"`
	Cursor string `json:"cursor"`
}

func stdNumbers(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(v)
}

// sameAsStd decodes body into a new T both ways and fails unless both
// refuse it or both give equal values.
func sameAsStd[T any](t *testing.T, body []byte, numbers bool) {
	t.Helper()
	var want, got T
	var werr, gerr error
	if numbers {
		werr, gerr = stdNumbers(body, &want), unmarshalNumbers(body, &got)
	} else {
		werr, gerr = json.Unmarshal(body, &want), unmarshal(body, &got)
	}
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%T from %q: encoding/json says %v, the client says %v", got, body, werr, gerr)
	}
	if werr == nil && !reflect.DeepEqual(want, got) {
		t.Fatalf("%T from %q:\nencoding/json %#v\nthe client    %#v", got, body, want, got)
	}
}

// decodeSeeds are answers with what JSON makes hard: escapes, surrogate
// pairs, code points that are not UTF-8 when escaped alone, empty and null
// values, numbers past 2^53, deep nesting, trailing data and broken input.
var decodeSeeds = []string{
	`{"items":[{"key":"a","value":"b25l","version":7}],"cursor":"Y3Vy"}`,
	`{"items":[{"key":"bin\ufffdkey","value":"cmF3","version":1,"key_base64":"YmluAP/+a2V5"}]}`,
	`{"items":[{"key":"q\"\\\/\b\f\n\r\t\u00e9\u2028\ud83d\ude00","value":"","version":0}],"cursor":""}`,
	`{"items":[{"key":"lone \ud800 surrogate","value":null,"version":18446744073709551615}]}`,
	`{"items":[]}`, `{"items":null}`, `{}`, `null`,
	`{"ITEMS":[{"KEY":"case","Value":"eA==","VERSION":3}]}`,
	`{"items":[{"key":"a","value":"not base64!","version":1}]}`,
	`{"items":[{"key":"a","value":"eA==","version":-1}]}`,
	`{"items":[{"key":"a","value":"eA==","version":1.5}]}`,
	`{"items":[{"key":"a","value":"eA==","version":1}],"cursor":"x"} trailing`,
	`{"items":[{"key":"a","value":"eA==","version":1}`,
	`{"docs":[{"_id":"ann","_version":12582913,"age":31,"big":123456789012345678901234567890,"f":-1.5e-300,"tags":["a",null,true,{"deep":[[[{}]]]}],"name":"\u00c5sa"}],"cursor":"next"}`,
	`{"docs":[{"_id":"x","dup":1,"dup":2}]}`,
	`{"docs":[{"_id":"x","n":01}]}`,
	`{"docs":[{"_id":"x","s":"tab	inside"}]}`,
	`{"docs":[{"_id":"x"}]} {"docs":[]}`,
	`{"error":{"code":"not_found","message":"key \"k\" not found","request_id":"r1"}}`,
	`{"version":42}`, `{"version":"42"}`,
	"{\"items\":[{\"key\":\"raw \xff\xfe byte\",\"value\":\"eA==\",\"version\":1}]}",
}

func TestDecodeMatchesEncodingJSON(t *testing.T) {
	for _, s := range decodeSeeds {
		sameAsStd[scanAnswer](t, []byte(s), false)
		sameAsStd[findAnswer](t, []byte(s), true)
		sameAsStd[TxnResponse](t, []byte(s), false)
		sameAsStd[map[string]any](t, []byte(s), false)
	}
	// A large page of random values, as a scan of 256-byte values returns.
	rng := rand.New(rand.NewPCG(1, 2))
	var page strings.Builder
	page.WriteString(`{"items":[`)
	for i := range 100 {
		v := make([]byte, 256)
		for j := range v {
			v[j] = byte(rng.Uint32())
		}
		b, _ := json.Marshal(map[string]any{"key": fmt.Sprintf("k%05d\u00e9", i), "value": v, "version": rng.Uint64()})
		if i > 0 {
			page.WriteByte(',')
		}
		page.Write(b)
	}
	page.WriteString(`],"cursor":"abc"}`)
	sameAsStd[scanAnswer](t, []byte(page.String()), false)
}

// TestDecodeServerAnswers decodes what a node really sends for scans,
// documents and transactions both ways.
func TestDecodeServerAnswers(t *testing.T) {
	_, url := nodetest.Start(t, "n1", 2)
	c := New(url)
	ctx := t.Context()
	for i, k := range []string{"s/plain", "s/é ✓", "s/\xff\xfe bytes", "s/quote\"back\\slash", "s/ctl\x01\x1f"} {
		v := bytes.Repeat([]byte{byte(i), 0, 0xff, '"'}, 64*i)
		if _, err := c.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := c.InsertDoc(ctx, "people", map[string]any{"_id": "ann", "big": json.Number("123456789012345678901"), "f": 1e-7, "name": "Åsa \u2028", "nested": map[string]any{"a": []any{1, "two", nil, true}}}); err != nil {
		t.Fatal(err)
	}
	get := func(method, path, body string) []byte {
		req, err := http.NewRequestWithContext(ctx, method, url+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %d %s %v", method, path, resp.StatusCode, b, err)
		}
		return b
	}
	scan := get(http.MethodGet, "/v1/kv?prefix=s/", "")
	sameAsStd[scanAnswer](t, scan, false)
	var page scanAnswer
	if err := unmarshal(scan, &page); err != nil || len(page.Items) != 5 {
		t.Fatalf("scan answer: %d items, %v", len(page.Items), err)
	}
	find := get(http.MethodPost, "/v1/docs/people/_find", `{"filter":{}}`)
	sameAsStd[findAnswer](t, find, true)
	var docs findAnswer
	if err := unmarshalNumbers(find, &docs); err != nil || len(docs.Docs) != 1 || docs.Docs[0]["big"] != json.Number("123456789012345678901") {
		t.Fatalf("find answer: %+v %v", docs, err)
	}
	txn := get(http.MethodPost, "/v1/txn", `{"then":[{"get":{"key":"s/é ✓"}},{"get":{"key":"s/plain"}},{"get":{"key":"s/absent"}}]}`)
	sameAsStd[TxnResponse](t, txn, false)
	var tr TxnResponse
	if err := unmarshal(txn, &tr); err != nil || !tr.Succeeded || len(tr.Results) != 3 || !tr.Results[0].Found || tr.Results[2].Found ||
		!bytes.Equal(tr.Results[0].Value, bytes.Repeat([]byte{1, 0, 0xff, '"'}, 64)) {
		t.Fatalf("txn answer: %+v %v", tr, err)
	}
	sameAsStd[map[string]any](t, get(http.MethodGet, "/v1/cluster", ""), false)
}

// FuzzDecodeMatchesEncodingJSON: whatever the bytes, the client decodes
// them as encoding/json does.
func FuzzDecodeMatchesEncodingJSON(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sameAsStd[scanAnswer](t, b, false)
		sameAsStd[findAnswer](t, b, true)
		sameAsStd[TxnResponse](t, b, false)
	})
}
