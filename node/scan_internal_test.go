package node

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/shard"
)

// fakeShards holds each shard's keys in ascending order and serves reads
// as a shard's scan does: the keys after a key, in scan order, up to a
// limit, and whether more follow.
type fakeShards struct {
	keys    [][]string
	reverse bool

	mu     sync.Mutex
	reads  []int // per shard
	served int   // keys returned in all
}

func (f *fakeShards) read(i int, after []byte, max int) ([]fsm.Item, bool, error) {
	f.mu.Lock()
	f.reads[i]++
	f.mu.Unlock()
	ks := slices.Clone(f.keys[i])
	if f.reverse {
		slices.Reverse(ks)
	}
	var out []fsm.Item
	more := false
	for _, k := range ks {
		if after != nil {
			c := bytes.Compare([]byte(k), after)
			if (!f.reverse && c <= 0) || (f.reverse && c >= 0) {
				continue
			}
		}
		if len(out) == max {
			more = true
			break
		}
		out = append(out, fsm.Item{Key: []byte(k), Value: []byte("v" + k)})
	}
	f.mu.Lock()
	f.served += len(out)
	f.mu.Unlock()
	return out, more, nil
}

// scatter puts keys on n shards at random, as the ring's hash does.
func scatter(r *rand.Rand, keys []string, n int) [][]string {
	return place(keys, n, func(int) int { return r.IntN(n) })
}

// place puts key j of keys on shard at(j).
func place(keys []string, n int, at func(j int) int) [][]string {
	out := make([][]string, n)
	for j, k := range keys {
		i := at(j)
		out[i] = append(out[i], k)
	}
	for _, ks := range out {
		slices.Sort(ks)
	}
	return out
}

// TestScanShardsPages pages through random key sets on 1 to 6 shards,
// forwards and backwards, with random page sizes, and checks every page
// against the merged keys: exactly the next limit keys, a cursor exactly
// when keys remain, and no shard read more than twice for one page. Keys
// lie on the shards at random (as hashing puts them), mostly on one shard,
// or in runs of consecutive keys per shard, so that pages often need more
// of a shard than its first read gave. Random shards are read on the
// calling goroutine (scanShards' here).
func TestScanShardsPages(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	secondReads := 0
	for trial := 0; trial < 1500; trial++ {
		n := 1 + r.IntN(6)
		var keys []string
		for j := 0; j < r.IntN(300); j++ {
			keys = append(keys, fmt.Sprintf("k%05d", j*3+r.IntN(3)))
		}
		var shards [][]string
		switch run := 1 + r.IntN(60); trial % 3 {
		case 0:
			shards = scatter(r, keys, n)
		case 1: // four in five keys on shard 0
			shards = place(keys, n, func(int) int {
				if r.IntN(5) > 0 {
					return 0
				}
				return r.IntN(n)
			})
		default: // runs of consecutive keys on one shard
			shards = place(keys, n, func(j int) int { return (j / run) % n })
		}
		reverse := r.IntN(2) == 0
		f := &fakeShards{keys: shards, reverse: reverse}
		want := slices.Clone(keys)
		if reverse {
			slices.Reverse(want)
		}
		limit := 1 + r.IntN(120)
		// Some shards read on the calling goroutine, or none: the pages
		// must not depend on it.
		var here func(int) bool
		if mask := r.IntN(1 << n); r.IntN(3) > 0 {
			here = func(i int) bool { return mask&(1<<i) != 0 }
		}
		var cursor []byte
		var got []string
		for pages := 0; ; pages++ {
			if pages > len(keys)+1 {
				t.Fatalf("trial %d: paging does not end", trial)
			}
			f.reads = make([]int, n)
			// Each page starts from the previous page's cursor, as a
			// client's next request would.
			items, next, err := scanShards(n, limit, reverse, here, func(i int, after []byte, max int) ([]fsm.Item, bool, error) {
				if after == nil {
					after = cursor
				}
				return f.read(i, after, max)
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(items) > limit {
				t.Fatalf("trial %d: page of %d keys, limit %d", trial, len(items), limit)
			}
			for i, it := range items {
				if string(it.Value) != "v"+string(it.Key) {
					t.Fatalf("trial %d: key %q with value %q", trial, it.Key, it.Value)
				}
				if exp := want[len(got)+i]; string(it.Key) != exp {
					t.Fatalf("trial %d (%d shards, limit %d, reverse %v): page item %d is %q, want %q", trial, n, limit, reverse, i, it.Key, exp)
				}
			}
			for i, c := range f.reads {
				if c > 2 {
					t.Fatalf("trial %d: shard %d read %d times for one page", trial, i, c)
				}
				if c == 2 {
					secondReads++
				}
			}
			for _, it := range items {
				got = append(got, string(it.Key))
			}
			remain := len(want) > len(got)
			if remain != (next != nil) {
				t.Fatalf("trial %d: %d of %d keys read, cursor %q", trial, len(got), len(want), next)
			}
			if next == nil {
				break
			}
			if len(items) != limit || !bytes.Equal(next, items[limit-1].Key) {
				t.Fatalf("trial %d: a short page (%d of %d) or a cursor %q not its last key", trial, len(items), limit, next)
			}
			cursor = next
		}
		if len(got) != len(want) {
			t.Fatalf("trial %d: read %d keys, want %d", trial, len(got), len(want))
		}
	}
	if secondReads < 50 {
		t.Errorf("only %d shards were read a second time for a page: the trials hardly test it", secondReads)
	}
	t.Logf("%d second reads of a shard for a page", secondReads)
}

// TestScanShardsReadsAShare: with keys spread evenly over four shards, a
// page of 100 asks each shard for its share and a margin, not for 100,
// and almost never reads a shard twice.
func TestScanShardsReadsAShare(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var keys []string
	for j := 0; j < 10000; j++ {
		keys = append(keys, fmt.Sprintf("k%05d", j))
	}
	f := &fakeShards{keys: scatter(r, keys, 4)}
	second := 0
	const pages = 200
	for p := 0; p < pages; p++ {
		f.reads = make([]int, 4)
		start := []byte(keys[r.IntN(len(keys)-200)])
		items, _, err := scanShards(4, 100, false, nil, func(i int, after []byte, max int) ([]fsm.Item, bool, error) {
			if after == nil {
				after = start
			}
			return f.read(i, after, max)
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(items) != 100 {
			t.Fatalf("page of %d", len(items))
		}
		for _, c := range f.reads {
			if c > 1 {
				second++
			}
		}
	}
	perPage := float64(f.served) / pages
	if perPage > 200 {
		t.Errorf("shards returned %.0f keys per page of 100 (each asked for all 100 would be 400)", perPage)
	}
	if second > pages/20 {
		t.Errorf("%d shard reads of %d pages were second reads", second, pages)
	}
	t.Logf("%.0f keys read per page of 100, %d second reads in %d pages", perPage, second, pages)
}

// TestScanShardsRefusesAnEmptyFullPage: a shard answering "more" with no
// keys (which no shard does, but a reply could be damaged) fails the scan
// instead of leaving the merge nowhere to continue from.
func TestScanShardsRefusesAnEmptyFullPage(t *testing.T) {
	_, _, err := scanShards(2, 10, false, func(i int) bool { return i == 0 }, func(i int, after []byte, max int) ([]fsm.Item, bool, error) {
		if i == 1 {
			return nil, true, nil
		}
		return []fsm.Item{{Key: []byte("a")}}, false, nil
	})
	if !errors.Is(err, shard.ErrUnavailable) {
		t.Fatalf("scan with an empty full page: %v, want unavailable", err)
	}
}

// TestScanSecondReadsOnANode pages through keys of which most lie on one
// shard of a running node, so that a page needs more of that shard than
// its first share: forwards and backwards, every key comes once, in order,
// at the version written.
func TestScanSecondReadsOnANode(t *testing.T) {
	n := startReady(t, testNodeConfig(t.TempDir()))
	ctx := t.Context()
	ring := n.Ring()
	heavy := ring.Locate([]byte("skew-00000"))
	versions := map[string]uint64{}
	var keys []string
	// 60 keys of one shard, with 3 keys of other shards among them and 9
	// more after them.
	onHeavy, early, late := 0, 0, 0
	for i := 0; onHeavy < 60 || early < 3 || late < 9; i++ {
		key := fmt.Sprintf("skew-%05d", i)
		switch {
		case ring.Locate([]byte(key)) == heavy:
			if onHeavy == 60 {
				continue
			}
			onHeavy++
		case early < 3:
			early++
		case i >= 50000 && late < 9:
			late++
		default:
			if onHeavy == 60 {
				i = max(i, 49999) // on to the late keys
			}
			continue
		}
		v, err := n.Put(ctx, []byte(key), []byte("v"+key), WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		versions[key] = v
		keys = append(keys, key)
	}
	slices.Sort(keys)
	const limit = 25
	// The premise: the first page holds more keys of the heavy shard than
	// that shard is first asked for.
	first := 0
	for _, k := range keys[:limit] {
		if ring.Locate([]byte(k)) == heavy {
			first++
		}
	}
	if first <= firstShardLimit(limit, len(ring.Shards())) {
		t.Fatalf("the first page has %d keys of shard %v, not more than its first share %d", first, heavy, firstShardLimit(limit, len(ring.Shards())))
	}
	for _, reverse := range []bool{false, true} {
		want := slices.Clone(keys)
		if reverse {
			slices.Reverse(want)
		}
		var got []string
		var cursor []byte
		for pages := 0; ; pages++ {
			if pages > len(keys) {
				t.Fatal("paging does not end")
			}
			items, next, err := n.Scan(ctx, ScanOptions{Prefix: []byte("skew-"), Limit: limit, Cursor: cursor, Reverse: reverse}, shard.ReadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range items {
				if it.Version != versions[string(it.Key)] || string(it.Value) != "v"+string(it.Key) {
					t.Fatalf("%s: version %d value %q, written at %d", it.Key, it.Version, it.Value, versions[string(it.Key)])
				}
				got = append(got, string(it.Key))
			}
			if next == nil {
				break
			}
			cursor = next
		}
		if !slices.Equal(got, want) {
			t.Fatalf("reverse %v: scanned %d keys %v..., want %d %v...", reverse, len(got), got[:min(5, len(got))], len(want), want[:5])
		}
	}
}

// TestScanShardsHere: shards that need no round (here) are read one after
// the other in order on the calling goroutine; the others are read at
// once, each waiting here until all have started.
func TestScanShardsHere(t *testing.T) {
	var mu sync.Mutex
	var order []int
	_, _, err := scanShards(4, 10, false, func(int) bool { return true }, func(i int, after []byte, max int) ([]fsm.Item, bool, error) {
		mu.Lock()
		order = append(order, i)
		mu.Unlock()
		return []fsm.Item{{Key: fmt.Appendf(nil, "k%d", i)}}, false, nil
	})
	if err != nil || fmt.Sprint(order) != "[0 1 2 3]" {
		t.Fatalf("every shard here: read in order %v, %v; want [0 1 2 3]", order, err)
	}
	var started sync.WaitGroup
	started.Add(3)
	allStarted := make(chan struct{})
	go func() { started.Wait(); close(allStarted) }()
	items, _, err := scanShards(4, 10, false, func(i int) bool { return i == 0 }, func(i int, after []byte, max int) ([]fsm.Item, bool, error) {
		if i > 0 {
			started.Done()
			select {
			case <-allStarted:
			case <-time.After(10 * time.Second):
				return nil, false, fmt.Errorf("shard %d: the other shards needing a round were not read at the same time", i)
			}
		}
		return []fsm.Item{{Key: fmt.Appendf(nil, "k%d", i)}}, false, nil
	})
	if err != nil || len(items) != 4 {
		t.Fatalf("one shard here: %d keys, %v", len(items), err)
	}
}
