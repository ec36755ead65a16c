package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/internal/nodetest"
)

func TestBenchRunsMixedLoad(t *testing.T) {
	_, url := nodetest.Start(t, "bench", 2)

	bc := benchConfig{addrs: []string{url}, clients: 4, duration: time.Second, keys: 50, valueSize: 32, readRatio: 0.5, consistency: "linearizable", seed: 3}
	c := client.New(url)
	clients := benchClients(bc)
	n, err := preload(t.Context(), clients, bc, func(int64) {})
	if err != nil || n != int64(bc.keys) {
		t.Fatalf("preload wrote %d keys, %v; want %d", n, err, bc.keys)
	}
	page, err := c.Scan(t.Context(), client.ScanRequest{Prefix: "bench/"})
	if err != nil || len(page.Items) != bc.keys {
		t.Fatalf("after preload: %d keys, %v", len(page.Items), err)
	}
	// Once with every get a request of its own, once with gets batched
	// (--batch 1: four clients on one node share requests).
	var res benchResult
	for _, batch := range []int{0, 1} {
		bc.batch = batch
		ctx, cancel := context.WithTimeout(t.Context(), bc.duration)
		res = bench(ctx, benchClients(bc), bc, func(int64, int64, time.Duration) {})
		cancel()
		if res.errors != 0 {
			t.Fatalf("batch %d: %d errors, first: %v", batch, res.errors, res.firstError)
		}
		if len(res.puts) == 0 || len(res.gets) == 0 {
			t.Fatalf("batch %d: %d puts, %d gets", batch, len(res.puts), len(res.gets))
		}
	}
	bc.batch = 0
	page, err = c.Scan(t.Context(), client.ScanRequest{Prefix: "bench/"})
	if err != nil || len(page.Items) == 0 || len(page.Items) > bc.keys {
		t.Fatalf("bench keys after the run: %d, %v", len(page.Items), err)
	}
	for _, it := range page.Items {
		if len(it.Value) != bc.valueSize {
			t.Fatalf("%s holds %d bytes, want %d", it.Key, len(it.Value), bc.valueSize)
		}
	}
	var out bytes.Buffer
	res.print(&out, bc)
	if !strings.Contains(out.String(), "put ") || !strings.Contains(out.String(), "get ") || strings.Contains(out.String(), "errors") {
		t.Fatalf("summary:\n%s", out.String())
	}
	sum := res.summary(bc)
	if sum.OpsPerSec <= 0 || sum.PutP50 <= 0 || sum.GetP50 <= 0 || sum.PutP50 > sum.PutP99 || sum.Errors != 0 {
		t.Fatalf("JSON summary %+v", sum)
	}
}

// Transaction mode pairs keys on one shard or on two, as asked, and runs
// transactions without errors.
func TestBenchTransactions(t *testing.T) {
	_, url := nodetest.Start(t, "bench-txn", 2)
	c := client.New(url)
	for _, cross := range []bool{false, true} {
		pairs, err := pairKeys(t.Context(), c, 40, cross)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range pairs {
			si, _ := c.Locate(t.Context(), benchKey(i))
			sp, _ := c.Locate(t.Context(), benchKey(p))
			if p == i || (si != sp) != cross {
				t.Fatalf("cross %t: key %d (shard %d) paired with %d (shard %d)", cross, i, si, p, sp)
			}
		}
		mode := map[bool]string{false: "one-shard", true: "cross-shard"}[cross]
		bc := benchConfig{addrs: []string{url}, clients: 4, duration: time.Second, keys: 40, valueSize: 16, consistency: "linearizable", seed: 5, txn: mode, pairs: pairs}
		ctx, cancel := context.WithTimeout(t.Context(), bc.duration)
		res := bench(ctx, benchClients(bc), bc, func(int64, int64, time.Duration) {})
		cancel()
		if res.errors != 0 || len(res.puts) == 0 || len(res.gets) != 0 {
			t.Fatalf("%s: %d txns, %d gets, %d errors (%v)", mode, len(res.puts), len(res.gets), res.errors, res.firstError)
		}
		var out bytes.Buffer
		res.print(&out, bc)
		if !strings.Contains(out.String(), "txn ") {
			t.Fatalf("summary:\n%s", out.String())
		}
	}
}

// --docs: the preload writes the documents, inserts add more, finds return
// each group's 10 documents through the index and through a scan.
func TestBenchDocuments(t *testing.T) {
	_, url := nodetest.Start(t, "bench-docs", 2)
	var out bytes.Buffer
	if err := runBench([]string{"--addr", strings.TrimPrefix(url, "http://"), "--docs", "find", "--preload", "--keys", "60", "--clients", "3", "--duration", "1s", "--value-size", "8"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "preloaded 60 keys") || !strings.Contains(out.String(), "find ") {
		t.Fatalf("find run: %s", out.String())
	}
	c := client.New(url)
	docs, _, err := c.FindDocs(t.Context(), benchColl, client.FindRequest{Filter: map[string]any{"grp": 3}, Hint: "_scan"})
	if err != nil || len(docs) != 10 {
		t.Fatalf("group 3: %d documents, %v", len(docs), err)
	}
	for _, hint := range []string{"_scan", "by_grp"} {
		bc := benchConfig{addrs: []string{url}, clients: 2, duration: 500 * time.Millisecond, keys: 60, docs: "find", hint: hint, seed: 1}
		ctx, cancel := context.WithTimeout(t.Context(), bc.duration)
		res := bench(ctx, benchClients(bc), bc, func(int64, int64, time.Duration) {})
		cancel()
		if res.errors != 0 || len(res.puts) == 0 || len(res.gets) != 0 {
			t.Fatalf("find with hint %s: %d finds, %d gets, %d errors (%v)", hint, len(res.puts), len(res.gets), res.errors, res.firstError)
		}
	}
	out.Reset()
	if err := runBench([]string{"--addr", strings.TrimPrefix(url, "http://"), "--docs", "insert", "--clients", "3", "--duration", "1s"}, &out); err != nil || !strings.Contains(out.String(), "insert ") {
		t.Fatalf("insert run: %v %s", err, out.String())
	}
	docs, _, err = c.FindDocs(t.Context(), benchColl, client.FindRequest{Filter: map[string]any{"_id": map[string]any{"$prefix": "i"}}, Hint: "_scan"})
	if err != nil || len(docs) == 0 {
		t.Fatalf("inserted documents: %d, %v", len(docs), err)
	}
	if list, err := c.Indexes(t.Context(), benchColl); err != nil || len(list) != 2 {
		t.Fatalf("indexes of the bench collection: %+v %v", list, err)
	}
}
