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

	bc := benchConfig{clients: 4, duration: time.Second, keys: 50, valueSize: 32, readRatio: 0.5, consistency: "linearizable", seed: 3}
	ctx, cancel := context.WithTimeout(t.Context(), bc.duration)
	defer cancel()
	c := client.New(url)
	res := bench(ctx, c, bc, func(int64, int64, time.Duration) {})
	if res.errors != 0 {
		t.Fatalf("%d errors, first: %v", res.errors, res.firstError)
	}
	if len(res.puts) == 0 || len(res.gets) == 0 {
		t.Fatalf("%d puts, %d gets", len(res.puts), len(res.gets))
	}
	page, err := c.Scan(t.Context(), client.ScanRequest{Prefix: "bench/"})
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
}
