package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairndb/cairn/docstore"
)

func docReply(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("reply %s: %v", b, err)
	}
	return m
}

// The documents API end to end on one node: insert, get, replace and
// delete with versions, merge-patch, find, collections, drop; errors with
// their codes and nothing proposed for bad input.
func TestHTTPDocs(t *testing.T) {
	n, srv := startHTTP(t)
	u := srv.URL + "/v1/docs"
	st, _, b := do(t, "POST", u+"/users", []byte(`{"_id":"ann","age":31,"city":"Oslo"}`), nil)
	if st != 201 || docReply(t, b)["_id"] != "ann" {
		t.Fatalf("insert: %d %s", st, b)
	}
	v1 := uint64(docReply(t, b)["_version"].(float64))
	st, _, b = do(t, "POST", u+"/users", []byte(`{"age":40,"city":"Rome"}`), nil)
	if st != 201 || len(docReply(t, b)["_id"].(string)) != 24 {
		t.Fatalf("insert with a generated _id: %d %s", st, b)
	}
	st, _, b = do(t, "GET", u+"/users/ann", nil, nil)
	if d := docReply(t, b); st != 200 || d["age"] != 31.0 || uint64(d["_version"].(float64)) != v1 || d["_created_at"] == nil {
		t.Fatalf("get: %d %s", st, b)
	}
	if st, _, b := do(t, "POST", u+"/users", []byte(`{"_id":"ann"}`), nil); st != 409 || errCode(t, b) != "already_exists" {
		t.Fatalf("insert of a taken _id: %d %s", st, b)
	}
	if st, _, b := do(t, "PUT", u+fmt.Sprintf("/users/ann?if_version=%d", v1+1000), []byte(`{"age":1}`), nil); st != 412 || errCode(t, b) != "version_mismatch" {
		t.Fatalf("replace at a wrong version: %d %s", st, b)
	}
	st, _, b = do(t, "PUT", u+fmt.Sprintf("/users/ann?if_version=%d", v1), []byte(`{"age":32,"city":"Oslo"}`), nil)
	if st != 200 {
		t.Fatalf("replace: %d %s", st, b)
	}
	if st, _, b := do(t, "PATCH", u+"/users/ann", []byte(`{"city":null,"pets":["cat"]}`), nil); st != 200 {
		t.Fatalf("patch: %d %s", st, b)
	}
	st, _, b = do(t, "GET", u+"/users/ann", nil, nil)
	if d := docReply(t, b); d["city"] != nil || d["age"] != 32.0 || fmt.Sprint(d["pets"]) != "[cat]" {
		t.Fatalf("after patch: %s", b)
	}

	st, _, b = do(t, "POST", u+"/users/_find", []byte(`{"filter":{"age":{"$gte":30}},"sort":["-age"],"limit":1,"fields":["age"]}`), nil)
	var page struct {
		Docs   []map[string]any `json:"docs"`
		Cursor string           `json:"cursor"`
	}
	if err := json.Unmarshal(b, &page); st != 200 || err != nil || len(page.Docs) != 1 || page.Docs[0]["age"] != 40.0 || page.Docs[0]["city"] != nil || page.Cursor == "" {
		t.Fatalf("find, first page: %d %s", st, b)
	}
	st, _, b = do(t, "POST", u+"/users/_find", fmt.Appendf(nil, `{"filter":{"age":{"$gte":30}},"sort":["-age"],"limit":1,"cursor":%q}`, page.Cursor), nil)
	page.Cursor = ""
	if err := json.Unmarshal(b, &page); st != 200 || err != nil || len(page.Docs) != 1 || page.Docs[0]["_id"] != "ann" || page.Cursor != "" {
		t.Fatalf("find, second page: %d %s", st, b)
	}
	// The answer's bytes are encoding/json's (docstore.EncodeJSON), also
	// with characters it escapes.
	if st, _, b := do(t, "POST", u+"/users", []byte(`{"_id":"esc","note":"<a href=\"x\">&\u2028</a>","n":12345678901234567890}`), nil); st != 201 {
		t.Fatalf("insert: %d %s", st, b)
	}
	st, _, b = do(t, "POST", u+"/users/_find", []byte(`{}`), nil)
	var answer any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&answer); st != 200 || err != nil {
		t.Fatalf("find all: %d %s %v", st, b, err)
	}
	if want, _ := json.Marshal(answer); string(b) != string(want)+"\n" || !strings.Contains(string(b), `\u003ca href=\"x\"\u003e\u0026\u2028`) {
		t.Fatalf("find answer\n%s\nwant encoding/json's\n%s", b, want)
	}

	// Collections: listed, dropped.
	if st, _, b := do(t, "POST", u+"/orders", []byte(`{"total":5}`), nil); st != 201 {
		t.Fatalf("insert order: %d %s", st, b)
	}
	st, _, b = do(t, "GET", u, nil, nil)
	if st != 200 || string(b) != `{"collections":["orders","users"]}`+"\n" {
		t.Fatalf("collections: %d %q", st, b)
	}
	if st, _, b := do(t, "DELETE", u+"/users/ann", nil, nil); st != 200 {
		t.Fatalf("delete: %d %s", st, b)
	}
	if st, _, b := do(t, "GET", u+"/users/ann", nil, nil); st != 404 || errCode(t, b) != "not_found" {
		t.Fatalf("get after delete: %d %s", st, b)
	}
	if st, _, b := do(t, "DELETE", u+"/orders", nil, nil); st != 200 {
		t.Fatalf("drop: %d %s", st, b)
	}
	if st, _, b := do(t, "GET", u, nil, nil); st != 200 || string(b) != `{"collections":["users"]}`+"\n" {
		t.Fatalf("collections after drop: %d %s", st, b)
	}
	// The documents are not in the KV API's keyspace.
	if st, _, b := do(t, "GET", srv.URL+"/v1/kv", nil, nil); st != 200 || !strings.Contains(string(b), `"items":[]`) {
		t.Fatalf("KV scan shows documents: %d %s", st, b)
	}

	before := logLength(n)
	for _, tt := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"POST", "/users", `[1]`, 400, "bad_request"},
		{"POST", "/users", `{"a":`, 400, "bad_request"},
		{"POST", "/users", `{"a":1}]`, 400, "bad_request"},
		{"POST", "/users", `{"a":1}}`, 400, "bad_request"},
		{"POST", "/users/_find", `{"limit":1}]`, 400, "bad_request"},
		{"POST", "/users", `{"_id":7}`, 400, "bad_request"},
		{"POST", "/users", `{"_id":"_x"}`, 400, "bad_request"},
		{"POST", "/_users", `{}`, 400, "bad_request"},
		{"POST", "/users", `{"big":"` + strings.Repeat("x", 2<<20) + `"}`, 413, "too_large"},
		{"POST", "/users", strings.Repeat(`{"a":`, 70) + `1` + strings.Repeat(`}`, 70), 400, "bad_request"},
		{"POST", "/users", "{\"_id\":\"a\xffb\"}", 400, "bad_request"},
		{"PUT", "/users/ann?if_version=x", `{}`, 400, "bad_request"},
		{"POST", "/users/_find", `{"filter":{"a":{"$regex":"x"}}}`, 400, "bad_request"},
		{"POST", "/users/_find", `{"limit":0}`, 400, "bad_request"},
		{"POST", "/users/_find", `{"sort":"age"}`, 400, "bad_request"},
		{"POST", "/users/_find", `{"where":{}}`, 400, "bad_request"},
		{"POST", "/users/_find", `{"cursor":"%%%"}`, 400, "bad_request"},
		{"POST", "/users/_explain", `{"filter":{"a":{"$bad":1}}}`, 400, "bad_request"},
		{"PUT", "/users/_indexes/by_age", `{"fields":[]}`, 400, "bad_request"},
		{"PUT", "/users/_indexes/by_age", `{"fields":["age"],"sparse":true}`, 400, "bad_request"},
		{"PUT", "/users/_indexes/_x", `{"fields":["age"]}`, 400, "bad_request"},
		{"PUT", "/users/_indexes/u", `{"fields":["age"],"unique":"yes"}`, 400, "bad_request"},
		{"POST", "/users/_find", `{"hint":"no_such_index","filter":{"age":1}}`, 400, "bad_request"},
	} {
		st, _, b := do(t, tt.method, u+tt.path, []byte(tt.body), nil)
		if st != tt.status || errCode(t, b) != tt.code {
			t.Fatalf("%s %s %.40s: %d %s, want %d %s", tt.method, tt.path, tt.body, st, b, tt.status, tt.code)
		}
	}
	if after := logLength(n); after != before {
		t.Fatalf("refused document requests proposed: %d -> %d commands", before, after)
	}
}

// Concurrent inserts of one _id through the Go API: exactly one wins.
func TestDocsConcurrentInsertOneWinner(t *testing.T) {
	n := startReady(t, testNodeConfig(t.TempDir()))
	defer n.Close()
	ctx := t.Context()
	c := n.Docs().Collection("c")
	var wg sync.WaitGroup
	wins := make([]bool, 16)
	for i := range wins {
		wg.Go(func() {
			_, _, err := c.Insert(ctx, docstore.Doc{"_id": "one", "by": json.Number(fmt.Sprint(i))})
			wins[i] = err == nil
			if err != nil && !strings.Contains(err.Error(), "exists") {
				t.Errorf("insert %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	winner := -1
	for i, w := range wins {
		if w {
			if winner >= 0 {
				t.Fatalf("inserts %d and %d both won", winner, i)
			}
			winner = i
		}
	}
	d, err := c.Get(ctx, "one")
	if err != nil || winner < 0 || d["by"] != json.Number(fmt.Sprint(winner)) {
		t.Fatalf("winner %d, stored %v, %v", winner, d, err)
	}
}

// Indexes over HTTP on a three-node cluster: created over existing
// documents, listed ready, used (the same answer as a scan), maintained by
// writes, dropped; every document write stays on one shard, its index
// entries included.
func TestHTTPDocIndexes(t *testing.T) {
	reg := prometheus.NewRegistry()
	tc := startCluster(t, 3, 4, func(c *Config) {
		if c.Name == "n1" {
			c.Registry = reg
		}
	})
	tc.waitReady()
	n := tc.nodes["n1"]
	srv := httptest.NewServer(n.Handler(nil))
	defer srv.Close()
	u := srv.URL + "/v1/docs/people"
	for i := range 60 {
		body := fmt.Sprintf(`{"_id":"p%02d","age":%d,"tags":["t%d","all"],"addr":{"city":"c%d"}}`, i, 20+i%30, i%4, i%5)
		if st, _, b := do(t, "POST", u, []byte(body), nil); st != 201 {
			t.Fatalf("insert: %d %s", st, b)
		}
	}
	crossShard := func() float64 { return metricSum(t, reg, "cairn_txn_total", map[string]string{"kind": "cross_shard"}) }
	oneShard := func() float64 { return metricSum(t, reg, "cairn_txn_total", map[string]string{"kind": "one_shard"}) }
	crossBefore, oneBefore := crossShard(), oneShard()
	for _, def := range []struct{ name, body string }{{"by_age", `{"fields":["age"]}`}, {"by_city_age", `{"fields":["addr.city","age"]}`}, {"by_tags", `{"fields":["tags"]}`}} {
		st, _, b := do(t, "PUT", u+"/_indexes/"+def.name, []byte(def.body), nil)
		if st != 200 || !strings.Contains(string(b), `"state":"ready"`) {
			t.Fatalf("create %s: %d %s", def.name, st, b)
		}
	}
	if st, _, b := do(t, "PUT", u+"/_indexes/by_age", []byte(`{"fields":["other"]}`), nil); st != 409 || errCode(t, b) != "already_exists" {
		t.Fatalf("an index name taken with other fields: %d %s", st, b)
	}
	st, _, b := do(t, "GET", u+"/_indexes", nil, nil)
	if st != 200 || strings.Count(string(b), `"state":"ready"`) != 3 {
		t.Fatalf("list: %d %s", st, b)
	}
	// Writes after the build keep the indexes in step.
	if st, _, b := do(t, "PATCH", u+"/p07", []byte(`{"age":99,"tags":["t9"]}`), nil); st != 200 {
		t.Fatalf("patch: %d %s", st, b)
	}
	if st, _, b := do(t, "DELETE", u+"/p08", nil, nil); st != 200 {
		t.Fatalf("delete: %d %s", st, b)
	}
	find := func(body string) string {
		t.Helper()
		st, _, b := do(t, "POST", u+"/_find", []byte(body), nil)
		if st != 200 {
			t.Fatalf("find %s: %d %s", body, st, b)
		}
		var page struct{ Docs []map[string]any }
		if err := json.Unmarshal(b, &page); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, d := range page.Docs {
			ids = append(ids, d["_id"].(string))
		}
		return strings.Join(ids, ",")
	}
	for _, tt := range []struct{ filter, index string }{
		{`{"age":{"$gte":45}}`, "by_age"},
		{`{"age":99}`, "by_age"},
		{`{"addr.city":"c2","age":{"$lt":30}}`, "by_city_age"},
		{`{"tags":"t9"}`, "by_tags"},
		{`{"tags":{"$in":["t1","t3"]},"age":{"$ne":25}}`, "by_tags"},
	} {
		scan := find(fmt.Sprintf(`{"filter":%s,"hint":"_scan"}`, tt.filter))
		indexed := find(fmt.Sprintf(`{"filter":%s,"hint":%q}`, tt.filter, tt.index))
		chosen := find(fmt.Sprintf(`{"filter":%s}`, tt.filter))
		if scan == "" || indexed != scan || chosen != scan {
			t.Fatalf("%s: scan %q, %s %q, chosen %q", tt.filter, scan, tt.index, indexed, chosen)
		}
	}
	// With statistics, explain names the chosen index for a selective
	// filter and compares estimates with the rows read per shard.
	if st, _, b := do(t, "POST", u+"/_analyze", nil, nil); st != 200 || !strings.Contains(string(b), `"docs":59`) {
		t.Fatalf("analyze: %d %s", st, b)
	}
	st, _, b = do(t, "POST", u+"/_explain", []byte(`{"filter":{"age":99}}`), nil)
	var ex struct {
		Statistics bool
		Chosen     struct{ Access, Index string }
		ActualRows int64 `json:"actual_rows"`
		Matched    int
		Shards     []struct{}
	}
	if err := json.Unmarshal(b, &ex); st != 200 || err != nil || !ex.Statistics || ex.Chosen.Index != "by_age" || ex.ActualRows != 1 || ex.Matched != 1 || len(ex.Shards) != 4 {
		t.Fatalf("explain: %d %s", st, b)
	}
	if got := find(`{"filter":{"tags":"t9"}}`); got != "p07" {
		t.Fatalf("the patched document by its new tag: %q", got)
	}
	if cross := crossShard() - crossBefore; cross != 0 {
		t.Fatalf("%v document writes went through two-phase commit: entries not on the document's shard", cross)
	}
	if one := oneShard() - oneBefore; one < 60 {
		t.Fatalf("%v one-shard writes for a 60-document backfill and two writes", one)
	}
	if st, _, b := do(t, "DELETE", u+"/_indexes/by_tags", nil, nil); st != 200 {
		t.Fatalf("drop index: %d %s", st, b)
	}
	if st, _, b := do(t, "POST", u+"/_find", []byte(`{"filter":{"tags":"t9"},"hint":"by_tags"}`), nil); st != 400 {
		t.Fatalf("hint of a dropped index: %d %s", st, b)
	}
}

// A unique index across a 3-node cluster: the global entries live on other
// shards than the documents, so each write is a cross-shard transaction;
// concurrent inserts of one value under _ids on every shard: exactly one
// wins, and the answer to the others is 409 unique_violation naming the
// index and the value.
func TestDocsUniqueIndexAcrossShards(t *testing.T) {
	tc := startCluster(t, 3, 4)
	tc.waitReady()
	n := tc.nodes["n1"]
	srv := httptest.NewServer(n.Handler(nil))
	defer srv.Close()
	u := srv.URL + "/v1/docs/accounts"
	if st, _, b := do(t, "POST", u, []byte(`{"_id":"seed","email":"x@y"}`), nil); st != 201 {
		t.Fatalf("insert: %d %s", st, b)
	}
	if st, _, b := do(t, "PUT", u+"/_indexes/by_email", []byte(`{"fields":["email"],"unique":true}`), nil); st != 200 {
		t.Fatalf("create: %d %s", st, b)
	}
	if st, _, b := do(t, "POST", u, []byte(`{"_id":"dup","email":"x@y"}`), nil); st != 409 || errCode(t, b) != "unique_violation" || !strings.Contains(string(b), "by_email") || !strings.Contains(string(b), "x@y") {
		t.Fatalf("duplicate: %d %s", st, b)
	}
	nodes := []*Node{tc.nodes["n1"], tc.nodes["n2"], tc.nodes["n3"]}
	for round := range 5 {
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for i := range 12 {
			wg.Go(func() {
				c := nodes[i%3].Docs().Collection("accounts")
				_, _, err := c.Insert(t.Context(), docstore.Doc{"_id": fmt.Sprintf("r%d-%d", round, i), "email": fmt.Sprint("same-", round)})
				switch {
				case err == nil:
					mu.Lock()
					wins++
					mu.Unlock()
				case !errors.Is(err, docstore.ErrUniqueViolation):
					t.Errorf("insert %d: %v", i, err)
				}
			})
		}
		wg.Wait()
		docs, _, err := n.Docs().Collection("accounts").Find(t.Context(), docstore.Query{Filter: mustFilter(t, fmt.Sprintf(`{"email":"same-%d"}`, round)), Hint: docstore.HintScan})
		if err != nil || wins != 1 || len(docs) != 1 {
			t.Fatalf("round %d: %d inserts won, %d documents hold the value (%v)", round, wins, len(docs), err)
		}
	}
}

func mustFilter(t *testing.T, s string) *docstore.Filter {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	f, err := docstore.ParseFilter(v)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
