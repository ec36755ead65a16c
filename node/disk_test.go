package node

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/shard"
)

// fakeDisks gives each node of a test cluster a data disk whose free space
// the test sets.
type fakeDisks struct {
	mu   sync.Mutex
	free map[string]*atomic.Int64
}

func (d *fakeDisks) of(name string) *atomic.Int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.free == nil {
		d.free = map[string]*atomic.Int64{}
	}
	if d.free[name] == nil {
		d.free[name] = &atomic.Int64{}
		d.free[name].Store(10 << 30)
	}
	return d.free[name]
}

// install makes c's node measure its disk through d.
func (d *fakeDisks) install(c *Config) {
	free := d.of(c.Name)
	c.MinFreeDisk = 256 << 20
	c.diskFree = func(string) (int64, error) { return free.Load(), nil }
}

// TestDiskFullRefusesWritesClusterWide: a node whose data disk drops below
// MinFreeDisk makes every node refuse puts, transactions that put and
// document writes before anything is proposed, with ErrDiskFull (HTTP 507
// disk_full), while reads and deletes go on; once it has room again,
// writes are accepted.
func TestDiskFullRefusesWritesClusterWide(t *testing.T) {
	var disks fakeDisks
	tc := startCluster(t, 3, 2, disks.install)
	n1, n3 := tc.nodes["n1"], tc.nodes["n3"]
	srv := httptest.NewServer(n1.Handler(nil))
	defer srv.Close()
	ctx := t.Context()
	for _, k := range []string{"kept", "doomed"} {
		if _, err := n1.Put(ctx, []byte(k), []byte("v-"+k), WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if st, _, b := do(t, "POST", srv.URL+"/v1/docs/users", []byte(`{"_id":"ann","age":31}`), nil); st != 201 {
		t.Fatalf("insert with room: %d %s", st, b)
	}

	disks.of("n2").Store(100 << 20)
	for _, n := range []*Node{n1, n3} {
		waitFor(t, n.cfg.Name+" hears that n2's disk is low", 10*time.Second, func() error {
			if err := n.checkDisk(); !errors.Is(err, ErrDiskFull) {
				return errors.New("writes still accepted")
			}
			return nil
		})
	}
	lowIn := func(st ClusterStatus) (low []string) {
		for _, nd := range st.Nodes {
			if nd.DiskLow {
				low = append(low, nd.Name)
			}
		}
		return low
	}
	if low := lowIn(n1.Cluster()); len(low) != 1 || low[0] != "n2" {
		t.Fatalf("cluster status shows the disks of %v low, want n2's", low)
	}
	before := logLength(n1) + logLength(tc.nodes["n2"]) + logLength(n3)
	_, err := n3.Put(ctx, []byte("new"), []byte("x"), WriteOptions{})
	if !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "node n2") {
		t.Fatalf("put while n2's disk is low: %v", err)
	}
	if _, err := n1.Transact(ctx, TxnRequest{Then: []fsm.Op{fsm.Delete([]byte("kept")), fsm.Put([]byte("other"), []byte("y"))}}); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("transaction that puts: %v", err)
	}
	if st, _, b := do(t, "PUT", srv.URL+"/v1/kv/new", []byte("x"), nil); st != 507 || errCode(t, b) != "disk_full" {
		t.Fatalf("HTTP put: %d %s", st, b)
	}
	if st, _, b := do(t, "POST", srv.URL+"/v1/docs/users", []byte(`{"_id":"bob","age":40}`), nil); st != 507 || errCode(t, b) != "disk_full" {
		t.Fatalf("document insert: %d %s", st, b)
	}
	if after := logLength(n1) + logLength(tc.nodes["n2"]) + logLength(n3); after != before {
		t.Fatalf("refused writes were proposed: %d commands applied before, %d after", before, after)
	}
	// Reads and deletes go on.
	if it, err := n3.Get(ctx, []byte("kept"), shard.ReadOptions{}); err != nil || string(it.Value) != "v-kept" {
		t.Fatalf("get: %q %v", it.Value, err)
	}
	if _, err := n3.Get(ctx, []byte("new"), shard.ReadOptions{}); !errors.Is(err, fsm.ErrNotFound) {
		t.Fatalf("the refused put's key: %v", err)
	}
	if err := n1.Delete(ctx, []byte("doomed"), WriteOptions{}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if st, _, b := do(t, "DELETE", srv.URL+"/v1/docs/users/ann", nil, nil); st != 200 {
		t.Fatalf("document delete: %d %s", st, b)
	}

	// n2 has room again, and n1's own disk runs low: its own measure
	// refuses, with how much is free, and n3 hears of it.
	disks.of("n2").Store(10 << 30)
	disks.of("n1").Store(1 << 20)
	waitFor(t, "n1 measures its own disk", 10*time.Second, func() error {
		if err := n1.checkDisk(); err == nil || !strings.Contains(err.Error(), "node n1 has 1.0 MiB free") {
			return errors.New("not yet")
		}
		return nil
	})
	waitFor(t, "n3 hears that n1's disk is low and n2's is not", 10*time.Second, func() error {
		if err := n3.checkDisk(); err == nil || !strings.Contains(err.Error(), "node n1") {
			return errors.New("not yet")
		}
		if low := lowIn(n3.Cluster()); len(low) != 1 || low[0] != "n1" {
			return fmt.Errorf("cluster status shows the disks of %v low", low)
		}
		return nil
	})

	disks.of("n1").Store(10 << 30)
	waitFor(t, "writes accepted again", 10*time.Second, func() error {
		_, err := n3.Put(ctx, []byte("new"), []byte("x"), WriteOptions{})
		return err
	})
	if it, err := n1.Get(ctx, []byte("new"), shard.ReadOptions{}); err != nil || string(it.Value) != "x" {
		t.Fatalf("after space returned: %q %v", it.Value, err)
	}
	if _, err := n1.Get(ctx, []byte("doomed"), shard.ReadOptions{}); !errors.Is(err, fsm.ErrNotFound) {
		t.Fatalf("deleted while the disk was low: %v", err)
	}
}

// TestDiskTooFullToOpen: a node does not open its store on a disk with
// less free space than opening needs (Badger would crash on a full disk),
// and says so; with more than that but below MinFreeDisk it starts and
// refuses writes.
func TestDiskTooFullToOpen(t *testing.T) {
	var free atomic.Int64
	free.Store(1 << 20)
	cfg := testNodeConfig(t.TempDir())
	cfg.diskFree = func(string) (int64, error) { return free.Load(), nil }
	n, err := Start(t.Context(), cfg)
	if err == nil {
		n.Close()
		t.Fatal("started on a full disk")
	}
	if !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "1.0 MiB free") {
		t.Fatalf("start on a full disk: %v", err)
	}
	free.Store(100 << 20)
	n = startReady(t, cfg)
	defer n.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := n.Put(ctx, []byte("k"), []byte("v"), WriteOptions{}); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("put below MinFreeDisk: %v", err)
	}
	free.Store(2 << 30)
	waitFor(t, "writes accepted", 10*time.Second, func() error {
		_, err := n.Put(ctx, []byte("k"), []byte("v"), WriteOptions{})
		return err
	})
}
