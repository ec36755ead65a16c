package shard

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cairndb/cairn/fsm"
)

func TestSmokeThreeReplicas(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.bootstrap(3)
	ctx := t.Context()
	l := c.leader(10 * time.Second)
	var last fsm.Result
	for i := range 50 {
		last = mustOK(t)(l.shard.Propose(ctx, fsm.Command{Ops: []fsm.Op{fsm.Put(fmt.Appendf(nil, "k%03d", i), fmt.Appendf(nil, "v%d", i))}}))
	}
	for _, r := range c.replicas {
		it, info, err := r.shard.Get(ctx, []byte("k049"), ReadOptions{})
		if err != nil {
			t.Fatalf("%s: %v", r.id, err)
		}
		if string(it.Value) != "v49" || it.Version != last.Ops[0].Version {
			t.Fatalf("%s: got %q@%d, want v49@%d", r.id, it.Value, it.Version, last.Ops[0].Version)
		}
		if info.Index < last.Ops[0].Version>>20 {
			t.Fatalf("%s: read at index %d before the write's index %d", r.id, info.Index, last.Ops[0].Version>>20)
		}
	}
	hashes := c.waitConverged(5 * time.Second)
	if hashes["n1"] != hashes["n2"] || hashes["n1"] != hashes["n3"] {
		t.Fatalf("replica state hashes differ: %x", hashes)
	}
	_, err := c.replicas[0].shard.Propose(ctx, fsm.Command{Ops: []fsm.Op{fsm.Put(nil, []byte("x"))}})
	if !errors.Is(err, fsm.ErrInvalid) {
		t.Fatalf("empty key: got %v", err)
	}
	_ = context.Background
}
