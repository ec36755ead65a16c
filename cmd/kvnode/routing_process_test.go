package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/docstore/keyenc"
	"github.com/cairndb/cairn/ring"
)

// A client with routing sends each key to the node that leads its shard:
// with leaderships spread over three nodes, each node's HTTP API receives
// exactly the puts, document inserts and transactions (by their first key)
// of the shards it leads, so none is forwarded, and scans and finds go to
// the nodes in turn. When a routed node is killed, requests fall back to
// the client's own node, and every put and transaction is acknowledged and
// reads back.
func TestProcessClientRouting(t *testing.T) {
	pc := startProcCluster(t, 3, 4)
	ctx := t.Context()
	n1 := pc.procs["n1"]
	for s := uint64(1); s <= 4; s++ { // shard s to n((s mod 3)+1): every node leads one
		if _, err := n1.client.TransferLeader(ctx, s, fmt.Sprintf("n%d", s%3+1)); err != nil {
			t.Fatalf("transfer shard %d: %v", s, err)
		}
	}
	st := pc.status("n1")
	r, err := ring.Decode(st.Ring)
	if err != nil {
		t.Fatalf("ring in /v1/cluster: %v", err)
	}
	leader := map[ring.ShardID]string{}
	for _, s := range st.Shards {
		leader[ring.ShardID(s.Shard)] = s.Leader
	}
	c := client.New(n1.http, client.WithRouting())
	// The routes load in the background: until then puts go to n1.
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; puts(t, pc, "n2") == 0; i++ {
		if time.Now().After(deadline) {
			t.Fatal("no put reached n2 directly within 10s")
		}
		if _, err := c.Put(ctx, fmt.Sprintf("warm-%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	before := map[string]int{}
	for _, name := range pc.names {
		before[name] = puts(t, pc, name)
	}
	want := map[string]int{}
	for i := range 120 {
		key := fmt.Sprintf("k%03d", i)
		if _, err := c.Put(ctx, key, []byte(key)); err != nil {
			t.Fatal(err)
		}
		want[leader[r.Locate([]byte(key))]]++
	}
	for _, name := range pc.names {
		if got := puts(t, pc, name) - before[name]; got != want[name] {
			t.Errorf("%s received %d puts, want the %d of the shards it leads (%v)", name, got, want[name], want)
		}
	}

	// Documents go to the leader of the shard their _id places them on
	// (the keyenc encoding of the _id is their keys' routing tag).
	for _, name := range pc.names {
		before[name] = requests(t, pc, name, "post", "/v1/docs/{coll}", "201")
	}
	wantDocs := map[string]int{}
	for i := range 60 {
		id := fmt.Sprintf("doc-%03d", i)
		if _, _, err := c.InsertDoc(ctx, "routed", map[string]any{"_id": id, "n": i}); err != nil {
			t.Fatal(err)
		}
		tag, _ := keyenc.Append(nil, id)
		wantDocs[leader[r.Locate(ring.AppendRouted([]byte{ring.RoutedPrefix, 'd'}, tag))]]++
	}
	for _, name := range pc.names {
		if got := requests(t, pc, name, "post", "/v1/docs/{coll}", "201") - before[name]; got != wantDocs[name] {
			t.Errorf("%s received %d inserts, want the %d of the shards it leads (%v)", name, got, wantDocs[name], wantDocs)
		}
	}
	for i := range 60 {
		id := fmt.Sprintf("doc-%03d", i)
		if d, err := n1.client.GetDoc(ctx, "routed", id); err != nil || fmt.Sprint(d["n"]) != fmt.Sprint(i) {
			t.Fatalf("document %s: %v, %v", id, d, err)
		}
	}

	// A transaction goes to the leader of its first key's shard.
	for _, name := range pc.names {
		before["txn "+name] = requests(t, pc, name, "post", "/v1/txn", "200")
	}
	wantTxns := map[string]int{}
	for i := range 60 {
		key := fmt.Sprintf("t%03d", i)
		resp, err := c.Txn(ctx, client.Txn{If: []client.Compare{client.Absent(key)}, Then: []client.TxnOp{client.TxnPut(key, []byte(key))}})
		if err != nil || !resp.Succeeded {
			t.Fatalf("txn %s: %+v, %v", key, resp, err)
		}
		wantTxns[leader[r.Locate([]byte(key))]]++
	}
	for _, name := range pc.names {
		if got := requests(t, pc, name, "post", "/v1/txn", "200") - before["txn "+name]; got != wantTxns[name] {
			t.Errorf("%s received %d transactions, want the %d of the shards it leads (%v)", name, got, wantTxns[name], wantTxns)
		}
	}

	// Scans and finds, which no one key places, go to the three nodes in
	// turn: each node coordinates a third of them.
	for _, name := range pc.names {
		before["scan "+name] = requests(t, pc, name, "get", "/v1/kv", "200")
		before["find "+name] = requests(t, pc, name, "post", "/v1/docs/{coll}/_find", "200")
	}
	for i := range 30 {
		page, err := c.Scan(ctx, client.ScanRequest{Prefix: "k0", Limit: 10})
		if err != nil || len(page.Items) != 10 || string(page.Items[0].Key) != "k000" {
			t.Fatalf("scan %d: %d items, %v", i, len(page.Items), err)
		}
		docs, _, err := c.FindDocs(ctx, "routed", client.FindRequest{Filter: map[string]any{"n": map[string]any{"$lt": 5}}})
		if err != nil || len(docs) != 5 {
			t.Fatalf("find %d: %d documents, %v", i, len(docs), err)
		}
	}
	for _, name := range pc.names {
		scans := requests(t, pc, name, "get", "/v1/kv", "200") - before["scan "+name]
		finds := requests(t, pc, name, "post", "/v1/docs/{coll}/_find", "200") - before["find "+name]
		if scans != 10 || finds != 10 {
			t.Errorf("%s coordinated %d scans and %d finds, want 10 of each of 30", name, scans, finds)
		}
	}

	// n2 dies: its shards elect new leaders, and the client, unable to
	// reach n2, sends those keys to n1 until it has read the new routes.
	pc.procs["n2"].kill()
	until := time.Now().Add(30 * time.Second)
	for i := range 60 {
		key := fmt.Sprintf("after-%03d", i)
		for {
			// One request ID per key: a retry after an unknown outcome
			// (a request cut off with n2) applies at most once.
			_, err := c.Put(ctx, key, []byte(key), client.RequestID("req-"+key))
			if err == nil {
				break
			}
			if !errors.Is(err, client.ErrUnavailable) && !errors.Is(err, client.ErrOutcomeUnknown) || time.Now().After(until) {
				t.Fatalf("put %s with n2 down: %v", key, err)
			}
		}
	}
	// Transactions whose first key n2 led are sent to n1 instead.
	for i := range 60 {
		key := fmt.Sprintf("txn-after-%03d", i)
		for {
			resp, err := c.Txn(ctx, client.Txn{Then: []client.TxnOp{client.TxnPut(key, []byte(key))}}, client.RequestID("req-"+key))
			if err == nil && resp.Succeeded {
				break
			}
			if err == nil || !errors.Is(err, client.ErrUnavailable) && !errors.Is(err, client.ErrOutcomeUnknown) || time.Now().After(until) {
				t.Fatalf("txn %s with n2 down: %+v, %v", key, resp, err)
			}
		}
	}
	plain := n1.client
	for _, prefix := range []string{"k%03d", "after-%03d", "txn-after-%03d"} {
		for i := range 60 {
			key := fmt.Sprintf(prefix, i)
			for _, cl := range []*client.Client{c, plain} {
				v, _, err := cl.Get(ctx, key)
				if err != nil || string(v) != key {
					t.Fatalf("get %s: %q, %v", key, v, err)
				}
			}
		}
	}
}

// puts returns how many PUTs of a key the node's HTTP API answered 200.
func puts(t *testing.T, pc *procCluster, name string) int {
	t.Helper()
	return requests(t, pc, name, "put", "/v1/kv/{key}", "200")
}

// requests returns how many requests of method on route the node's HTTP API
// answered with code.
func requests(t *testing.T, pc *procCluster, name, method, route, code string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+pc.procs[name].http+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("metrics of %s: %v", name, err)
	}
	defer resp.Body.Close()
	n := 0
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metrics of %s: %s", name, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "cairn_http_requests_total{") && strings.Contains(line, `method="`+method+`"`) &&
			strings.Contains(line, `route="`+route+`"`) && strings.Contains(line, `code="`+code+`"`) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatalf("metrics line %q: %v", line, err)
			}
			n += int(v)
		}
	}
	return n
}
