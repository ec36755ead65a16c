package node

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cairndb/cairn/shard"
)

// A node that is gone for good is removed: its replicas are placed on the
// others and caught up, it leaves every shard's group and the meta group,
// and no data is lost. Removing an unknown node, the node asked, or a node
// that is alive is refused.
func TestRemoveNode(t *testing.T) {
	tc := startCluster(t, 4, 4)
	waitFor(t, "placement realized", 60*time.Second, tc.realized)
	n1 := tc.nodes["n1"]
	ctx := t.Context()
	keys := map[string]uint64{}
	for i := range 40 {
		k := fmt.Sprintf("rm-%d", i)
		ver, err := n1.Put(ctx, []byte(k), []byte(k), WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		keys[k] = ver
	}
	var onN4 int
	v := n1.view.Load()
	for _, id := range v.ring.Shards() {
		if hasNode(v.place.Replicas[id], "n4") {
			onN4++
		}
	}
	if onN4 == 0 {
		t.Fatal("n4 holds no replica: the test would prove nothing")
	}

	srv := httptest.NewServer(n1.Handler(nil))
	defer srv.Close()
	for _, c := range []struct {
		name, code string
		status     int
	}{{"n9", "not_found", 404}, {"n1", "bad_request", 400}, {"n2", "bad_request", 400}} {
		st, _, b := do(t, "DELETE", srv.URL+"/v1/cluster/nodes/"+c.name, nil, nil)
		if st != c.status || errCode(t, b) != c.code {
			t.Fatalf("remove %s: %d %s, want %d %s", c.name, st, b, c.status, c.code)
		}
	}

	n4cfg := tc.cfgs["n4"]
	tc.nodes["n4"].Close()
	delete(tc.nodes, "n4")
	waitFor(t, "gossip sees n4 gone", 30*time.Second, func() error {
		if n1.aliveNodes()["n4"] {
			return errors.New("n4 still alive")
		}
		return nil
	})
	if st, _, b := do(t, "DELETE", srv.URL+"/v1/cluster/nodes/n4", nil, nil); st != 200 {
		t.Fatalf("remove n4: %d %s", st, b)
	}
	waitFor(t, "placement without n4 realized", 90*time.Second, func() error {
		v := n1.view.Load()
		if _, ok := v.nodes["n4"]; ok {
			return errors.New("n4 still registered")
		}
		for _, id := range v.ring.Shards() {
			if got := v.place.Replicas[id]; hasNode(got, "n4") || len(got) != 3 {
				return fmt.Errorf("%v placed on %v", id, got)
			}
		}
		if err := tc.realized(); err != nil {
			return err
		}
		st := n1.meta.Status()
		if st.Role != "leader" {
			for _, n := range tc.nodes {
				if s := n.meta.Status(); s.Role == "leader" {
					st = s
				}
			}
		}
		voters := 0
		for _, r := range st.Replicas {
			if r.ID == "n4" {
				return errors.New("n4 still in the meta group")
			}
			if r.Voter {
				voters++
			}
		}
		if voters != 3 {
			return fmt.Errorf("meta group has %d voters, want 3", voters)
		}
		return nil
	})
	for k, ver := range keys {
		it, err := tc.nodes["n2"].Get(ctx, []byte(k), shard.ReadOptions{})
		if err != nil || string(it.Value) != k || it.Version != ver {
			t.Fatalf("%s after removal: %+v %v (want version %d)", k, it, err, ver)
		}
	}
	if _, err := n1.Put(ctx, []byte("after-removal"), []byte("x"), WriteOptions{}); err != nil {
		t.Fatalf("write after removal: %v", err)
	}

	// n4 comes back with its old data. Its copy of the registry stopped
	// before the removal, so it learns from the meta leader that it is out,
	// registers again, drops its stale replicas and is given new ones.
	n4, err := Start(ctx, n4cfg)
	if err != nil {
		t.Fatal(err)
	}
	tc.nodes["n4"] = n4
	waitFor(t, "n4 placed again", 90*time.Second, func() error {
		v := n1.view.Load()
		if _, ok := v.nodes["n4"]; !ok {
			return errors.New("n4 not registered again")
		}
		var on int
		for _, id := range v.ring.Shards() {
			if hasNode(v.place.Replicas[id], "n4") {
				on++
			}
		}
		if on == 0 {
			return errors.New("no replica placed on n4")
		}
		return tc.realized()
	})
	tc.checkConverged()
	for k, ver := range keys {
		it, err := n4.Get(ctx, []byte(k), shard.ReadOptions{})
		if err != nil || string(it.Value) != k || it.Version != ver {
			t.Fatalf("%s through the returned n4: %+v %v (want version %d)", k, it, err, ver)
		}
	}
}
