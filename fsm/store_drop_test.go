package fsm_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/cairndb/cairn/fsm"
)

// A replica that moved away is dropped: its keys are gone, its neighbours'
// are not, and the shard can be opened again empty.
func TestDropRemovesOnlyThatShard(t *testing.T) {
	s := openStore(t, t.TempDir())
	a, b := openShard(t, s, 1), openShard(t, s, 2)
	for i := range 100 {
		k := []byte(fmt.Sprintf("k%03d", i))
		apply1(t, a, fsm.Put(k, []byte("a")))
		apply1(t, b, fsm.Put(k, []byte("b")))
	}
	if err := s.Drop(1); err == nil {
		t.Fatal("dropping an open replica succeeded")
	}
	a.Close()
	if err := s.Drop(1); err != nil {
		t.Fatal(err)
	}
	a = openShard(t, s, 1)
	if a.Applied() != 0 {
		t.Fatalf("dropped replica reopens at applied index %d", a.Applied())
	}
	if _, err := a.Get([]byte("k000")); !errors.Is(err, fsm.ErrNotFound) {
		t.Fatalf("dropped key still readable: %v", err)
	}
	res, err := b.Scan(fsm.ScanOptions{})
	if err != nil || len(res.Items) != 100 || string(res.Items[99].Value) != "b" {
		t.Fatalf("neighbour shard after drop: %d items, %v", len(res.Items), err)
	}
}

// Dropping one replica and restoring another must not disturb a third that
// is applying at the same time: they share one Badger database, and an apply
// that cannot write stops the node.
func TestDropAndRestoreLeaveOtherShardsWriting(t *testing.T) {
	s := openStore(t, t.TempDir())
	busy, dropped, restored := openShard(t, s, 1), openShard(t, s, 2), openShard(t, s, 3)
	src := openShard(t, openStore(t, ""), 3)
	for i := range 20000 {
		k := []byte(fmt.Sprintf("k%05d", i))
		if i%4 == 0 {
			apply1(t, dropped, fsm.Put(k, []byte("x")))
		}
		apply1(t, restored, fsm.Put(k, []byte("old")))
		if i%2 == 0 {
			apply1(t, src, fsm.Put(k, []byte("new")))
		}
	}
	snap := snapshotBytes(t, src)
	stop := make(chan struct{})
	applied := make(chan int)
	go func() {
		n := 0
		defer func() { applied <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			apply1(t, busy, fsm.Put([]byte(fmt.Sprintf("b%06d", n)), []byte("v"))) // panics if the write fails
			n++
		}
	}()
	dropped.Close()
	if err := s.Drop(2); err != nil {
		t.Fatal(err)
	}
	if err := restored.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	close(stop)
	if n := <-applied; n == 0 {
		t.Fatal("the busy shard applied nothing meanwhile")
	}
	res, err := restored.Scan(fsm.ScanOptions{})
	if err != nil || len(res.Items) != 10000 || string(res.Items[0].Value) != "new" {
		t.Fatalf("restored shard: %d items, %v", len(res.Items), err)
	}
}
