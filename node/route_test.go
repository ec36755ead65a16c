package node

import (
	"testing"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/internal/peer"
	"github.com/cairndb/cairn/ring"
)

// A peer that refused a request before it won the election must be tried
// again once another peer names it leader: the request must not bounce
// among followers until its deadline (seen as 30-second stalls of cluster
// formation).
func TestPeerNamedLeaderAfterRefusingIsRetried(t *testing.T) {
	const id = fsm.ShardID(1)
	n := &Node{raftAddr: "self:1"}
	n.view.Store(&view{
		place: ring.Placement{Replicas: map[fsm.ShardID][]ring.NodeID{id: {"a", "b", "self"}}},
		nodes: map[string]NodeInfo{"a": {Name: "a", RaftAddr: "a:1"}, "b": {Name: "b", RaftAddr: "b:1"}, "self": {Name: "self", RaftAddr: "self:1"}},
	})
	avoid := map[string]bool{}

	// a answers first, before any leader is elected: not leader, none known.
	if got := n.pickPeer(id, avoid); got != "a:1" {
		t.Fatalf("first pick %q, want a:1", got)
	}
	n.peerError(id, "a:1", &peer.Error{Code: peer.CodeNotLeader}, "", avoid)
	if got := n.pickPeer(id, avoid); got != "b:1" {
		t.Fatalf("after a refused: pick %q, want b:1", got)
	}
	// a wins; b says so.
	n.peerError(id, "b:1", &peer.Error{Code: peer.CodeNotLeader, Leader: "a:1"}, "", avoid)
	if got := n.pickPeer(id, avoid); got != "a:1" {
		t.Fatalf("after b named a leader: pick %q, want a:1 (avoid %v)", got, avoid)
	}
}
