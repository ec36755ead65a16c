package fsm_test

import (
	"errors"
	"fmt"
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
