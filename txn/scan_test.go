package txn_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/txn"
)

// scan merges both shards' parts of a range, as a node's scan does.
func (c *memCluster) scan(_ context.Context, start, end []byte, limit int) ([]fsm.Item, bool, error) {
	var items []fsm.Item
	more := false
	for _, id := range []fsm.ShardID{1, 2} {
		r, err := c.shards[id].Scan(fsm.ScanOptions{Start: start, End: end, Limit: limit})
		if err != nil {
			return nil, false, err
		}
		items = append(items, r.Items...)
		more = more || r.More
	}
	slices.SortFunc(items, func(a, b fsm.Item) int { return bytes.Compare(a.Key, b.Key) })
	if len(items) > limit {
		return items[:limit], true, nil
	}
	return items, more && len(items) == limit, nil
}

func (c *memCluster) tx() *txn.Tx { return txn.NewTx(c.Read, c.scan) }

func mustPut(t *testing.T, c *memCluster, kvs ...string) {
	t.Helper()
	for i := 0; i < len(kvs); i += 2 {
		id, _ := c.Locate(t.Context(), []byte(kvs[i]))
		r, err := c.Propose(t.Context(), id, fsm.Command{Ops: []fsm.Op{fsm.Put([]byte(kvs[i]), []byte(kvs[i+1]))}})
		if err != nil || r.Code != fsm.OK {
			t.Fatalf("put %s: %+v %v", kvs[i], r, err)
		}
	}
}

func keysOf(items []fsm.Item) []string {
	var ks []string
	for _, it := range items {
		ks = append(ks, string(it.Key))
	}
	return ks
}

// commit runs a Tx's request through the coordinator.
func commit(t *testing.T, co *txn.Coordinator, tx *txn.Tx) error {
	t.Helper()
	req, ok := tx.Request()
	if !ok {
		t.Fatal("the transaction did nothing")
	}
	r, err := co.Execute(t.Context(), req)
	if err == nil && !r.Succeeded {
		return txn.ErrChanged
	}
	return err
}

// A transaction that scanned a range commits only if the range holds what
// it read: a key added to it (a phantom), changed or removed since makes
// the commit fail with nothing written.
func TestTxScanNoPhantoms(t *testing.T) {
	co, c := newCoordinator(t, txn.Config{})
	ctx := t.Context()
	mustPut(t, c, "a1", "1", "a2", "2", "p1", "3", "zz", "outside") // shards 1, 1, 2, 2

	for _, tt := range []struct {
		name  string
		other []string // a write by someone else between scan and commit
	}{
		{"a key added on the other shard", []string{"q5", "new"}},
		{"a key added before the first", []string{"a0", "new"}},
		{"a key changed", []string{"a2", "changed"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tx := c.tx()
			items, err := tx.Scan(ctx, []byte("a"), []byte("z"), 100)
			if err != nil {
				t.Fatal(err)
			}
			tx.Put([]byte("count"), []byte{byte(len(items))})
			mustPut(t, c, tt.other...)
			if err := commit(t, co, tx); !errors.Is(err, txn.ErrChanged) || !txn.Retryable(err) {
				t.Fatalf("commit after %s: %v, want ErrChanged", tt.name, err)
			}
			if _, found, _ := c.Read(ctx, []byte("count")); found {
				t.Fatal("a failed commit wrote")
			}
			if n := intents(t, c); n != 0 {
				t.Fatalf("%d locks left", n)
			}
		})
	}

	// Undisturbed, it commits; a write outside the range does not matter.
	tx := c.tx()
	items, err := tx.Scan(ctx, []byte("a"), []byte("z"), 100)
	if err != nil || !slices.Equal(keysOf(items), []string{"a0", "a1", "a2", "p1", "q5"}) {
		t.Fatalf("scan: %v %v", keysOf(items), err)
	}
	tx.Put([]byte("count"), []byte{byte(len(items))})
	mustPut(t, c, "zz", "again")
	if err := commit(t, co, tx); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if it, _, _ := c.Read(ctx, []byte("count")); !bytes.Equal(it.Value, []byte{5}) {
		t.Fatalf("count = %v", it.Value)
	}
	waitNoIntents(t, c)

	// A read-only scan commits too: it proves the range was as read at
	// one moment.
	ro := c.tx()
	if _, err := ro.Scan(ctx, []byte("a"), nil, 2); err != nil {
		t.Fatal(err)
	}
	if err := commit(t, co, ro); err != nil {
		t.Fatalf("read-only scan: %v", err)
	}
}

// With a limit, only the part of the range up to the last key returned
// counts: keys added past it do not fail the commit.
func TestTxScanLimitReadsOnlyItsPage(t *testing.T) {
	co, c := newCoordinator(t, txn.Config{})
	ctx := t.Context()
	mustPut(t, c, "a1", "1", "a2", "2", "a3", "3")
	tx := c.tx()
	items, err := tx.Scan(ctx, []byte("a"), nil, 2)
	if err != nil || !slices.Equal(keysOf(items), []string{"a1", "a2"}) {
		t.Fatalf("scan: %v %v", keysOf(items), err)
	}
	tx.Put([]byte("seen"), []byte("2"))
	mustPut(t, c, "a4", "4", "a3", "changed")
	if err := commit(t, co, tx); err != nil {
		t.Fatalf("a change past the page failed the commit: %v", err)
	}
	// The answer comes at the commit point; the scanned shard releases
	// its range lock behind it.
	waitNoIntents(t, c)
	tx = c.tx()
	if _, err := tx.Scan(ctx, []byte("a"), nil, 2); err != nil {
		t.Fatal(err)
	}
	tx.Put([]byte("seen"), []byte("3"))
	mustPut(t, c, "a15", "inside the page")
	if err := commit(t, co, tx); !errors.Is(err, txn.ErrChanged) {
		t.Fatalf("a key added inside the page: %v, want ErrChanged", err)
	}
}

// A scan sees the transaction's own writes: its puts in the range, not
// the keys it deleted, and still a full page.
func TestTxScanSeesOwnWrites(t *testing.T) {
	_, c := newCoordinator(t, txn.Config{})
	ctx := t.Context()
	mustPut(t, c, "a1", "1", "a2", "2", "a3", "3", "p1", "4")
	tx := c.tx()
	tx.Delete([]byte("a1"))
	tx.Put([]byte("a2"), []byte("mine"))
	tx.Put([]byte("b0"), []byte("new"))
	items, err := tx.Scan(ctx, []byte("a"), nil, 3)
	if err != nil || !slices.Equal(keysOf(items), []string{"a2", "a3", "b0"}) || string(items[0].Value) != "mine" {
		t.Fatalf("scan: %v %v", keysOf(items), err)
	}
	if _, err := tx.Scan(ctx, []byte("b"), []byte("a"), 1); !errors.Is(err, fsm.ErrInvalid) {
		t.Fatalf("empty range: %v", err)
	}
	if _, err := tx.Scan(ctx, nil, nil, 0); !errors.Is(err, fsm.ErrInvalid) {
		t.Fatalf("zero limit: %v", err)
	}
}

// Between prepare and resolve the range is locked: a writer of any key in
// it, on any shard but the record's (which checks the range when it
// commits, in one step), gets Conflict; writes outside go through. When
// the coordinator is gone, settling its intents past the TTL aborts the
// transaction and releases the range.
func TestTxScanLocksRangeUntilResolved(t *testing.T) {
	crash := errors.New("crash")
	co, c := newCoordinator(t, txn.Config{TTL: 20 * time.Millisecond, Failpoint: func(f txn.Failpoint) error {
		if f == txn.BeforeDecide {
			return crash
		}
		return nil
	}})
	ctx := t.Context()
	mustPut(t, c, "a1", "1")
	tx := c.tx()
	if _, err := tx.Scan(ctx, []byte("a"), []byte("r"), 10); err != nil {
		t.Fatal(err)
	}
	tx.Put([]byte("total"), []byte("1"))
	if err := commit(t, co, tx); !errors.Is(err, crash) {
		t.Fatalf("commit: %v", err)
	}
	id, _ := c.Locate(ctx, []byte("b")) // shard 1; the record's is 2, where total is
	r, _ := c.Propose(ctx, id, fsm.Command{Ops: []fsm.Op{fsm.Put([]byte("b"), []byte("x"))}})
	if r.Code != fsm.Conflict || r.Holder == "" || r.HolderShard != 2 || r.HolderSince == 0 {
		t.Fatalf("write of b inside the locked range: %+v", r)
	}
	holder, recordShard, since := r.Holder, r.HolderShard, r.HolderSince
	if r, _ := c.Propose(ctx, 2, fsm.Command{Ops: []fsm.Op{fsm.Put([]byte("zz"), []byte("x"))}}); r.Code != fsm.OK {
		t.Fatalf("write outside the range: %+v", r)
	}
	// Past the TTL, settling aborts the transaction and frees the range.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := co.Settle(ctx, holder, recordShard, 1, since)
		if err == nil {
			break
		}
		if !errors.Is(err, txn.ErrPending) || time.Now().After(deadline) {
			t.Fatalf("settle: %v", err)
		}
		time.Sleep(5 * time.Millisecond) // the TTL is a wall-clock time
	}
	if n := intents(t, c); n != 0 {
		t.Fatalf("%d locks left after settling", n)
	}
	if r, _ := c.Propose(ctx, 2, fsm.Command{Ops: []fsm.Op{fsm.Put([]byte("q9"), []byte("x"))}}); r.Code != fsm.OK {
		t.Fatalf("write after the range was freed: %+v", r)
	}
	if _, found, _ := c.Read(ctx, []byte("total")); found {
		t.Fatal("the undecided transaction's write showed")
	}
}
