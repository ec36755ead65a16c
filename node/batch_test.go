package node

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

type testBatchResult struct {
	Status    int      `json:"status"`
	Version   uint64   `json:"version"`
	Value     []byte   `json:"value"`
	Deleted   bool     `json:"deleted"`
	RequestID string   `json:"request_id"`
	Error     apiError `json:"error"`
}

func postBatch(t *testing.T, url string, ops ...map[string]any) (int, []testBatchResult, []byte) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"ops": ops})
	if err != nil {
		t.Fatal(err)
	}
	st, _, b := do(t, "POST", url+"/v1/batch", body, nil)
	var out struct {
		Results []testBatchResult `json:"results"`
	}
	if st == 200 {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("batch answer %s: %v", b, err)
		}
		if len(out.Results) != len(ops) {
			t.Fatalf("%d results for %d operations: %s", len(out.Results), len(ops), b)
		}
	}
	return st, out.Results, b
}

// Every operation of a batch is answered as its own request would be.
func TestHTTPBatch(t *testing.T) {
	n, srv := startHTTP(t)
	kv := srv.URL + "/v1/kv/"
	if st, _, b := do(t, "PUT", kv+"a", []byte("va"), nil); st != 200 {
		t.Fatalf("put a: %d %s", st, b)
	}
	if st, _, b := do(t, "PUT", kv+"empty", nil, nil); st != 200 {
		t.Fatalf("put empty: %d %s", st, b)
	}
	_, h, _ := do(t, "GET", kv+"a", nil, nil)
	va := h.Get("Kv-Version")

	raw := []byte{0xff, 'k', 0xfe} // not UTF-8: sent as key_base64
	st, res, b := postBatch(t, srv.URL,
		map[string]any{"op": "get", "key": "a"},
		map[string]any{"op": "get", "key": "a", "consistency": "stale", "max_staleness": "5s"},
		map[string]any{"op": "get", "key": "missing"},
		map[string]any{"op": "get", "key": "empty"},
		map[string]any{"op": "put", "key": "b", "value": []byte("vb"), "request_id": "batch-put-b"},
		map[string]any{"op": "put", "key": "a", "value": []byte("x"), "if_version": 0},
		map[string]any{"op": "put", "key_base64": raw, "value": []byte("raw")},
		map[string]any{"op": "delete", "key": "never-written"},
		map[string]any{"op": "put", "key": "c", "value": []byte("vc"), "if_version": 0},
	)
	if st != 200 {
		t.Fatalf("batch: %d %s", st, b)
	}
	want := []struct {
		status int
		value  string
		code   string
	}{
		{200, "va", ""}, {200, "va", ""}, {404, "", "not_found"}, {200, "", ""},
		{200, "", ""}, {412, "", "version_mismatch"}, {200, "", ""}, {404, "", "not_found"}, {200, "", ""},
	}
	for i, w := range want {
		r := res[i]
		if r.Status != w.status || string(r.Value) != w.value || r.Error.Code != w.code {
			t.Errorf("ops[%d]: status %d value %q error %q, want %d %q %q", i, r.Status, r.Value, r.Error.Code, w.status, w.value, w.code)
		}
	}
	if fmt.Sprint(res[0].Version) != va || fmt.Sprint(res[1].Version) != va {
		t.Errorf("gets of a: versions %d and %d, want %s", res[0].Version, res[1].Version, va)
	}
	if res[4].RequestID != "batch-put-b" || res[4].Version == 0 || res[8].Version == 0 || res[6].RequestID == "" {
		t.Errorf("puts: %+v %+v %+v", res[4], res[6], res[8])
	}
	// The writes are there, read one by one.
	for key, v := range map[string]string{"b": "vb", "c": "vc", "%FFk%FE": "raw", "a": "va"} {
		if st, _, b := do(t, "GET", kv+key, nil, nil); st != 200 || string(b) != v {
			t.Errorf("get %s after the batch: %d %q, want %q", key, st, b, v)
		}
	}
	// A retried put with the same request ID applies once: same version.
	_, again, _ := postBatch(t, srv.URL, map[string]any{"op": "put", "key": "b", "value": []byte("vb"), "request_id": "batch-put-b"})
	if again[0].Status != 200 || again[0].Version != res[4].Version {
		t.Errorf("put retried with its request ID: %+v, want version %d", again[0], res[4].Version)
	}
	// A delete in a batch.
	_, del, _ := postBatch(t, srv.URL, map[string]any{"op": "delete", "key": "c"}, map[string]any{"op": "get", "key": "b"})
	if del[0].Status != 200 || !del[0].Deleted || del[1].Status != 200 || string(del[1].Value) != "vb" {
		t.Errorf("delete and get: %+v %+v", del[0], del[1])
	}
	if st, _, _ := do(t, "GET", kv+"c", nil, nil); st != 404 {
		t.Errorf("c after its delete: %d", st)
	}
	_ = n
}

// A batch with one bad operation is refused whole, naming the operation,
// and none of its operations is proposed.
func TestHTTPBatchRefusedWhole(t *testing.T) {
	n, srv := startHTTP(t)
	good := map[string]any{"op": "put", "key": "good", "value": []byte("v")}
	before := logLength(n)
	tooMany := make([]map[string]any, MaxBatchOps+1)
	for i := range tooMany {
		tooMany[i] = map[string]any{"op": "get", "key": "k"}
	}
	for _, tc := range []struct {
		name   string
		ops    []map[string]any
		status int
		code   string
		msg    string
	}{
		{"no operations", nil, 400, "bad_request", "at least one"},
		{"unknown op", []map[string]any{good, {"op": "increment", "key": "k"}}, 400, "bad_request", "ops[1]"},
		{"missing op", []map[string]any{good, {"key": "k"}}, 400, "bad_request", "ops[1]"},
		{"empty key", []map[string]any{good, {"op": "get", "key": ""}}, 400, "bad_request", "ops[1]"},
		{"two keys", []map[string]any{good, {"op": "get", "key": "k", "key_base64": []byte("k")}}, 400, "bad_request", "ops[1]"},
		{"reserved key", []map[string]any{good, {"op": "put", "key": "\x00d", "value": []byte("v")}}, 400, "bad_request", "ops[1]"},
		{"key too large", []map[string]any{good, {"op": "get", "key": strings.Repeat("k", 4097)}}, 413, "too_large", "ops[1]"},
		{"value too large", []map[string]any{good, {"op": "put", "key": "k", "value": make([]byte, 1<<20+1)}}, 413, "too_large", "ops[1]"},
		{"bad consistency", []map[string]any{good, {"op": "get", "key": "k", "consistency": "eventual"}}, 400, "bad_request", "ops[1]"},
		{"staleness without stale", []map[string]any{good, {"op": "get", "key": "k", "max_staleness": "2s"}}, 400, "bad_request", "ops[1]"},
		{"negative staleness", []map[string]any{good, {"op": "get", "key": "k", "consistency": "stale", "max_staleness": "-1s"}}, 400, "bad_request", "ops[1]"},
		{"get with a value", []map[string]any{good, {"op": "get", "key": "k", "value": []byte("v")}}, 400, "bad_request", "ops[1]"},
		{"delete with a value", []map[string]any{good, {"op": "delete", "key": "k", "value": []byte("v")}}, 400, "bad_request", "ops[1]"},
		{"put with a consistency", []map[string]any{good, {"op": "put", "key": "k", "consistency": "stale"}}, 400, "bad_request", "ops[1]"},
		{"request id too long", []map[string]any{good, {"op": "put", "key": "k", "request_id": strings.Repeat("r", 257)}}, 413, "too_large", "ops[1]"},
		{"too many operations", tooMany, 413, "too_large", "limit 1000"},
	} {
		st, _, b := postBatch(t, srv.URL, tc.ops...)
		if st != tc.status || errCode(t, b) != tc.code || !strings.Contains(string(b), tc.msg) {
			t.Errorf("%s: %d %s, want %d %s mentioning %q", tc.name, st, b, tc.status, tc.code, tc.msg)
		}
	}
	for _, body := range []string{`not json`, `{"ops": {}}`, `[]`,
		"{\"ops\":[{\"op\":\"put\",\"key\":\"k\xff\",\"value\":\"eA==\"}]}", // not UTF-8: decoding would rename the key
		`{"ops":[{"op":"get","key":"k","x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}]}`,
	} {
		if st, _, b := do(t, "POST", srv.URL+"/v1/batch", []byte(body), nil); st != 400 || errCode(t, b) != "bad_request" {
			t.Errorf("body %s: %d %s, want 400 bad_request", body, st, b)
		}
	}
	if st, _, b := do(t, "POST", srv.URL+"/v1/batch", make([]byte, maxBodyBytes+1), nil); st != 413 || errCode(t, b) != "too_large" {
		t.Errorf("oversized body: %d %s, want 413 too_large", st, b)
	}
	if after := logLength(n); after != before {
		t.Fatalf("refused batches proposed: %d -> %d commands", before, after)
	}
	if st, _, _ := do(t, "GET", srv.URL+"/v1/kv/good", nil, nil); st != 404 {
		t.Fatalf("the good put of a refused batch was applied: GET answered %d", st)
	}
}
