package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/shard"
	"github.com/cairndb/cairn/txn"
)

// A bounded set through scans inside transactions: each of 16 writers adds
// a member only while the set (a key range spread over every shard) holds
// fewer than 5. Only a transaction whose scan is validated at commit and
// whose range stays locked until it resolves keeps the bound: without
// phantom protection, concurrent writers all see 4 members and all add.
func TestTxnScanKeepsBoundedSet(t *testing.T) {
	n := startReady(t, testNodeConfig(t.TempDir()))
	defer n.Close()
	ctx := t.Context()
	const bound = 5
	start, end := []byte("member/"), []byte("member0") // '0' follows '/'
	var wg sync.WaitGroup
	added := make([]bool, 16)
	for w := range 16 {
		wg.Go(func() {
			err := n.Txn(ctx, func(tx *txn.Tx) error {
				added[w] = false
				items, err := tx.Scan(ctx, start, end, 100)
				if err != nil {
					return err
				}
				if len(items) < bound {
					tx.Put(fmt.Appendf(nil, "member/%02d", w), []byte("in"))
					added[w] = true
				}
				return nil
			})
			if err != nil {
				t.Errorf("writer %d: %v", w, err)
			}
		})
	}
	wg.Wait()
	count := 0
	for _, a := range added {
		if a {
			count++
		}
	}
	items, _, err := n.Scan(ctx, ScanOptions{Start: start, End: end}, shard.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The writers' keys (not only the winners') spread over the shards.
	shards := map[uint64]bool{}
	for w := range 16 {
		shards[uint64(n.view.Load().ring.Locate(fmt.Appendf(nil, "member/%02d", w)))] = true
	}
	if len(items) != bound || count != bound {
		t.Fatalf("the set holds %d members, %d writers committed an add; want %d", len(items), count, bound)
	}
	if len(shards) < 2 {
		t.Fatalf("the writers' keys are on %d shard(s): the test needs the range spread", len(shards))
	}
	waitFor(t, "no locks left", 5*time.Second, func() error {
		if left := intentsLeft(n); left != 0 {
			return fmt.Errorf("%d locks left", left)
		}
		return nil
	})
	// A read-only scan transaction sees the whole set at one moment.
	var seen int
	if err := n.Txn(ctx, func(tx *txn.Tx) error {
		items, err := tx.Scan(context.WithoutCancel(ctx), start, end, 100)
		seen = len(items)
		return err
	}); err != nil || seen != bound {
		t.Fatalf("read-only scan: %d members, %v", seen, err)
	}
}

// Write skew through scans: two doctors are on call, on different shards;
// each of two concurrent transactions goes off call only if its scan finds
// both on call. One of them must stay. Each writes a key the other only
// scanned: what keeps them apart is the commit's check of the scanned
// range (no write intent in it, no range lock over the key written, the
// keys as read). The range lock alone is tested in fsm and txn, where the
// order of prepares can be chosen.
func TestTxnScanPreventsWriteSkew(t *testing.T) {
	n := startReady(t, testNodeConfig(t.TempDir()))
	defer n.Close()
	ctx := t.Context()
	start, end := []byte("oncall/"), []byte("oncall0")
	ring := n.view.Load().ring
	var doctors [2][]byte
	doctors[0] = []byte("oncall/0")
	for i := 1; doctors[1] == nil; i++ {
		if k := fmt.Appendf(nil, "oncall/%d", i); ring.Locate(k) != ring.Locate(doctors[0]) {
			doctors[1] = k
		}
	}
	for round := range 40 {
		for _, d := range doctors {
			if _, err := n.Put(ctx, d, []byte("on"), WriteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				err := n.Txn(ctx, func(tx *txn.Tx) error {
					items, err := tx.Scan(ctx, start, end, 10)
					if err == nil && len(items) >= 2 {
						tx.Delete(doctors[i])
					}
					return err
				})
				if err != nil {
					t.Errorf("doctor %d: %v", i, err)
				}
			})
		}
		wg.Wait()
		items, _, err := n.Scan(ctx, ScanOptions{Start: start, End: end}, shard.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(items) != 1 {
			t.Fatalf("round %d: %d doctors on call, want exactly 1", round, len(items))
		}
	}
}

// A coordinator that dies after preparing a scanning transaction leaves
// range locks on every shard but the record's, open at the start; the
// resolver releases them within the bound and writers get through again.
func TestCrashedScanReleasesRangeLocks(t *testing.T) {
	cfg := testNodeConfig(t.TempDir())
	cfg.Txn.TTL = 400 * time.Millisecond
	cfg.ResolveInterval = 100 * time.Millisecond
	arm := crashOnce(&cfg, txn.BeforeDecide)
	n := startReady(t, cfg)
	defer n.Close()
	ctx := t.Context()
	arm()
	err := n.Txn(ctx, func(tx *txn.Tx) error {
		if _, err := tx.Scan(ctx, nil, []byte("m"), 10); err != nil {
			return err
		}
		tx.Put([]byte("zz-summary"), []byte("0 keys"))
		return nil
	})
	if !errors.Is(err, errCrash) {
		t.Fatalf("txn: %v, want the failpoint's crash", err)
	}
	ranges := 0
	for _, in := range n.Intents(100) {
		if in.Range {
			ranges++
			if in.Key != "" || in.End != "m" {
				t.Fatalf("range lock %+v, want [\"\", m)", in)
			}
		}
	}
	// One per shard, but the record's: it checks its part of the range
	// when it commits, in one step, and never did.
	if ranges != len(n.view.Load().ring.Shards())-1 {
		t.Fatalf("%d range locks, want one per shard but the record's", ranges)
	}
	bound := cfg.Txn.TTL + 5*cfg.ResolveInterval + time.Second
	waitFor(t, "range locks released", bound, func() error {
		if k := intentsLeft(n); k > 0 {
			return fmt.Errorf("%d locks", k)
		}
		return nil
	})
	if _, err := n.Put(ctx, []byte("a-free"), []byte("x"), WriteOptions{}); err != nil {
		t.Fatalf("write after the range locks went: %v", err)
	}
	if _, err := n.Get(ctx, []byte("zz-summary"), shard.ReadOptions{}); !errors.Is(err, fsm.ErrNotFound) {
		t.Fatalf("the undecided write: %v, want not found", err)
	}
}
