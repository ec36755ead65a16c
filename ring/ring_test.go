package ring

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

func shardsN(n int) []ShardID {
	s := make([]ShardID, n)
	for i := range s {
		s[i] = ShardID(i + 1)
	}
	return s
}

func randomKeys(seed uint64, n int) [][]byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "user/%d/%x", rng.IntN(1_000_000), rng.Uint64())
	}
	return keys
}

// TestKeysSpreadEvenly states the bound the default ring holds: with 128
// points per shard, every shard of 4, 16 and 64 gets within 25% of its fair
// share of 200k random keys.
func TestKeysSpreadEvenly(t *testing.T) {
	keys := randomKeys(7, 200_000)
	for _, n := range []int{4, 16, 64} {
		r, err := New(1, DefaultVNodes, shardsN(n))
		if err != nil {
			t.Fatal(err)
		}
		counts := map[ShardID]int{}
		for _, k := range keys {
			counts[r.Locate(k)]++
		}
		mean := float64(len(keys)) / float64(n)
		worst := 0.0
		for _, id := range r.Shards() {
			dev := (float64(counts[id]) - mean) / mean
			worst = max(worst, dev, -dev)
		}
		t.Logf("%d shards: worst deviation from the mean %.1f%%", n, 100*worst)
		if len(counts) != n {
			t.Fatalf("%d shards but keys landed on %d", n, len(counts))
		}
		if worst > 0.25 {
			t.Fatalf("%d shards: a shard is %.1f%% off its fair share (bound 25%%)", n, 100*worst)
		}
	}
}

func TestAddingShardMovesOnlyItsKeys(t *testing.T) {
	keys := randomKeys(8, 50_000)
	before, err := New(3, DefaultVNodes, shardsN(8))
	if err != nil {
		t.Fatal(err)
	}
	after, err := before.WithShard(9)
	if err != nil {
		t.Fatal(err)
	}
	if after.Epoch() != 4 {
		t.Fatalf("epoch %d after adding a shard to epoch 3", after.Epoch())
	}
	moved := 0
	for _, k := range keys {
		a, b := before.Locate(k), after.Locate(k)
		if a != b {
			if b != 9 {
				t.Fatalf("key %q moved from %v to %v, not to the new shard", k, a, b)
			}
			moved++
		}
	}
	// The new shard should take about 1/9 of the keys.
	if share := float64(moved) / float64(len(keys)); share < 0.08 || share > 0.15 {
		t.Fatalf("new shard took %.1f%% of keys, want about 11%%", 100*share)
	}
	back, err := after.WithoutShard(9)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if back.Locate(k) != before.Locate(k) {
			t.Fatalf("removing the shard again did not restore %q", k)
		}
	}
	for _, k := range keys[:1000] {
		if s := after.Locate(k); s != 9 && back.Locate(k) != s {
			t.Fatalf("removing shard 9 moved %q off %v", k, s)
		}
	}
}

func TestEncodingRoundTrip(t *testing.T) {
	r, err := New(42, 64, []ShardID{3, 1, 700, 2})
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 16 {
		t.Fatalf("4-shard ring encodes to %d bytes; points must not be stored", len(b))
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Epoch() != 42 || fmt.Sprint(got.Shards()) != fmt.Sprint(r.Shards()) {
		t.Fatalf("decoded epoch %d shards %v", got.Epoch(), got.Shards())
	}
	for _, k := range randomKeys(9, 2000) {
		if got.Locate(k) != r.Locate(k) {
			t.Fatalf("decoded ring places %q differently", k)
		}
	}
}

func TestInvalidRings(t *testing.T) {
	for name, f := range map[string]func() error{
		"no shards":   func() error { _, err := New(1, 8, nil); return err },
		"meta shard":  func() error { _, err := New(1, 8, []ShardID{0, 1}); return err },
		"duplicate":   func() error { _, err := New(1, 8, []ShardID{2, 2}); return err },
		"zero vnodes": func() error { _, err := New(1, 0, []ShardID{1}); return err },
		"garbage":     func() error { _, err := Decode([]byte{1, 0xff}); return err },
		"empty":       func() error { _, err := Decode(nil); return err },
		"add twice": func() error {
			r, _ := New(1, 8, []ShardID{1})
			_, err := r.WithShard(1)
			return err
		},
	} {
		if err := f(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	r, _ := New(5, 16, []ShardID{1, 2, 9})
	b, _ := r.MarshalBinary()
	f.Add(b)
	f.Add([]byte{1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			return
		}
		again, err := r.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		r2, err := Decode(again)
		if err != nil || r2.Epoch() != r.Epoch() || fmt.Sprint(r2.Shards()) != fmt.Sprint(r.Shards()) {
			t.Fatalf("re-encoding changed the ring: %v", err)
		}
	})
}
