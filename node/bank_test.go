package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/shard"
	"github.com/cairndb/cairn/txn"
	"github.com/prometheus/client_golang/prometheus"
)

// bank is a set of accounts, each on a chosen shard, holding balances as
// decimal strings.
type bank struct {
	keys [][]byte
}

// newBank places n accounts round-robin over the ring's data shards.
func newBank(n *Node, accounts int) bank {
	shards := n.Ring().Shards()
	var b bank
	for i := range accounts {
		id := shards[i%len(shards)]
		for j := 0; ; j++ {
			k := fmt.Sprintf("acct-%d-%d", i, j)
			if n.Ring().Locate([]byte(k)) == id {
				b.keys = append(b.keys, []byte(k))
				break
			}
		}
	}
	return b
}

// read returns every balance and version from one transaction (one point in
// time across shards).
func (b bank) read(ctx context.Context, n *Node) ([]int, []uint64, error) {
	var gets []fsm.Op
	for _, k := range b.keys {
		gets = append(gets, fsm.Get(k))
	}
	r, err := n.Transact(ctx, TxnRequest{Then: gets})
	if err != nil {
		return nil, nil, err
	}
	bal, vers := make([]int, len(b.keys)), make([]uint64, len(b.keys))
	for i, res := range r.Results {
		if !res.Found {
			return nil, nil, fmt.Errorf("account %s missing", b.keys[i])
		}
		bal[i], _ = strconv.Atoi(string(res.Value))
		vers[i] = res.Version
	}
	return bal, vers, nil
}

// transfer moves amount from account i to j if i holds enough; false when
// it did not happen (too poor, or a concurrent change: nothing applied).
func (b bank) transfer(ctx context.Context, n *Node, i, j, amount int) (bool, error) {
	r, err := n.Transact(ctx, TxnRequest{Then: []fsm.Op{fsm.Get(b.keys[i]), fsm.Get(b.keys[j])}})
	if err != nil {
		return false, err
	}
	from, _ := strconv.Atoi(string(r.Results[0].Value))
	to, _ := strconv.Atoi(string(r.Results[1].Value))
	if from < amount {
		return false, nil
	}
	w, err := n.Transact(ctx, TxnRequest{
		If: []fsm.Compare{
			{Kind: fsm.CompareVersion, Key: b.keys[i], Version: r.Results[0].Version},
			{Kind: fsm.CompareVersion, Key: b.keys[j], Version: r.Results[1].Version},
		},
		Then: []fsm.Op{fsm.Put(b.keys[i], []byte(strconv.Itoa(from-amount))), fsm.Put(b.keys[j], []byte(strconv.Itoa(to+amount)))},
	})
	if err != nil {
		return false, err
	}
	return w.Succeeded, nil
}

// gaveUp reports errors that say a transaction applied nothing: it lost
// races until its attempts ran out, or found no leader or lock-free moment
// within its timeout, or a prepare went unanswered within it (on a machine
// overloaded by other tests).
func gaveUp(err error) bool {
	return errors.Is(err, txn.ErrConflict) || errors.Is(err, shard.ErrUnavailable)
}

func sum(bal []int) int {
	s := 0
	for _, v := range bal {
		s += v
	}
	return s
}

// intentsLeft counts the intents on every replica of every node.
func intentsLeft(nodes ...*Node) int {
	total := 0
	for _, n := range nodes {
		n.mu.RLock()
		for _, s := range n.shards {
			in, _ := s.FSM().Intents(1000)
			total += len(in)
		}
		n.mu.RUnlock()
	}
	return total
}

// Ten accounts over every shard of a 3-node cluster, 16 concurrent
// transferrers through all nodes, continuous reads of all balances in one
// transaction (until 100 transfers and 10 reads are done): the total never
// changes, no balance goes negative, and no lock is left at the end.
func TestBankAcrossShards(t *testing.T) {
	tc := startCluster(t, 3, 4, func(c *Config) { c.Txn.TTL = time.Second })
	nodes := []*Node{tc.nodes["n1"], tc.nodes["n2"], tc.nodes["n3"]}
	ctx := t.Context()
	b := newBank(nodes[0], 10)
	var init []fsm.Op
	for _, k := range b.keys {
		init = append(init, fsm.Put(k, []byte("100")))
	}
	if _, err := nodes[0].Transact(ctx, TxnRequest{Then: init}); err != nil {
		t.Fatal(err)
	}
	const total = 1000

	var done atomic.Bool
	var transfers, reads, conflicts atomic.Int64
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for !done.Load() {
				i, j := r.IntN(10), r.IntN(10)
				if i == j {
					continue
				}
				ok, err := b.transfer(ctx, nodes[w%3], i, j, 1+r.IntN(40))
				switch {
				case gaveUp(err):
					conflicts.Add(1)
				case err != nil:
					t.Errorf("transfer: %v", err)
					return
				case ok:
					transfers.Add(1)
				}
			}
		})
	}
	for rd := range 2 {
		wg.Go(func() {
			for !done.Load() {
				bal, _, err := b.read(ctx, nodes[rd])
				if gaveUp(err) {
					conflicts.Add(1)
					continue
				}
				if err != nil {
					t.Errorf("read: %v", err)
					return
				}
				reads.Add(1)
				if s := sum(bal); s != total {
					t.Errorf("balances %v sum to %d, want %d", bal, s, total)
				}
				for _, v := range bal {
					if v < 0 {
						t.Errorf("negative balance in %v", bal)
					}
				}
			}
		})
	}
	stop := func() { done.Store(true); wg.Wait() }
	t.Cleanup(stop) // also when the wait below fails
	// Run until enough has happened concurrently.
	const wantTransfers, wantReads = 100, 10
	start := time.Now()
	waitFor(t, "transfers and reads", 90*time.Second, func() error {
		if transfers.Load() < wantTransfers || reads.Load() < wantReads {
			return fmt.Errorf("%d transfers, %d reads (%d conflicts)", transfers.Load(), reads.Load(), conflicts.Load())
		}
		return nil
	})
	stop()
	bal, _, err := b.read(ctx, nodes[2])
	if err != nil || sum(bal) != total {
		t.Fatalf("final balances %v (sum %d), %v", bal, sum(bal), err)
	}
	t.Logf("%d transfers, %d total reads, %d conflicts in %v", transfers.Load(), reads.Load(), conflicts.Load(), time.Since(start).Round(time.Millisecond))
	waitFor(t, "no intents left", 10*time.Second, func() error {
		if n := intentsLeft(nodes...); n > 0 {
			return fmt.Errorf("%d intents", n)
		}
		return nil
	})
}

// The coordinator dies at each step of a transfer between two shards
// (at the last, after it answered, while it resolves in the background).
// The background resolver alone (nobody reads) releases every lock within
// the record's TTL plus a few resolve rounds; afterwards the total is
// intact, and a transfer that was decided is visible on both shards, one
// that was not has vanished.
func TestCoordinatorCrashes(t *testing.T) {
	for _, tt := range []struct {
		point     txn.Failpoint
		committed bool
		answered  bool // the transfer succeeded before the crash
	}{
		{txn.AfterPrepareOne, false, false},
		{txn.BeforeDecide, false, false},
		{txn.AfterDecide, true, false},
		{txn.AfterResolveOne, true, true},
	} {
		t.Run(string(tt.point), func(t *testing.T) {
			cfg := testNodeConfig(t.TempDir())
			cfg.Txn.TTL = 400 * time.Millisecond
			cfg.ResolveInterval = 100 * time.Millisecond
			arm := crashOnce(&cfg, tt.point)
			n, b := crashedTransfer(t, cfg, arm, tt.answered)
			ctx := t.Context()
			crashed := time.Now()
			if intentsLeft(n) == 0 && tt.point != txn.AfterResolveOne {
				t.Fatal("the crash left no intents: the failpoint is not where it claims")
			}
			bound := cfg.Txn.TTL + 5*cfg.ResolveInterval + time.Second
			waitFor(t, "locks released", bound, func() error {
				if k := intentsLeft(n); k > 0 {
					return fmt.Errorf("%d intents", k)
				}
				return nil
			})
			t.Logf("locks released %v after the crash (bound %v)", time.Since(crashed).Round(time.Millisecond), bound)
			want := []int{100, 100}
			if tt.committed {
				want = []int{70, 130}
			}
			for i, k := range b.keys {
				it, err := n.Get(ctx, k, shard.ReadOptions{})
				if err != nil || string(it.Value) != strconv.Itoa(want[i]) {
					t.Fatalf("%s = %q (%v), want %d", k, it.Value, err, want[i])
				}
			}
			bal, _, err := b.read(ctx, n)
			if err != nil || sum(bal) != 200 {
				t.Fatalf("balances %v, %v", bal, err)
			}
		})
	}
}

// A participant's leader changes between prepare and the decision: the
// transaction still commits, exactly once, on the new leaders.
func TestLeaderChangeBetweenPrepareAndCommit(t *testing.T) {
	var tc *testCluster
	var moved atomic.Bool
	var b bank
	tc = startCluster(t, 3, 2, func(c *Config) {
		c.Txn.Failpoint = func(f txn.Failpoint) error {
			if f != txn.BeforeDecide || moved.Swap(true) {
				return nil
			}
			for _, k := range b.keys {
				id := tc.nodes["n1"].Ring().Locate(k)
				old, _, _ := tc.leaderOf(id).Leader()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				leader, err := tc.nodes["n1"].TransferLeadership(ctx, id, "")
				cancel()
				if err != nil {
					return fmt.Errorf("moving %v's leadership: %w", id, err)
				}
				if leader == old {
					return fmt.Errorf("%v still led by %s", id, leader)
				}
			}
			return nil
		}
	})
	n := tc.nodes["n2"]
	ctx := t.Context()
	b = newBank(n, 2)
	for _, k := range b.keys {
		if _, err := n.Put(ctx, k, []byte("100"), WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ok, err := b.transfer(ctx, n, 0, 1, 25)
	if err != nil || !ok || !moved.Load() {
		t.Fatalf("transfer: %t %v (leaders moved: %t)", ok, err, moved.Load())
	}
	for _, node := range tc.nodes {
		bal, _, err := b.read(ctx, node)
		if err != nil || bal[0] != 75 || bal[1] != 125 {
			t.Fatalf("balances through %s: %v %v, want [75 125]", node.cfg.Name, bal, err)
		}
	}
	waitFor(t, "no intents left", 10*time.Second, func() error {
		if k := intentsLeft(tc.nodes["n1"], tc.nodes["n2"], tc.nodes["n3"]); k > 0 {
			return fmt.Errorf("%d intents", k)
		}
		return nil
	})
}

// The interactive API: 8 workers move money between accounts on different
// shards with n.Txn (read two balances, check funds, write both) while a
// reader sums all balances in its own n.Txn; every sum is the total. A
// function that fails writes nothing; reads see the transaction's writes.
func TestInteractiveTxn(t *testing.T) {
	n := startReady(t, testNodeConfig(t.TempDir()))
	defer n.Close()
	ctx := t.Context()
	b := newBank(n, 6)
	for _, k := range b.keys {
		if _, err := n.Put(ctx, k, []byte("50"), WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	balance := func(ctx context.Context, tx *txn.Tx, k []byte) (int, error) {
		v, found, err := tx.Get(ctx, k)
		if err != nil || !found {
			return 0, fmt.Errorf("%s: found %t, %v", k, found, err)
		}
		return strconv.Atoi(string(v))
	}
	var moved, sums atomic.Int64
	var done atomic.Bool
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 2))
			for !done.Load() {
				i, j, amt := r.IntN(6), r.IntN(6), 1+r.IntN(20)
				if i == j {
					continue
				}
				err := n.Txn(ctx, func(tx *txn.Tx) error {
					from, err := balance(ctx, tx, b.keys[i])
					if err != nil {
						return err
					}
					to, err := balance(ctx, tx, b.keys[j])
					if err != nil || from < amt {
						return err
					}
					tx.Put(b.keys[i], []byte(strconv.Itoa(from-amt)))
					tx.Put(b.keys[j], []byte(strconv.Itoa(to+amt)))
					return nil
				})
				if err != nil {
					t.Errorf("transfer: %v", err)
					return
				}
				moved.Add(1)
			}
		})
	}
	wg.Go(func() {
		for !done.Load() {
			total := 0
			err := n.Txn(ctx, func(tx *txn.Tx) error {
				total = 0
				for _, k := range b.keys {
					v, err := balance(ctx, tx, k)
					if err != nil {
						return err
					}
					total += v
				}
				return nil
			})
			if err != nil {
				t.Errorf("sum: %v", err)
				return
			}
			if total != 300 {
				t.Errorf("balances sum to %d, want 300", total)
			}
			sums.Add(1)
		}
	})
	stop := func() { done.Store(true); wg.Wait() }
	t.Cleanup(stop)
	waitFor(t, "transfers and sums", 60*time.Second, func() error {
		if moved.Load() < 60 || sums.Load() < 5 {
			return fmt.Errorf("%d transfers, %d sums", moved.Load(), sums.Load())
		}
		return nil
	})
	stop()

	// A failing function writes nothing; its reads saw its own writes.
	boom := errors.New("changed my mind")
	err := n.Txn(ctx, func(tx *txn.Tx) error {
		tx.Put(b.keys[0], []byte("1000000"))
		if v, found, err := tx.Get(ctx, b.keys[0]); err != nil || !found || string(v) != "1000000" {
			t.Errorf("read of the transaction's own write: %q %t %v", v, found, err)
		}
		tx.Delete(b.keys[1])
		if _, found, _ := tx.Get(ctx, b.keys[1]); found {
			t.Error("a key the transaction deleted is still found in it")
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Txn returned %v, want the function's error", err)
	}
	bal, _, err := b.read(ctx, n)
	if err != nil || sum(bal) != 300 {
		t.Fatalf("after the aborted transaction: %v (sum %d), %v", bal, sum(bal), err)
	}
}

// An in-doubt transaction (its coordinator died after preparing one shard,
// with a deadline far away) shows in GET /v1/txn/intents with its age and
// in the metrics; forcing its resolution aborts it and releases its locks.
func TestInDoubtTransactionListedAndForced(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := testNodeConfig(t.TempDir())
	cfg.Registry = reg
	cfg.Txn.TTL = time.Hour // only forcing can end it
	cfg.ResolveInterval = 50 * time.Millisecond
	arm := crashOnce(&cfg, txn.AfterPrepareOne)
	n := startReady(t, cfg)
	srv := httptest.NewServer(n.Handler(reg))
	t.Cleanup(func() { srv.Close(); n.Close() })
	ctx := t.Context()
	b := newBank(n, 2)
	for _, k := range b.keys {
		if _, err := n.Put(ctx, k, []byte("10"), WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := b.transfer(ctx, n, 0, 1, 5); err != nil || !ok {
		t.Fatalf("a healthy transfer: %t %v", ok, err)
	}
	arm()
	if _, err := b.transfer(ctx, n, 0, 1, 5); !errors.Is(err, errCrash) {
		t.Fatalf("transfer: %v", err)
	}

	st, _, body := do(t, "GET", srv.URL+"/v1/txn/intents", nil, nil)
	var list struct {
		Intents []IntentStatus `json:"intents"`
	}
	if err := json.Unmarshal(body, &list); st != 200 || err != nil || len(list.Intents) == 0 {
		t.Fatalf("intents: %d %s %v", st, body, err)
	}
	in := list.Intents[0]
	if in.TxnID == "" || !in.Write || in.AgeMillis < 0 || in.AgeMillis > 60_000 {
		t.Fatalf("intent %+v", in)
	}
	waitFor(t, "the intents gauge", 5*time.Second, func() error {
		if v := metricSum(t, reg, "cairn_txn_intents", nil); v < 1 {
			return fmt.Errorf("cairn_txn_intents %v", v)
		}
		return nil
	})
	if c := metricSum(t, reg, "cairn_txn_total", map[string]string{"kind": "cross_shard", "outcome": "committed"}); c < 1 {
		t.Fatalf("committed cross-shard transactions counted: %v", c)
	}

	st, _, body = do(t, "POST", srv.URL+"/v1/txn/"+in.TxnID+"/resolve?record_shard="+strconv.FormatUint(in.RecordShard, 10), nil, nil)
	if st != 200 || !strings.Contains(string(body), `"aborted"`) {
		t.Fatalf("force resolve: %d %s", st, body)
	}
	waitFor(t, "locks released", 5*time.Second, func() error {
		if k := intentsLeft(n); k > 0 {
			return fmt.Errorf("%d intents", k)
		}
		return nil
	})
	bal, _, err := b.read(ctx, n)
	if err != nil || bal[0] != 5 || bal[1] != 15 {
		t.Fatalf("balances %v %v, want [5 15] (the forced transfer aborted)", bal, err)
	}
	if st, _, _ := do(t, "POST", srv.URL+"/v1/txn/x/resolve?record_shard=0", nil, nil); st != 400 {
		t.Fatalf("resolve with the meta shard as record shard: %d", st)
	}
}

// metricSum sums the gauge or counter series of name in reg whose labels
// include labels.
func metricSum(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue series
				}
			}
			sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return sum
}

// errCrash is what a coordinator "crash" returns (crashOnce).
var errCrash = errors.New("coordinator crashed")

// crashOnce makes cfg's coordinator stop at point, as if it died there, the
// first time it gets there after arm is called.
func crashOnce(cfg *Config, point txn.Failpoint) (arm func()) {
	var armed atomic.Bool
	cfg.Txn.Failpoint = func(f txn.Failpoint) error {
		if f == point && armed.CompareAndSwap(true, false) {
			return errCrash
		}
		return nil
	}
	return func() { armed.Store(true) }
}

// crashedTransfer starts a node with cfg, opens two accounts of 100 on two
// shards and runs a transfer of 30 during which the coordinator crashes
// at the armed failpoint: the transfer fails with the crash, or, with
// answered, succeeds (the crash comes after the answer).
func crashedTransfer(t *testing.T, cfg Config, arm func(), answered bool) (*Node, bank) {
	t.Helper()
	n := startReady(t, cfg)
	t.Cleanup(func() { n.Close() })
	ctx := t.Context()
	b := newBank(n, 2)
	for _, k := range b.keys {
		if _, err := n.Put(ctx, k, []byte("100"), WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	arm()
	ok, err := b.transfer(ctx, n, 0, 1, 30)
	switch {
	case answered && (err != nil || !ok):
		t.Fatalf("transfer: %t, %v; want it done (the crash comes after the answer)", ok, err)
	case !answered && !errors.Is(err, errCrash):
		t.Fatalf("transfer: %v, want the failpoint's crash", err)
	}
	return n, b
}
