package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func startHTTP(t *testing.T) (*Node, *httptest.Server) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := testNodeConfig(t.TempDir())
	cfg.Registry = reg
	n := startReady(t, cfg)
	srv := httptest.NewServer(n.Handler(reg))
	t.Cleanup(func() { srv.Close(); n.Close() })
	return n, srv
}

func do(t *testing.T, method, url string, body []byte, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func errCode(t *testing.T, b []byte) string {
	t.Helper()
	var e struct {
		Error apiError `json:"error"`
	}
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("error body %q: %v", b, err)
	}
	return e.Error.Code
}

// logLength sums the last raft index of every replica on n: it grows with
// anything proposed.
// logLength counts the commands the node's data shard replicas have
// applied: what "nothing was proposed" is checked against. (Raft's own
// entries, such as a new leader's, do not count: an election under load
// would otherwise look like a proposal.)
func logLength(n *Node) uint64 {
	var sum uint64
	for _, s := range n.replicas() {
		if s.ID() != 0 {
			sum += s.FSM().AppliedCommands()
		}
	}
	return sum
}

func TestHTTPKV(t *testing.T) {
	n, srv := startHTTP(t)
	u := srv.URL + "/v1/kv/"

	st, _, b := do(t, "PUT", u+"a%2Fb%20c", []byte("v1"), nil)
	if st != 200 {
		t.Fatalf("put: %d %s", st, b)
	}
	var put struct{ Version uint64 }
	if err := json.Unmarshal(b, &put); err != nil || put.Version == 0 {
		t.Fatalf("put body %s", b)
	}
	st, h, b := do(t, "GET", u+"a%2Fb%20c", nil, nil)
	if st != 200 || string(b) != "v1" || h.Get("Kv-Version") != jsonNum(put.Version) {
		t.Fatalf("get: %d %q version %s, want v1 @%d", st, b, h.Get("Kv-Version"), put.Version)
	}
	// Conditional writes.
	st, _, b = do(t, "PUT", u+"a%2Fb%20c?if_version=0", []byte("v2"), nil)
	if st != 412 || errCode(t, b) != "version_mismatch" {
		t.Fatalf("create-if-absent on existing key: %d %s", st, b)
	}
	st, _, b = do(t, "PUT", u+"a%2Fb%20c?if_version="+jsonNum(put.Version), []byte("v2"), nil)
	if st != 200 {
		t.Fatalf("put at current version: %d %s", st, b)
	}
	// Request-Id makes a retry apply once.
	hdr := map[string]string{"Request-Id": "req-42"}
	_, h1, b1 := do(t, "PUT", u+"once", []byte("x"), hdr)
	_, _, b2 := do(t, "PUT", u+"once", []byte("x"), hdr)
	if !bytes.Equal(b1, b2) || h1.Get("Request-Id") != "req-42" {
		t.Fatalf("retry with the same Request-Id: %s then %s", b1, b2)
	}
	// Errors. Bad input is refused before anything is proposed.
	before := logLength(n)
	for _, tc := range []struct {
		method, path string
		body         []byte
		status       int
		code         string
	}{
		{"GET", "missing", nil, 404, "not_found"},
		{"PUT", "", []byte("x"), 400, "bad_request"},
		{"PUT", strings.Repeat("k", 4097), []byte("x"), 413, "too_large"},
		{"PUT", "big", make([]byte, 1<<20+1), 413, "too_large"},
		{"PUT", "k?if_version=x", []byte("x"), 400, "bad_request"},
		{"GET", "k?consistency=eventual", nil, 400, "bad_request"},
		{"GET", "k?max_staleness=2s", nil, 400, "bad_request"},
		{"GET", "k?consistency=stale&max_staleness=-1s", nil, 400, "bad_request"},
		{"PUT", "k", make([]byte, 4<<20+1), 413, "too_large"},
		{"DELETE", "k?if_version=-3", nil, 400, "bad_request"},
	} {
		st, _, b := do(t, tc.method, u+tc.path, tc.body, nil)
		if st != tc.status || errCode(t, b) != tc.code {
			t.Errorf("%s %s: %d %s, want %d %s", tc.method, tc.path, st, b, tc.status, tc.code)
		}
	}
	if st, _, b := do(t, "PUT", u+"k", []byte("x"), map[string]string{"Request-Id": strings.Repeat("r", 257)}); st != 400 || errCode(t, b) != "bad_request" {
		t.Errorf("oversized Request-Id: %d %s", st, b)
	}
	if after := logLength(n); after != before {
		t.Fatalf("refused requests grew the raft logs from %d to %d entries", before, after)
	}
	// Deleting an absent key is not bad input: it is proposed, finds
	// nothing and answers 404.
	if st, _, b := do(t, "DELETE", u+"missing", nil, nil); st != 404 || errCode(t, b) != "not_found" {
		t.Errorf("DELETE missing: %d %s", st, b)
	}
	st, _, b = do(t, "GET", u+"a%2Fb%20c?consistency=stale&max_staleness=10s", nil, nil)
	if st != 200 || string(b) != "v2" {
		t.Fatalf("stale read: %d %q", st, b)
	}
	st, _, _ = do(t, "DELETE", u+"once", nil, nil)
	if st != 200 {
		t.Fatalf("delete: %d", st)
	}
}

func jsonNum(v uint64) string { b, _ := json.Marshal(v); return string(b) }

func TestHTTPScanClusterHealthMetrics(t *testing.T) {
	_, srv := startHTTP(t)
	for i := range 30 {
		key := "s/" + string(rune('A'+i))
		if st, _, b := do(t, "PUT", srv.URL+"/v1/kv/"+key, []byte(key), nil); st != 200 {
			t.Fatalf("put %s: %d %s", key, st, b)
		}
	}
	var keys []string
	cursor := ""
	for pages := 0; ; pages++ {
		st, _, b := do(t, "GET", srv.URL+"/v1/kv?prefix=s/&limit=7&cursor="+cursor, nil, nil)
		if st != 200 {
			t.Fatalf("scan: %d %s", st, b)
		}
		var page struct {
			Items []struct {
				Key     string
				Value   []byte
				Version uint64
			}
			Cursor string
		}
		if err := json.Unmarshal(b, &page); err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Items {
			if string(it.Value) != it.Key || it.Version == 0 {
				t.Fatalf("scan item %+v", it)
			}
			keys = append(keys, it.Key)
		}
		if page.Cursor == "" {
			break
		}
		cursor = page.Cursor
	}
	if len(keys) != 30 {
		t.Fatalf("scan returned %d keys over its pages, want 30", len(keys))
	}
	for i := 1; i < len(keys); i++ {
		if keys[i-1] >= keys[i] {
			t.Fatalf("scan out of order: %s, %s", keys[i-1], keys[i])
		}
	}
	if st, _, b := do(t, "GET", srv.URL+"/v1/kv?cursor=!!", nil, nil); st != 400 {
		t.Fatalf("bad cursor: %d %s", st, b)
	}
	// reverse=true: the same keys backwards, a page of 7 continuing below
	// its cursor.
	var back []string
	cursor = ""
	for pages := 0; pages < 10; pages++ {
		st, _, b := do(t, "GET", srv.URL+"/v1/kv?prefix=s/&limit=7&reverse=true&cursor="+cursor, nil, nil)
		var page struct {
			Items  []struct{ Key string }
			Cursor string
		}
		if st != 200 || json.Unmarshal(b, &page) != nil {
			t.Fatalf("reverse scan: %d %s", st, b)
		}
		for _, it := range page.Items {
			back = append(back, it.Key)
		}
		if page.Cursor == "" {
			break
		}
		cursor = page.Cursor
	}
	if slices.Reverse(back); !slices.Equal(back, keys) {
		t.Fatalf("reverse scan, reversed: %v", back)
	}
	if st, _, b := do(t, "GET", srv.URL+"/v1/kv?reverse=backwards", nil, nil); st != 400 || !strings.Contains(string(b), "reverse") {
		t.Fatalf("bad reverse: %d %s", st, b)
	}

	st, _, b := do(t, "GET", srv.URL+"/v1/cluster", nil, nil)
	var cl struct {
		Node      string
		RingEpoch uint64 `json:"ring_epoch"`
		Shards    []struct{ Role string }
	}
	if err := json.Unmarshal(b, &cl); st != 200 || err != nil || cl.Node != "n1" || cl.RingEpoch != 1 || len(cl.Shards) != 5 {
		t.Fatalf("cluster: %d %s", st, b)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if st, _, b := do(t, "GET", srv.URL+path, nil, nil); st != 200 {
			t.Fatalf("%s: %d %s", path, st, b)
		}
	}
	st, _, b = do(t, "GET", srv.URL+"/metrics", nil, nil)
	if st != 200 || !bytes.Contains(b, []byte(`cairn_shard_proposals_total{outcome="applied",shard=`)) || !bytes.Contains(b, []byte("cairn_store_lsm_bytes")) {
		t.Fatalf("metrics: %d, missing series", st)
	}
}

// GET /v1/cluster/replicas hashes every local replica; a write changes the
// hash and applied index of its shard's replica and the state of no other.
func TestHTTPReplicaStates(t *testing.T) {
	n, srv := startHTTP(t)
	type states struct {
		Node     string
		Replicas []ReplicaState
	}
	get := func() map[uint64]ReplicaState {
		t.Helper()
		st, _, b := do(t, "GET", srv.URL+"/v1/cluster/replicas", nil, nil)
		var s states
		if err := json.Unmarshal(b, &s); st != 200 || err != nil || s.Node != "n1" {
			t.Fatalf("replicas: %d %s %v", st, b, err)
		}
		m := map[uint64]ReplicaState{}
		for _, r := range s.Replicas {
			if r.Error != "" || len(r.StateHash) != 64 || r.Role != "leader" {
				t.Fatalf("replica %+v", r)
			}
			m[r.Shard] = r
		}
		if len(m) != 5 {
			t.Fatalf("want meta + 4 shards, got %v", m)
		}
		return m
	}
	before := get()
	if st, _, b := do(t, "PUT", srv.URL+"/v1/kv/hash-me", []byte("v"), nil); st != 200 {
		t.Fatalf("put: %d %s", st, b)
	}
	after := get()
	target := uint64(n.view.Load().ring.Locate([]byte("hash-me")))
	// Only the target's state may change. Applied indexes of other shards
	// may still move: a fresh leader's configuration entry can reach the
	// state machine after the first listing, without changing its state.
	for id, a := range after {
		b := before[id]
		var ok bool
		if id == target {
			ok = a.StateHash != b.StateHash && a.Applied > b.Applied
		} else {
			ok = a.StateHash == b.StateHash && a.Applied >= b.Applied
		}
		if !ok {
			t.Fatalf("shard %d: before %+v after %+v (the write went to shard %d)", id, b, a, target)
		}
	}
}

// Keys starting with 0x00 belong to the document store: the KV API refuses
// them (nothing proposed) and its scans do not show them.
func TestHTTPReservedKeys(t *testing.T) {
	n, srv := startHTTP(t)
	if _, err := n.Put(t.Context(), []byte("\x00doc"), []byte("internal"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Put(t.Context(), []byte("user"), []byte("v"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	before := logLength(n)
	for _, tt := range []struct{ method, path, body string }{
		{"PUT", "/v1/kv/%00doc", "x"},
		{"GET", "/v1/kv/%00doc", ""},
		{"DELETE", "/v1/kv/%00doc", ""},
		{"GET", "/v1/kv?prefix=%00", ""},
		{"GET", "/v1/kv?start=%00a", ""},
		{"POST", "/v1/txn", `{"then":[{"put":{"key":"\u0000doc","value":"eA=="}}]}`},
		{"POST", "/v1/txn", `{"if":[{"key":"\u0000doc","exists":true}],"then":[{"get":{"key":"a"}}]}`},
	} {
		st, _, b := do(t, tt.method, srv.URL+tt.path, []byte(tt.body), nil)
		if st != 400 || errCode(t, b) != "bad_request" || !bytes.Contains(b, []byte("reserved")) {
			t.Fatalf("%s %s: %d %s", tt.method, tt.path, st, b)
		}
	}
	if after := logLength(n); after != before {
		t.Fatalf("refused requests proposed: %d -> %d commands", before, after)
	}
	st, _, b := do(t, "GET", srv.URL+"/v1/kv", nil, nil)
	var out struct{ Items []scanItem }
	if err := json.Unmarshal(b, &out); st != 200 || err != nil || len(out.Items) != 1 || out.Items[0].Key != "user" {
		t.Fatalf("scan of everything: %d %s", st, b)
	}
}

// A scanned key that is not valid UTF-8 carries its exact bytes in
// key_base64 (its "key" has U+FFFD for the invalid bytes); a valid key has
// no key_base64. A large page declares its length.
func TestHTTPScanKeyNotUTF8(t *testing.T) {
	_, srv := startHTTP(t)
	for _, path := range []string{"/v1/kv/u8/%FFraw", "/v1/kv/u8/text"} {
		if st, _, b := do(t, "PUT", srv.URL+path, []byte("v"), nil); st != 200 {
			t.Fatalf("put %s: %d %s", path, st, b)
		}
	}
	st, _, b := do(t, "GET", srv.URL+"/v1/kv?prefix=u8/", nil, nil)
	var page struct {
		Items []struct {
			Key       string  `json:"key"`
			KeyBase64 *[]byte `json:"key_base64"`
		}
	}
	if err := json.Unmarshal(b, &page); st != 200 || err != nil || len(page.Items) != 2 {
		t.Fatalf("scan: %d %s %v", st, b, err)
	}
	raw, text := page.Items[1], page.Items[0] // 0xFF sorts after 't'
	if text.Key != "u8/text" || text.KeyBase64 != nil {
		t.Fatalf("valid key scanned as %+v", text)
	}
	if raw.KeyBase64 == nil || string(*raw.KeyBase64) != "u8/\xffraw" || raw.Key != "u8/\uFFFDraw" {
		t.Fatalf("invalid key scanned as %q with key_base64 %v; body %s", raw.Key, raw.KeyBase64, b)
	}

	// A large JSON answer declares its length (one write, not chunked).
	for i := range 40 {
		if st, _, b := do(t, "PUT", srv.URL+fmt.Sprintf("/v1/kv/big/%02d", i), bytes.Repeat([]byte("v"), 500), nil); st != 200 {
			t.Fatalf("put: %d %s", st, b)
		}
	}
	st, hdr, b := do(t, "GET", srv.URL+"/v1/kv?prefix=big/", nil, nil)
	if st != 200 || len(b) < 20000 || hdr.Get("Content-Length") != strconv.Itoa(len(b)) {
		t.Fatalf("scan answer: %d, %d bytes with Content-Length %q", st, len(b), hdr.Get("Content-Length"))
	}
}
