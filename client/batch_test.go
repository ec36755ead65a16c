package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairndb/cairn/internal/nodetest"
)

// gate holds the first GET of a key until opened, and counts requests by
// kind ("GET" for a single get, "POST /v1/batch" for a batch).
type gate struct {
	next   http.RoundTripper
	open   chan struct{}
	mu     sync.Mutex
	held   bool
	counts map[string]int
	sizes  []int // operations per batch
}

func newGate(next http.RoundTripper) *gate {
	return &gate{next: next, open: make(chan struct{}), counts: map[string]int{}}
}

func (g *gate) RoundTrip(r *http.Request) (*http.Response, error) {
	g.mu.Lock()
	kind := r.Method
	if r.Method == http.MethodPost {
		kind += " " + r.URL.Path
		if r.Body != nil {
			var req struct{ Ops []json.RawMessage }
			b, _ := r.GetBody()
			_ = json.NewDecoder(b).Decode(&req)
			g.sizes = append(g.sizes, len(req.Ops))
		}
	}
	g.counts[kind]++
	hold := r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/kv/") && !g.held
	if hold {
		g.held = true
	}
	g.mu.Unlock()
	if hold {
		<-g.open
	}
	return g.next.RoundTrip(r)
}

// waitHeld waits until the first get is held at the gate.
func (g *gate) waitHeld(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for g.count("GET") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no get reached the gate")
		}
		time.Sleep(time.Millisecond)
	}
}

// getHeld starts a get of "first" through c and waits until it is held at
// g's gate; its error arrives on the channel once the gate opens.
func getHeld(t *testing.T, c *Client, g *gate) <-chan error {
	t.Helper()
	first := make(chan error, 1)
	go func() {
		_, _, err := c.Get(context.Background(), "first")
		first <- err
	}()
	g.waitHeld(t)
	return first
}

func (g *gate) count(kind string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.counts[kind]
}

// queued returns how many gets wait for a batch to base.
func queued(c *Client, base string) int {
	c.batch.mu.Lock()
	defer c.batch.mu.Unlock()
	if nb := c.batch.nodes[base]; nb != nil {
		return len(nb.queue)
	}
	return 0
}

// waitQueued waits until n gets wait for a batch to base.
func waitQueued(t *testing.T, c *Client, base string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for queued(c, base) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d gets queued for a batch, want %d", queued(c, base), n)
		}
		time.Sleep(time.Millisecond)
	}
}

type getAnswer struct {
	value   []byte
	version uint64
	err     error
}

// Gets that wait behind the one request in flight go together in one
// batch, and each caller gets what a get of its own returns.
func TestBatchedGetsAnswerAsSingleGets(t *testing.T) {
	_, url := nodetest.Start(t, "n1", 2)
	ctx := t.Context()
	plain := New(url)
	keys := []string{"held", "b/é ✓", "b/\xff\xfe bytes", "b/empty", "b/missing"}
	for i := range 20 {
		keys = append(keys, fmt.Sprintf("b/%02d", i))
	}
	for _, k := range keys {
		var v []byte
		switch k {
		case "b/missing":
			continue
		case "b/empty":
		default:
			v = []byte("value of " + k)
		}
		if _, err := plain.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]getAnswer{}
	for _, k := range keys {
		v, ver, err := plain.Get(ctx, k)
		want[k] = getAnswer{v, ver, err}
	}
	if !errors.Is(want["b/missing"].err, ErrNotFound) || want["b/empty"].value == nil {
		t.Fatalf("single gets: missing %v, empty %q", want["b/missing"].err, want["b/empty"].value)
	}

	g := newGate(http.DefaultTransport)
	c := New(url, WithBatching(1), WithHTTPClient(&http.Client{Transport: g}))
	got := make([]getAnswer, len(keys))
	var wg sync.WaitGroup
	wg.Go(func() {
		v, ver, err := c.Get(ctx, keys[0])
		got[0] = getAnswer{v, ver, err}
	})
	g.waitHeld(t)
	for i := 1; i < len(keys); i++ {
		wg.Go(func() {
			var opts []ReadOption
			if i%2 == 0 {
				opts = append(opts, Stale(time.Minute))
			}
			v, ver, err := c.Get(ctx, keys[i], opts...)
			got[i] = getAnswer{v, ver, err}
		})
	}
	waitQueued(t, c, c.base, len(keys)-1)
	close(g.open)
	wg.Wait()

	for i, k := range keys {
		w, a := want[k], got[i]
		if string(a.value) != string(w.value) || (a.value == nil) != (w.value == nil) || a.version != w.version || !sameErr(a.err, w.err) {
			t.Errorf("get %q batched: %q @%d %v, alone: %q @%d %v", k, a.value, a.version, a.err, w.value, w.version, w.err)
		}
	}
	if n, b := g.count("GET"), g.count("POST /v1/batch"); n != 1 || b != 1 || g.sizes[0] != len(keys)-1 {
		t.Fatalf("requests: %d single gets and %d batches of %v operations, want 1 and 1 of %d", n, b, g.sizes, len(keys)-1)
	}
}

func sameErr(a, b error) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	var ea, eb *APIError
	return errors.As(a, &ea) && errors.As(b, &eb) && ea.Status == eb.Status && ea.Code == eb.Code
}

// fakeNode answers single gets with the key as the value, and batches with
// batch (nil: 404, as a node without /v1/batch).
type fakeNode struct {
	batch func(w http.ResponseWriter, ops []batchOp)
	mu    sync.Mutex
	gets  []string
}

func (f *fakeNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/kv/"):
		k := strings.TrimPrefix(r.URL.Path, "/v1/kv/")
		f.mu.Lock()
		f.gets = append(f.gets, k)
		f.mu.Unlock()
		w.Header().Set("Kv-Version", "3")
		w.Write([]byte("v:" + k))
	case r.Method == http.MethodPost && r.URL.Path == "/v1/batch" && f.batch != nil:
		var req struct{ Ops []batchOp }
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		f.batch(w, req.Ops)
	default:
		w.WriteHeader(404)
		w.Write([]byte(`{"error":{"code":"not_found","message":"no such route"}}`))
	}
}

// batchedGets runs gets of keys through c, the first alone (held at g's
// gate until the others are queued), and returns their answers.
func batchedGets(t *testing.T, c *Client, g *gate, keys []string) []getAnswer {
	t.Helper()
	got := make([]getAnswer, len(keys))
	var wg sync.WaitGroup
	for i, k := range keys {
		wg.Go(func() {
			v, ver, err := c.Get(t.Context(), k)
			got[i] = getAnswer{v, ver, err}
		})
		if i == 0 {
			g.waitHeld(t)
		}
	}
	waitQueued(t, c, c.base, len(keys)-1)
	close(g.open)
	wg.Wait()
	return got
}

// A batch refused as a whole (here by a node that has no /v1/batch) is
// sent again one get per request.
func TestRefusedBatchIsSentAgainAlone(t *testing.T) {
	f := &fakeNode{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	g := newGate(http.DefaultTransport)
	c := New(srv.URL, WithBatching(1), WithHTTPClient(&http.Client{Transport: g}))
	keys := []string{"a", "b", "c", "d"}
	for i, a := range batchedGets(t, c, g, keys) {
		if a.err != nil || string(a.value) != "v:"+keys[i] || a.version != 3 {
			t.Errorf("get %s: %q @%d %v", keys[i], a.value, a.version, a.err)
		}
	}
	if n, b := g.count("GET"), g.count("POST /v1/batch"); n != 4 || b != 1 {
		t.Fatalf("%d single gets and %d batches, want 4 and 1", n, b)
	}
}

// Each get of a batch gets its own answer: a 503 is retried, other errors
// are the caller's, a value is returned as it came.
func TestBatchAnswersEachGet(t *testing.T) {
	var mu sync.Mutex
	tries := map[string]int{}
	f := &fakeNode{batch: func(w http.ResponseWriter, ops []batchOp) {
		var out struct {
			Results []map[string]any `json:"results"`
		}
		for _, op := range ops {
			mu.Lock()
			tries[op.Key]++
			n := tries[op.Key]
			mu.Unlock()
			switch {
			case op.Key == "flaky" && n == 1:
				out.Results = append(out.Results, map[string]any{"status": 503, "error": map[string]string{"code": "unavailable", "message": "no leader"}})
			case op.Key == "gone":
				out.Results = append(out.Results, map[string]any{"status": 404, "error": map[string]string{"code": "not_found", "message": "absent"}})
			case op.Key == "odd":
				out.Results = append(out.Results, map[string]any{"status": 400, "error": map[string]string{"code": "bad_request", "message": "odd"}})
			default:
				out.Results = append(out.Results, map[string]any{"status": 200, "version": 9, "value": []byte("b:" + op.Key + "/" + op.Consistency)})
			}
		}
		json.NewEncoder(w).Encode(out)
	}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	g := newGate(http.DefaultTransport)
	c := New(srv.URL, WithBatching(1), WithRetries(3, time.Millisecond), WithHTTPClient(&http.Client{Transport: g}))
	got := batchedGets(t, c, g, []string{"first", "flaky", "gone", "odd", "fine"})
	if a := got[0]; a.err != nil || string(a.value) != "v:first" {
		t.Errorf("first: %q %v", a.value, a.err)
	}
	// flaky: 503 in the batch, then retried (alone or in a batch).
	if a := got[1]; a.err != nil || (string(a.value) != "v:flaky" && string(a.value) != "b:flaky/") {
		t.Errorf("flaky: %q %v, want its value after a retry", a.value, a.err)
	}
	if a := got[2]; !errors.Is(a.err, ErrNotFound) {
		t.Errorf("gone: %v, want not found", a.err)
	}
	if a := got[3]; !errors.Is(a.err, ErrBadRequest) {
		t.Errorf("odd: %v, want bad request", a.err)
	}
	if a := got[4]; a.err != nil || string(a.value) != "b:fine/" || a.version != 9 {
		t.Errorf("fine: %q @%d %v", a.value, a.version, a.err)
	}
	mu.Lock()
	defer mu.Unlock()
	if tries["gone"] != 1 || tries["odd"] != 1 || tries["fine"] != 1 {
		t.Errorf("answered gets were sent again: %v", tries)
	}
}

// A batch whose connection fails is retried like a single get; once the
// retries are spent the gets are unavailable.
func TestBatchConnectionFailure(t *testing.T) {
	for _, retries := range []int{0, 2} {
		t.Run(fmt.Sprint("retries ", retries), func(t *testing.T) {
			var mu sync.Mutex
			batches := 0
			f := &fakeNode{batch: func(w http.ResponseWriter, ops []batchOp) {
				mu.Lock()
				batches++
				mu.Unlock()
				conn, _, _ := w.(http.Hijacker).Hijack()
				conn.Close()
			}}
			srv := httptest.NewServer(f)
			defer srv.Close()
			g := newGate(http.DefaultTransport)
			c := New(srv.URL, WithBatching(1), WithRetries(retries, time.Millisecond), WithHTTPClient(&http.Client{Transport: g}))
			keys := []string{"first", "x", "y"}
			got := batchedGets(t, c, g, keys)
			for i, a := range got[1:] {
				k := keys[i+1]
				if retries == 0 && !errors.Is(a.err, ErrUnavailable) {
					t.Errorf("%s without retries: %q %v, want unavailable", k, a.value, a.err)
				}
				if retries > 0 && (a.err != nil || string(a.value) != "v:"+k) {
					t.Errorf("%s with retries: %q %v, want its value", k, a.value, a.err)
				}
			}
			mu.Lock()
			if batches < 1 || (retries == 0 && batches != 1) {
				t.Errorf("%d batches sent", batches)
			}
			mu.Unlock()
		})
	}
}

// A get whose context ends while it waits for a batch returns at once and
// leaves the queue; no batch is sent for it.
func TestQueuedGetCancelled(t *testing.T) {
	f := &fakeNode{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	g := newGate(http.DefaultTransport)
	c := New(srv.URL, WithBatching(1), WithHTTPClient(&http.Client{Transport: g}))
	first := getHeld(t, c, g)
	ctx, cancel := context.WithCancel(context.Background())
	waited := make(chan error, 1)
	go func() {
		_, _, err := c.Get(ctx, "waiting")
		waited <- err
	}()
	waitQueued(t, c, c.base, 1)
	cancel()
	if err := <-waited; !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("cancelled get: %v, want unavailable: context canceled", err)
	}
	waitQueued(t, c, c.base, 0)
	close(g.open)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if b := g.count("POST /v1/batch"); b != 0 {
		t.Fatalf("%d batches sent for a cancelled get", b)
	}
}

// A batch that outlasts its callers' deadlines answers each of them with
// its own context's error; a batch cut short by the HTTP client's own
// timeout answers callers without a deadline (they do not wait forever).
func TestBatchDeadlines(t *testing.T) {
	slow := make(chan struct{})
	f := &fakeNode{batch: func(w http.ResponseWriter, ops []batchOp) {
		select {
		case <-slow:
		case <-time.After(10 * time.Second):
		}
	}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	defer close(slow) // first: frees the handlers srv.Close waits for

	t.Run("callers' deadlines", func(t *testing.T) {
		g := newGate(http.DefaultTransport)
		c := New(srv.URL, WithBatching(1), WithRetries(3, time.Millisecond), WithHTTPClient(&http.Client{Transport: g}))
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		first := getHeld(t, c, g)
		errs := make(chan error, 2)
		for _, k := range []string{"x", "y"} {
			go func() {
				_, _, err := c.Get(ctx, k)
				errs <- err
			}()
		}
		waitQueued(t, c, c.base, 2)
		close(g.open)
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := <-errs; !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "deadline exceeded") {
				t.Errorf("get past its deadline: %v", err)
			}
		}
		if ctx.Err() == nil {
			t.Error("answered before the callers' deadline")
		}
	})
	t.Run("client timeout", func(t *testing.T) {
		g := newGate(http.DefaultTransport)
		c := New(srv.URL, WithBatching(1), WithRetries(0, time.Millisecond), WithHTTPClient(&http.Client{Transport: g, Timeout: 300 * time.Millisecond}))
		start := time.Now()
		got := batchedGets(t, c, g, []string{"first", "x"})
		if got[0].err != nil || !errors.Is(got[1].err, ErrUnavailable) {
			t.Fatalf("answers %v / %v, want the first's value and x unavailable", got[0].err, got[1].err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("a get without a deadline waited %v for a batch the client timed out", d)
		}
	})
}
