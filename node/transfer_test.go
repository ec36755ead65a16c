package node

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cairndb/cairn/fsm"
)

// Leadership moves to the node asked for, through whichever node gets the
// request (forwarded to the leader), and the shard keeps taking writes.
// Bad requests are refused before anything moves.
func TestTransferLeadership(t *testing.T) {
	tc := startCluster(t, 3, 2)
	waitFor(t, "placement realized", 60*time.Second, tc.realized)
	leaderName := func(id fsm.ShardID) string {
		for name, n := range tc.nodes {
			if s := n.localShard(id); s != nil {
				if _, _, self := s.Leader(); self {
					return name
				}
			}
		}
		return ""
	}
	for _, id := range []fsm.ShardID{1, MetaShard} {
		var from, via, to string
		waitFor(t, "a leader", 30*time.Second, func() error {
			if from = leaderName(id); from == "" {
				return fmt.Errorf("no leader of %v", id)
			}
			return nil
		})
		for _, name := range []string{"n1", "n2", "n3"} {
			switch {
			case name == from:
			case via == "":
				via = name // a follower takes the request and forwards it
			default:
				to = name
			}
		}
		srv := httptest.NewServer(tc.nodes[via].Handler(nil))
		st, _, b := do(t, "POST", fmt.Sprintf("%s/v1/cluster/shards/%d/transfer-leader?to=%s", srv.URL, id, to), nil, nil)
		var got struct {
			Shard  uint64
			Leader string
		}
		if err := json.Unmarshal(b, &got); st != 200 || err != nil || got.Shard != uint64(id) || got.Leader != to {
			t.Fatalf("shard %v: transfer from %s to %s via %s: %d %s", id, from, to, via, st, b)
		}
		if now := leaderName(id); now != to {
			t.Fatalf("shard %v: %s leads after the transfer, want %s", id, now, to)
		}
		// Without a target: any other voter.
		st, _, b = do(t, "POST", fmt.Sprintf("%s/v1/cluster/shards/%d/transfer-leader", srv.URL, id), nil, nil)
		if err := json.Unmarshal(b, &got); st != 200 || err != nil || got.Leader == to || got.Leader == "" {
			t.Fatalf("shard %v: transfer away from %s: %d %s", id, to, st, b)
		}
		srv.Close()
	}
	n1 := tc.nodes["n1"]
	if _, err := n1.Put(t.Context(), []byte(keyOn(n1, 1)), []byte("v"), WriteOptions{}); err != nil {
		t.Fatalf("write after transfers: %v", err)
	}

	srv := httptest.NewServer(n1.Handler(nil))
	defer srv.Close()
	for _, c := range []struct {
		path   string
		status int
		code   string
	}{
		{"/v1/cluster/shards/x/transfer-leader", 400, "bad_request"},
		{"/v1/cluster/shards/99/transfer-leader", 404, "not_found"},
		{"/v1/cluster/shards/1/transfer-leader?to=nobody", 400, "bad_request"},
	} {
		st, _, b := do(t, "POST", srv.URL+c.path, nil, nil)
		if st != c.status || errCode(t, b) != c.code {
			t.Fatalf("%s: %d %s, want %d %s", c.path, st, b, c.status, c.code)
		}
	}
}
