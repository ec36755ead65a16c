package ring

import (
	"bytes"
	"fmt"
	"testing"
)

// Routed keys with one tag land on one shard whatever precedes the tag,
// and are placed exactly as the tag itself would be; other keys (and
// routed keys whose length suffix does not fit) hash whole.
func TestRoutedKeysFollowTheirTag(t *testing.T) {
	r, err := New(1, 64, []ShardID{1, 2, 3, 4})
	if err != nil {
		t.Fatal(err)
	}
	spread := map[ShardID]bool{}
	for i := range 200 {
		tag := fmt.Appendf(nil, "doc-%d", i)
		want := r.Locate(tag)
		spread[want] = true
		for _, body := range []string{"d/users/", "x/users/by-age/\x20\x40", "", "a much longer body with other bytes \xff\x00"} {
			key := AppendRouted(append([]byte{RoutedPrefix}, body...), tag)
			if !bytes.Equal(RouteKey(key), tag) {
				t.Fatalf("RouteKey(%q) = %q, want %q", key, RouteKey(key), tag)
			}
			if got := r.Locate(key); got != want {
				t.Fatalf("key %q on %v, its tag on %v", key, got, want)
			}
		}
	}
	if len(spread) != 4 {
		t.Fatalf("tags on %d shards, want all 4", len(spread))
	}
	for _, key := range [][]byte{[]byte("plain"), {RoutedPrefix}, {RoutedPrefix, 'a', 0, 9}, {RoutedPrefix, 'a', 0, 0}, {'a', 'b', 0, 1}} {
		if !bytes.Equal(RouteKey(key), key) {
			t.Fatalf("RouteKey(%q) = %q, want the whole key", key, RouteKey(key))
		}
	}
}
