package fsm_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cairndb/cairn/fsm"
)

func keysOf(items []fsm.Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = string(it.Key)
	}
	return out
}

func TestScanRanges(t *testing.T) {
	s := openStore(t, "")
	f1, f2 := openShard(t, s, 1), openShard(t, s, 2)

	// In byte order, with apply order equal to it: key i is at version (1, i+1).
	keys := []string{"a", "a\x00", "a/1", "a/2", "a/3", "ab", "a\xff", "b", "b/1", "c"}
	if !slices.IsSorted(keys) {
		t.Fatal("test keys not sorted")
	}
	var ops []fsm.Op
	for _, k := range keys {
		ops = append(ops, kv(k, "1:"+k))
	}
	apply1(t, f1, ops...)
	// Shard 2 shares the store, with keys inside and around shard 1's ranges.
	apply1(t, f2, kv("a/1", "2:a/1"), kv("a/15", "2:a/15"), kv("aa", "2:aa"), kv("b/0", "2:b/0"), kv("d", "2:d"))

	tests := []struct {
		name string
		o    fsm.ScanOptions
		want []string
		more bool
	}{
		{"all", fsm.ScanOptions{}, keys, false},
		{"prefix", fsm.ScanOptions{Prefix: []byte("a/")}, []string{"a/1", "a/2", "a/3"}, false},
		{"prefix of one byte", fsm.ScanOptions{Prefix: []byte("a")}, []string{"a", "a\x00", "a/1", "a/2", "a/3", "ab", "a\xff"}, false},
		{"prefix without keys", fsm.ScanOptions{Prefix: []byte("aa")}, nil, false},
		{"start end", fsm.ScanOptions{Start: []byte("a/2"), End: []byte("b/1")}, []string{"a/2", "a/3", "ab", "a\xff", "b"}, false},
		{"start only", fsm.ScanOptions{Start: []byte("b")}, []string{"b", "b/1", "c"}, false},
		{"end only", fsm.ScanOptions{End: []byte("a/1")}, []string{"a", "a\x00"}, false},
		{"end is exclusive", fsm.ScanOptions{Start: []byte("a"), End: []byte("a")}, nil, false},
		{"start after end", fsm.ScanOptions{Start: []byte("c"), End: []byte("b")}, nil, false},
		{"prefix and start", fsm.ScanOptions{Prefix: []byte("a/"), Start: []byte("a/2")}, []string{"a/2", "a/3"}, false},
		{"prefix and start before it", fsm.ScanOptions{Prefix: []byte("b"), Start: []byte("a/2")}, []string{"b", "b/1"}, false},
		{"prefix and start past it", fsm.ScanOptions{Prefix: []byte("a/"), Start: []byte("b")}, nil, false},
		{"prefix and end", fsm.ScanOptions{Prefix: []byte("a"), End: []byte("a/2")}, []string{"a", "a\x00", "a/1"}, false},
		{"after", fsm.ScanOptions{Prefix: []byte("a/"), After: []byte("a/1")}, []string{"a/2", "a/3"}, false},
		{"after a missing key", fsm.ScanOptions{After: []byte("a/15")}, []string{"a/2", "a/3", "ab", "a\xff", "b", "b/1", "c"}, false},
		{"after before start", fsm.ScanOptions{Start: []byte("b"), After: []byte("a")}, []string{"b", "b/1", "c"}, false},
		{"after equals start", fsm.ScanOptions{Start: []byte("b"), After: []byte("b")}, []string{"b/1", "c"}, false},
		{"after the last key", fsm.ScanOptions{After: []byte("c")}, nil, false},
		{"after and end", fsm.ScanOptions{After: []byte("a/3"), End: []byte("b/1")}, []string{"ab", "a\xff", "b"}, false},
		{"limit", fsm.ScanOptions{Limit: 3}, []string{"a", "a\x00", "a/1"}, true},
		{"limit with end", fsm.ScanOptions{End: []byte("a/2"), Limit: 2}, []string{"a", "a\x00"}, true},
		{"limit equal to the range", fsm.ScanOptions{Prefix: []byte("a/"), Limit: 3}, []string{"a/1", "a/2", "a/3"}, false},
		{"limit equal to the bounded range", fsm.ScanOptions{End: []byte("a/1"), Limit: 2}, []string{"a", "a\x00"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := f1.Scan(tt.o)
			if err != nil {
				t.Fatalf("scan: %v", err)
			}
			if got := keysOf(res.Items); !slices.Equal(got, tt.want) {
				t.Fatalf("keys %q, want %q", got, tt.want)
			}
			if res.More != tt.more {
				t.Fatalf("More = %t, want %t", res.More, tt.more)
			}
			for _, it := range res.Items {
				if string(it.Value) != "1:"+string(it.Key) || it.Version != ver(1, uint64(slices.Index(keys, string(it.Key))+1)) {
					t.Fatalf("item %q = %q at %s: not shard 1's write", it.Key, it.Value, fmtVer(it.Version))
				}
			}
		})
	}

	// Every range again, backwards: the model is the range's keys in
	// descending order, After excluding it and everything above it.
	for _, tt := range tests {
		t.Run("reverse/"+tt.name, func(t *testing.T) {
			var want []string
			for _, k := range slices.Backward(keys) {
				kb := []byte(k)
				if bytes.HasPrefix(kb, tt.o.Prefix) && bytes.Compare(kb, tt.o.Start) >= 0 && (len(tt.o.End) == 0 || bytes.Compare(kb, tt.o.End) < 0) &&
					(tt.o.After == nil || bytes.Compare(kb, tt.o.After) < 0) {
					want = append(want, k)
				}
			}
			more := tt.o.Limit > 0 && len(want) > tt.o.Limit
			if more {
				want = want[:tt.o.Limit]
			}
			o := tt.o
			o.Reverse = true
			res, err := f1.Scan(o)
			if err != nil {
				t.Fatalf("scan: %v", err)
			}
			if got := keysOf(res.Items); !slices.Equal(got, want) {
				t.Fatalf("keys %q, want %q", got, want)
			}
			if res.More != more || more && string(res.Next) != want[len(want)-1] {
				t.Fatalf("More = %t, Next %q; want %t", res.More, res.Next, more)
			}
			for _, it := range res.Items {
				if string(it.Value) != "1:"+string(it.Key) {
					t.Fatalf("item %q = %q: not shard 1's write", it.Key, it.Value)
				}
			}
		})
	}
	// A prefix whose end is a key of the shard, and one of 0xFF bytes.
	for _, c := range []struct {
		prefix string
		want   []string
	}{{"a", []string{"a\xff", "ab", "a/3", "a/2", "a/1", "a\x00", "a"}}, {"a\xff", []string{"a\xff"}}, {"\xff", nil}} {
		res, err := f1.Scan(fsm.ScanOptions{Prefix: []byte(c.prefix), Reverse: true})
		if err != nil {
			t.Fatal(err)
		}
		if got := keysOf(res.Items); !slices.Equal(got, c.want) {
			t.Fatalf("reverse prefix %q: keys %q, want %q", c.prefix, got, c.want)
		}
	}

	if _, err := f1.Scan(fsm.ScanOptions{Limit: -1}); !errors.Is(err, fsm.ErrInvalid) {
		t.Fatalf("negative limit: %v, want ErrInvalid", err)
	}

	// Shard 2 sees only its own keys, and shard 1 none of them.
	if got, want := keysOf(scanAll(t, f2)), []string{"a/1", "a/15", "aa", "b/0", "d"}; !slices.Equal(got, want) {
		t.Fatalf("shard 2 keys %q, want %q", got, want)
	}
	wantAbsent(t, f1, "a/15")
	wantAbsent(t, f2, "a/2")
	wantValue(t, f2, "a/1", "2:a/1", ver(1, 1))
	wantValue(t, f1, "a/1", "1:a/1", ver(1, 3))

	// Writes to one shard leave the other's state alone.
	h2 := hashOf(t, f2)
	apply1(t, f1, del("a/1"), kv("aa", "1:aa"))
	if got := hashOf(t, f2); got != h2 {
		t.Fatalf("shard 2 hash changed by a write to shard 1")
	}
	wantValue(t, f2, "aa", "2:aa", ver(1, 3))
}

func TestScanPages(t *testing.T) {
	s := openStore(t, "")
	f, other := openShard(t, s, 1), openShard(t, s, 2)

	var all []string
	var ops, otherOps []fsm.Op
	for i := 0; i < 600; i++ {
		k := fmt.Sprintf("%c/%04d", 'a'+i%3, i)
		all = append(all, k)
		ops = append(ops, kv(k, k))
		otherOps = append(otherOps, kv(k+"x", "other")) // interleaves with shard 1's keys
		if len(ops) == 200 {
			apply1(t, f, ops...)
			apply1(t, other, otherOps...)
			ops, otherOps = nil, nil
		}
	}
	slices.Sort(all)
	inRange := func(o fsm.ScanOptions) []string {
		var out []string
		for _, k := range all {
			kb := []byte(k)
			if bytes.HasPrefix(kb, o.Prefix) && bytes.Compare(kb, o.Start) >= 0 && (len(o.End) == 0 || bytes.Compare(kb, o.End) < 0) {
				out = append(out, k)
			}
		}
		return out
	}

	ranges := []fsm.ScanOptions{
		{},
		{Prefix: []byte("b/")},
		{Start: []byte("a/0300"), End: []byte("c/0003")},
		{Prefix: []byte("c/"), Start: []byte("c/0100"), End: []byte("c/0500")},
	}
	for _, r := range ranges {
		for _, reverse := range []bool{false, true} {
			want := inRange(r)
			if reverse {
				slices.Reverse(want)
			}
			for _, limit := range []int{1, 3, 7, 64, len(want) - 1, len(want), len(want) + 1} {
				t.Run(fmt.Sprintf("%q-%q-%q/reverse=%t/limit=%d", r.Prefix, r.Start, r.End, reverse, limit), func(t *testing.T) {
					var got []string
					o := r
					o.Limit, o.Reverse = limit, reverse
					for pages := 0; ; pages++ {
						if pages > len(want)+1 {
							t.Fatalf("no end after %d pages", pages)
						}
						res, err := f.Scan(o)
						if err != nil {
							t.Fatal(err)
						}
						if len(res.Items) > limit {
							t.Fatalf("page of %d items, limit %d", len(res.Items), limit)
						}
						for _, it := range res.Items {
							if string(it.Value) != string(it.Key) {
								t.Fatalf("item %q has value %q", it.Key, it.Value)
							}
						}
						got = append(got, keysOf(res.Items)...)
						if !res.More {
							if res.Next != nil {
								t.Fatalf("Next %q on the last page", res.Next)
							}
							break
						}
						if len(res.Items) != limit || !bytes.Equal(res.Next, res.Items[len(res.Items)-1].Key) {
							t.Fatalf("More with %d items and Next %q", len(res.Items), res.Next)
						}
						o.After = res.Next
					}
					if !slices.Equal(got, want) {
						t.Fatalf("pages cover %d keys, want %d (first diff near %q)", len(got), len(want), firstDiff(got, want))
					}
				})
			}
		}
	}
}

func firstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return a[i]
		}
	}
	return strings.Join(a[min(len(a), len(b)):], ",")
}

func TestShardOpenedOnce(t *testing.T) {
	s := openStore(t, "")
	openShard(t, s, 7)
	if _, err := s.Shard(7); err == nil {
		t.Fatal("second Shard(7) on one store succeeded")
	}
	if f := openShard(t, s, 8); f.ID() != 8 || f.Applied() != 0 {
		t.Fatalf("fresh replica: id %v applied %d", f.ID(), f.Applied())
	}
}

// GetMany answers each key as Get does (absent keys not found, other
// shards' keys of the same store invisible), and a key held by an intent
// fails the whole call with that key's LockedError, as Get fails.
func TestGetMany(t *testing.T) {
	s := openStore(t, "")
	f1, f2 := openShard(t, s, 1), openShard(t, s, 2)
	apply1(t, f1, kv("a", "1:a"), kv("b", "1:b"), kv("d", "1:d"))
	apply1(t, f2, kv("c", "2:c"), kv("a", "2:a"))
	keys := [][]byte{[]byte("d"), []byte("c"), []byte("a"), []byte("zz"), []byte("b"), []byte("a")}
	items, found, err := f1.GetMany(keys)
	if err != nil || len(items) != len(keys) || len(found) != len(keys) {
		t.Fatalf("GetMany: %d items, %d flags, %v", len(items), len(found), err)
	}
	for i, k := range keys {
		want, err := f1.Get(k)
		switch {
		case errors.Is(err, fsm.ErrNotFound):
			if found[i] {
				t.Fatalf("%s: found %q, want absent", k, items[i].Value)
			}
		case err != nil:
			t.Fatal(err)
		case !found[i] || !bytes.Equal(items[i].Key, k) || !bytes.Equal(items[i].Value, want.Value) || items[i].Version != want.Version:
			t.Fatalf("%s: %q=%q@%d found %t, want %q@%d", k, items[i].Key, items[i].Value, items[i].Version, found[i], want.Value, want.Version)
		}
	}
	if got := fmt.Sprint(found); got != "[true false true false true true]" {
		t.Fatalf("found %s", got)
	}
	if items, found, err := f1.GetMany(nil); err != nil || len(items) != 0 || len(found) != 0 {
		t.Fatalf("no keys: %v %v %v", items, found, err)
	}

	apply(t, f1, prepare("t1", nil, kv("b", "new")))
	_, _, err = f1.GetMany([][]byte{[]byte("a"), []byte("b"), []byte("d")})
	wantLocked(t, err, "b", "t1")
	var le *fsm.LockedError
	if errors.As(err, &le); !le.Found || string(le.Committed.Value) != "1:b" {
		t.Fatalf("locked b: committed %q found %t, want 1:b", le.Committed.Value, le.Found)
	}
	if _, _, err := f1.GetMany([][]byte{[]byte("a"), []byte("d")}); err != nil {
		t.Fatalf("keys the intent does not hold: %v", err)
	}
	apply(t, f1, resolve("t1", true, "b"))
	items, found, err = f1.GetMany([][]byte{[]byte("b")})
	if err != nil || !found[0] || string(items[0].Value) != "new" {
		t.Fatalf("after the commit: %q %v %v", items[0].Value, found, err)
	}
}
