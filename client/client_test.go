package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/internal/nodetest"
)

func startNode(t *testing.T) *client.Client {
	t.Helper()
	_, url := nodetest.Start(t, "n1", 2)
	return client.New(url)
}

func TestClientAgainstNode(t *testing.T) {
	c := startNode(t)
	ctx := t.Context()
	v1, err := c.Put(ctx, "dir/a b", []byte("one"))
	if err != nil || v1 == 0 {
		t.Fatalf("put: %d %v", v1, err)
	}
	val, ver, err := c.Get(ctx, "dir/a b")
	if err != nil || string(val) != "one" || ver != v1 {
		t.Fatalf("get: %q@%d %v, want one@%d", val, ver, err, v1)
	}
	if _, err := c.Put(ctx, "dir/a b", []byte("x"), client.IfVersion(0)); !errors.Is(err, client.ErrVersionMismatch) {
		t.Fatalf("create-if-absent on an existing key: %v", err)
	}
	v2, err := c.Put(ctx, "dir/a b", []byte("two"), client.IfVersion(v1))
	if err != nil || v2 <= v1 {
		t.Fatalf("conditional put: %d %v", v2, err)
	}
	if val, _, err := c.Get(ctx, "dir/a b", client.Stale(5*time.Second)); err != nil || string(val) != "two" {
		t.Fatalf("stale get: %q %v", val, err)
	}
	// A key that is not valid UTF-8 comes back from a scan with its exact
	// bytes; a transaction refuses it rather than have JSON rename it.
	binKey := "bin\xff\xfekey"
	if _, err := c.Put(ctx, binKey, []byte("raw")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "bin-text", []byte("text")); err != nil {
		t.Fatal(err)
	}
	page, err := c.Scan(ctx, client.ScanRequest{Prefix: "bin"})
	if err != nil || len(page.Items) != 2 || page.Items[0].Key != "bin-text" || page.Items[1].Key != binKey || string(page.Items[1].Value) != "raw" {
		t.Fatalf("scan of a key that is not UTF-8: %+v %v", page, err)
	}
	if val, _, err := c.Get(ctx, page.Items[1].Key); err != nil || string(val) != "raw" {
		t.Fatalf("get of the scanned key: %q %v", val, err)
	}
	for _, tx := range []client.Txn{
		{Then: []client.TxnOp{client.TxnPut("bin\xffother", []byte("x"))}},
		{If: []client.Compare{client.Exists(binKey)}, Then: []client.TxnOp{client.TxnPut("fine", []byte("x"))}},
		{Else: []client.TxnOp{client.TxnDelete(binKey)}},
	} {
		if _, err := c.Txn(ctx, tx); !errors.Is(err, client.ErrBadRequest) || !strings.Contains(err.Error(), "UTF-8") {
			t.Fatalf("txn with a key that is not UTF-8: %v", err)
		}
	}
	for _, k := range []string{"bin\uFFFDother", "fine"} {
		if _, _, err := c.Get(ctx, k); !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("a refused transaction wrote %q: %v", k, err)
		}
	}

	// The same request ID applies once.
	r1, err := c.Put(ctx, "once", []byte("x"), client.RequestID("id-1"))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := c.Put(ctx, "once", []byte("y"), client.RequestID("id-1"))
	if err != nil || r2 != r1 {
		t.Fatalf("retry with the same request ID: version %d then %d (%v)", r1, r2, err)
	}
	if val, _, _ := c.Get(ctx, "once"); string(val) != "x" {
		t.Fatalf("retry applied again: %q", val)
	}
	if err := c.Delete(ctx, "once"); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "once"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("delete absent: %v", err)
	}
	if _, _, err := c.Get(ctx, "once"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	if _, err := c.Put(ctx, "big", make([]byte, 1<<20+1)); !errors.Is(err, client.ErrTooLarge) {
		t.Fatalf("oversized value: %v", err)
	}
	for i := range 12 {
		if _, err := c.Put(ctx, "s/"+string(rune('a'+i)), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	req := client.ScanRequest{Prefix: "s/", Limit: 5}
	for {
		page, err := c.Scan(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Items {
			keys = append(keys, it.Key)
		}
		if page.Cursor == "" {
			break
		}
		req.Cursor = page.Cursor
	}
	if len(keys) != 12 || keys[0] != "s/a" || keys[11] != "s/l" {
		t.Fatalf("scan: %v", keys)
	}
	var back []string
	req = client.ScanRequest{Prefix: "s/", Limit: 5, Reverse: true}
	for pages := 0; pages < 5; pages++ {
		page, err := c.Scan(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Items {
			back = append(back, it.Key)
		}
		if page.Cursor == "" {
			break
		}
		req.Cursor = page.Cursor
	}
	if slices.Reverse(back); !slices.Equal(back, keys) {
		t.Fatalf("reverse scan, reversed: %v; forward: %v", back, keys)
	}
	raw, err := c.Cluster(ctx)
	var cl struct{ Node string }
	if err != nil || json.Unmarshal(raw, &cl) != nil || cl.Node != "n1" {
		t.Fatalf("cluster: %s %v", raw, err)
	}
}

// fakeServer answers PUTs with the given statuses in turn and records the
// request IDs it saw.
type fakeServer struct {
	mu       sync.Mutex
	statuses []int
	ids      []string
}

func (f *fakeServer) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ids...)
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.ids = append(f.ids, r.Header.Get("Request-Id"))
	status := f.statuses[min(len(f.ids), len(f.statuses))-1]
	f.mu.Unlock()
	switch status {
	case 200:
		w.Write([]byte(`{"version":7}`))
	case 503:
		w.WriteHeader(503)
		w.Write([]byte(`{"error":{"code":"unavailable","message":"no leader"}}`))
	case 504:
		w.WriteHeader(504)
		w.Write([]byte(`{"error":{"code":"outcome_unknown","message":"leadership lost"}}`))
	case 0: // drop the connection after reading the request
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
	}
}

func TestClientRetriesOnlyWhatDidNotApply(t *testing.T) {
	ctx := context.Background()
	t.Run("503 is retried with the same request ID", func(t *testing.T) {
		f := &fakeServer{statuses: []int{503, 503, 200}}
		srv := httptest.NewServer(f)
		defer srv.Close()
		v, err := client.New(srv.URL, client.WithRetries(5, time.Millisecond)).Put(ctx, "k", []byte("v"))
		if err != nil || v != 7 {
			t.Fatalf("got %d %v", v, err)
		}
		if ids := f.seen(); len(ids) != 3 || ids[0] == "" || ids[0] != ids[1] || ids[1] != ids[2] {
			t.Fatalf("request IDs across retries: %q", ids)
		}
	})
	for name, status := range map[string]int{"504": 504, "dropped connection": 0} {
		t.Run(name+" is outcome unknown and not retried", func(t *testing.T) {
			f := &fakeServer{statuses: []int{status, 200}}
			srv := httptest.NewServer(f)
			defer srv.Close()
			_, err := client.New(srv.URL, client.WithRetries(5, time.Millisecond)).Put(ctx, "k", []byte("v"), client.RequestID("rid"))
			var apiErr *client.APIError
			if !errors.Is(err, client.ErrOutcomeUnknown) || !errors.As(err, &apiErr) || apiErr.RequestID != "rid" {
				t.Fatalf("got %v, want outcome unknown naming request rid", err)
			}
			if ids := f.seen(); len(ids) != 1 {
				t.Fatalf("a write of unknown outcome was sent %d times", len(ids))
			}
		})
	}
	t.Run("no server: retried, then unavailable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		_, err = client.New(addr, client.WithRetries(2, time.Millisecond)).Put(ctx, "k", bytes.Repeat([]byte("v"), 3))
		if !errors.Is(err, client.ErrUnavailable) {
			t.Fatalf("got %v, want unavailable", err)
		}
	})
}

// A scan page reads the same whether the server declares its length (as
// kvnode does, the client then reading it into one buffer of that size) or
// sends it chunked, and a body cut short of its declared length is an
// error, not a page.
func TestClientReadsDeclaredAndChunkedBodies(t *testing.T) {
	var items []string
	for i := range 300 {
		items = append(items, fmt.Sprintf(`{"key":"k%03d","value":"eA==","version":%d}`, i, i+1))
	}
	page := []byte(`{"items":[` + strings.Join(items, ",") + `],"cursor":"azI5OQ"}`)
	for _, mode := range []string{"declared", "chunked", "short"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch mode {
			case "declared":
				w.Header().Set("Content-Length", strconv.Itoa(len(page)))
				w.Write(page)
			case "chunked":
				for p := page; len(p) > 0; p = p[min(len(p), 1000):] {
					w.Write(p[:min(len(p), 1000)])
					w.(http.Flusher).Flush()
				}
			case "short":
				w.Header().Set("Content-Length", strconv.Itoa(len(page)+10))
				w.Write(page)
			}
		}))
		got, err := client.New(srv.URL, client.WithRetries(0, 0)).Scan(t.Context(), client.ScanRequest{Prefix: "k"})
		srv.Close()
		if mode == "short" {
			if err == nil {
				t.Fatalf("a body short of its length read as a page of %d", len(got.Items))
			}
			continue
		}
		if err != nil || len(got.Items) != 300 || got.Items[299].Key != "k299" || got.Items[299].Version != 300 || got.Cursor != "azI5OQ" {
			t.Fatalf("%s body: %d items, cursor %q, %v", mode, len(got.Items), got.Cursor, err)
		}
	}
}
