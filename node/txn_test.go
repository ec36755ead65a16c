package node

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/shard"
)

// keysOn returns count keys with prefix that n's ring puts on one shard,
// and a key on another shard.
func keysOn(t *testing.T, n *Node, prefix string, count int) (same []string, other string) {
	t.Helper()
	ring := n.view.Load().ring
	want := ring.Locate([]byte(prefix + "0"))
	for i := 0; len(same) < count || other == ""; i++ {
		k := prefix + strconv.Itoa(i)
		if ring.Locate([]byte(k)) == want {
			if len(same) < count {
				same = append(same, k)
			}
		} else if other == "" {
			other = k
		}
		if i > 100000 {
			t.Fatal("no keys found")
		}
	}
	return same, other
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

type txnReply struct {
	Succeeded bool `json:"succeeded"`
	Results   []struct {
		Version *uint64 `json:"version"`
		Deleted *bool   `json:"deleted"`
		Found   *bool   `json:"found"`
		Value   []byte  `json:"value"`
	} `json:"results"`
	Duplicate bool `json:"duplicate"`
}

func postTxn(t *testing.T, url, body string, hdr map[string]string) (int, txnReply, []byte) {
	t.Helper()
	st, _, b := do(t, "POST", url+"/v1/txn", []byte(body), hdr)
	var r txnReply
	if st == 200 {
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("txn reply %s: %v", b, err)
		}
	}
	return st, r, b
}

func TestHTTPTxn(t *testing.T) {
	n, srv := startHTTP(t)
	keys, _ := keysOn(t, n, "acct-", 3)
	a, b, c := keys[0], keys[1], keys[2]
	st, _, body := do(t, "PUT", srv.URL+"/v1/kv/"+a, []byte("10"), nil)
	if st != 200 {
		t.Fatalf("put: %d %s", st, body)
	}
	var put struct{ Version uint64 }
	_ = json.Unmarshal(body, &put)

	// Comparisons hold: the then branch runs, its get sees its own put.
	txn := fmt.Sprintf(`{"if":[{"key":%q,"version":%d},{"key":%q,"exists":false},{"key":%q,"value":%q}],
		"then":[{"put":{"key":%q,"value":%q}},{"get":{"key":%q}},{"delete":{"key":%q}},{"get":{"key":%q}}],
		"else":[{"get":{"key":%q}}]}`, a, put.Version, b, a, b64("10"), a, b64("20"), a, c, c, a)
	st, r, body := postTxn(t, srv.URL, txn, map[string]string{"Request-Id": "move-1"})
	if st != 200 || !r.Succeeded || len(r.Results) != 4 {
		t.Fatalf("txn: %d %s", st, body)
	}
	if r.Results[0].Version == nil || *r.Results[0].Version <= put.Version {
		t.Fatalf("put result %s, want a version above %d", body, put.Version)
	}
	newVersion := *r.Results[0].Version
	if g := r.Results[1]; g.Found == nil || !*g.Found || string(g.Value) != "20" || *g.Version != newVersion {
		t.Fatalf("get after put in the same txn: %s", body)
	}
	if d := r.Results[2]; d.Deleted == nil || *d.Deleted {
		t.Fatalf("delete of an absent key: %s", body)
	}
	if g := r.Results[3]; g.Found == nil || *g.Found || g.Value != nil {
		t.Fatalf("get of an absent key: %s", body)
	}
	if st, h, v := do(t, "GET", srv.URL+"/v1/kv/"+a, nil, nil); st != 200 || string(v) != "20" || h.Get("Kv-Version") != strconv.FormatUint(newVersion, 10) {
		t.Fatalf("after txn: %d %q %s", st, v, h.Get("Kv-Version"))
	}

	// The same request ID again: the first outcome, nothing applied twice.
	st, r, body = postTxn(t, srv.URL, txn, map[string]string{"Request-Id": "move-1"})
	if st != 200 || !r.Duplicate || !r.Succeeded || *r.Results[0].Version != newVersion || r.Results[1].Found != nil {
		t.Fatalf("retried txn: %d %s", st, body)
	}

	// A fresh ID: the version comparison now fails and else runs.
	st, r, body = postTxn(t, srv.URL, txn, nil)
	if st != 200 || r.Succeeded || len(r.Results) != 1 || string(r.Results[0].Value) != "20" {
		t.Fatalf("txn with a stale version: %d %s", st, body)
	}

	// version_lt / version_gt.
	st, r, body = postTxn(t, srv.URL, fmt.Sprintf(`{"if":[{"key":%q,"version_gt":%d},{"key":%q,"version_lt":%d}],"then":[{"put":{"key":%q,"value":%q}}]}`,
		a, newVersion-1, a, newVersion+1, b, b64("x")), nil)
	if st != 200 || !r.Succeeded {
		t.Fatalf("range comparisons: %d %s", st, body)
	}
}

// Rejected transactions get a clear 4xx (or 501 across shards) and propose
// nothing.
func TestHTTPTxnRejects(t *testing.T) {
	n, srv := startHTTP(t)
	keys, other := keysOn(t, n, "k", 1)
	k := keys[0]
	deep := strings.Repeat(`{"if":[`, 40) + strings.Repeat(`]}`, 40)
	before := logLength(n)
	for _, tt := range []struct {
		name, body string
		status     int
		code       string
	}{
		{"not JSON", `{"then":`, 400, "bad_request"},
		{"unknown field", `{"then":[{"get":{"key":"a"}}],"when":[]}`, 400, "bad_request"},
		{"two values", `{"then":[{"get":{"key":"a"}}]} {}`, 400, "bad_request"},
		{"stray bracket after the body", `{"then":[{"get":{"key":"a"}}]}]`, 400, "bad_request"},
		{"empty", `{}`, 400, "bad_request"},
		{"only comparisons", `{"if":[{"key":"a","exists":true}]}`, 400, "bad_request"},
		{"comparison of two kinds", `{"if":[{"key":"a","exists":true,"version":3}],"then":[{"get":{"key":"a"}}]}`, 400, "bad_request"},
		{"comparison without kind", `{"if":[{"key":"a"}],"then":[{"get":{"key":"a"}}]}`, 400, "bad_request"},
		{"comparison without key", `{"if":[{"exists":true}],"then":[{"get":{"key":"a"}}]}`, 400, "bad_request"},
		{"negative version", `{"if":[{"key":"a","version":-1}],"then":[{"get":{"key":"a"}}]}`, 400, "bad_request"},
		{"op of two kinds", `{"then":[{"get":{"key":"a"},"delete":{"key":"a"}}]}`, 400, "bad_request"},
		{"put without value", `{"then":[{"put":{"key":"a"}}]}`, 400, "bad_request"},
		{"get with value", `{"then":[{"get":{"key":"a","value":"eA=="}}]}`, 400, "bad_request"},
		{"empty key", `{"then":[{"delete":{"key":""}}]}`, 400, "bad_request"},
		{"value not base64", `{"then":[{"put":{"key":"a","value":"***"}}]}`, 400, "bad_request"},
		{"nested too deep", deep, 400, "bad_request"},
		{"key not UTF-8", "{\"then\":[{\"put\":{\"key\":\"a\xffb\",\"value\":\"eA==\"}}]}", 400, "bad_request"},
		{"key too long", fmt.Sprintf(`{"then":[{"get":{"key":%q}}]}`, strings.Repeat("x", 5000)), 413, "too_large"},
		{"body too large", `{"then":[{"put":{"key":"a","value":"` + strings.Repeat("A", 5<<20) + `"}}]}`, 413, "too_large"},
		{"across shards, bad", fmt.Sprintf(`{"then":[{"put":{"key":%q,"value":"eA=="}},{"put":{"key":%q}}]}`, k, other), 400, "bad_request"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, _, body := do(t, "POST", srv.URL+"/v1/txn", []byte(tt.body), nil)
			if st != tt.status || errCode(t, body) != tt.code {
				t.Fatalf("%d %s, want %d %s", st, body, tt.status, tt.code)
			}
		})
	}
	if after := logLength(n); after != before {
		t.Fatalf("rejected transactions proposed: log grew from %d to %d", before, after)
	}
}

// Concurrent read-modify-write transactions on one counter: each reads the
// version, then writes only if it is unchanged. Strict serializability
// means no increment is lost: the final value counts the successes.
func TestTxnCompareAndSwapLosesNoIncrement(t *testing.T) {
	n := startReady(t, testNodeConfig(t.TempDir()))
	defer n.Close()
	ctx := t.Context()
	key := []byte("counter")
	if _, err := n.Put(ctx, key, []byte("0"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	const workers, tries = 8, 40
	var (
		mu        sync.Mutex
		successes int
		wg        sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for range tries {
				r, err := n.Transact(ctx, TxnRequest{Then: []fsm.Op{fsm.Get(key)}})
				if err != nil {
					t.Error(err)
					return
				}
				cur, _ := strconv.Atoi(string(r.Results[0].Value))
				r, err = n.Transact(ctx, TxnRequest{
					If:   []fsm.Compare{{Kind: fsm.CompareVersion, Key: key, Version: r.Results[0].Version}},
					Then: []fsm.Op{fsm.Put(key, []byte(strconv.Itoa(cur+1)))},
				})
				if err != nil {
					t.Error(err)
					return
				}
				if r.Succeeded {
					mu.Lock()
					successes++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	it, err := n.Get(ctx, key, shard.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(it.Value); got != strconv.Itoa(successes) || successes == 0 {
		t.Fatalf("counter %s after %d successful increments", got, successes)
	}
	if _, err := n.Transact(ctx, TxnRequest{If: []fsm.Compare{{Kind: fsm.CompareExists, Key: key}}}); !errors.Is(err, fsm.ErrInvalid) {
		t.Fatalf("transaction without operations: %v", err)
	}
}

// A transaction or read whose context ends before anything is proposed
// reports shard.ErrUnavailable (nothing applied), not a bare context
// error, on the one-shard and the cross-shard path alike.
func TestTxnContextEndedIsUnavailable(t *testing.T) {
	n := startReady(t, testNodeConfig(t.TempDir()))
	defer n.Close()
	same, other := keysOn(t, n, "ctx", 2)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for name, keys := range map[string][]string{"one shard": same, "cross shard": {same[0], other}} {
		var ops []fsm.Op
		for _, k := range keys {
			ops = append(ops, fsm.Put([]byte(k), []byte("v")))
		}
		_, err := n.Transact(ctx, TxnRequest{Then: ops})
		if !errors.Is(err, shard.ErrUnavailable) {
			t.Errorf("%s: %v, want an error wrapping shard.ErrUnavailable", name, err)
		}
		var gets []fsm.Op
		for _, k := range keys {
			gets = append(gets, fsm.Get([]byte(k)))
		}
		if _, err := n.Transact(ctx, TxnRequest{Then: gets}); !errors.Is(err, shard.ErrUnavailable) {
			t.Errorf("%s, reading: %v, want an error wrapping shard.ErrUnavailable", name, err)
		}
	}
	if _, err := n.Get(ctx, []byte(same[0]), shard.ReadOptions{}); !errors.Is(err, shard.ErrUnavailable) {
		t.Errorf("get: %v, want an error wrapping shard.ErrUnavailable", err)
	}
	for _, k := range append(same, other) {
		if _, err := n.Get(t.Context(), []byte(k), shard.ReadOptions{}); !errors.Is(err, fsm.ErrNotFound) {
			t.Errorf("%s after a cancelled transaction: %v, want not found", k, err)
		}
	}
}

// proposePhase proposes p on shard id through n; the test fails unless it
// applied.
func proposePhase(t *testing.T, n *Node, id fsm.ShardID, p fsm.Phase) {
	t.Helper()
	if r, err := (txnCluster{n}).Propose(t.Context(), id, fsm.Command{Phase: &p}); err != nil || r.Code != fsm.OK {
		t.Fatalf("%s on %v: %+v %v", p.Kind, id, r, err)
	}
}

// prepareTx prepares transaction "tx", whose record goes on shard a,
// writing kb = "new" on shard b.
func prepareTx(t *testing.T, n *Node, a, b fsm.ShardID, kb []byte) {
	t.Helper()
	proposePhase(t, n, b, fsm.Phase{Kind: fsm.PhasePrepare, TxnID: "tx", RecordShard: a, Now: uint64(time.Now().UnixMilli()),
		Writes: []fsm.Op{fsm.Put(kb, []byte("new"))}})
}

// commitUnderRead returns a hook for testHookLockedRead that, the first
// time a read meets an intent, commits "tx" (prepareTx; the commit writes
// ka on a), resolves kb, forgets the record and then calls after (if
// any); met reports whether it ran.
func commitUnderRead(t *testing.T, n *Node, a, b fsm.ShardID, ka, kb []byte, after func()) (hook func(), met *atomic.Bool) {
	met = new(atomic.Bool)
	return func() {
		if met.Swap(true) {
			return
		}
		proposePhase(t, n, a, fsm.Phase{Kind: fsm.PhaseCommit, TxnID: "tx", RecordShard: a, Participants: []fsm.ShardID{a, b},
			Writes: []fsm.Op{fsm.Put(ka, []byte("x"))}})
		proposePhase(t, n, b, fsm.Phase{Kind: fsm.PhaseResolve, TxnID: "tx", Commit: true, Keys: [][]byte{kb}})
		proposePhase(t, n, a, fsm.Phase{Kind: fsm.PhaseForget, TxnID: "tx"})
		if after != nil {
			after()
		}
	}, met
}

// A get met an intent of a transaction that then committed, resolved its
// intents and forgot its record before the get asked for its fate. A
// missing record means either "not written yet" (the commit comes last)
// or "forgotten" (only once no intent is left): the get must not answer
// with the value from before the transaction, as it would if it took the
// missing record for one still to come.
func TestGetAfterRecordForgottenIsNotStale(t *testing.T) {
	n := startReady(t, testNodeConfig(t.TempDir()))
	defer n.Close()
	ctx := t.Context()
	ka := []byte("fk-0")
	var kb []byte
	for i := 1; kb == nil; i++ {
		if k := []byte(fmt.Sprintf("fk-%d", i)); n.Ring().Locate(k) != n.Ring().Locate(ka) {
			kb = k
		}
	}
	a, b := n.Ring().Locate(ka), n.Ring().Locate(kb)
	if _, err := n.Put(ctx, kb, []byte("old"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	prepareTx(t, n, a, b, kb)
	hook, met := commitUnderRead(t, n, a, b, ka, kb, nil)
	testHookLockedRead.Store(&hook)
	defer testHookLockedRead.Store(nil)
	it, err := n.Get(ctx, kb, shard.ReadOptions{})
	if !met.Load() {
		t.Fatal("the get never met the intent")
	}
	if err != nil || string(it.Value) != "new" {
		t.Fatalf("get after the transaction committed: %q, %v; want new", it.Value, err)
	}
}
