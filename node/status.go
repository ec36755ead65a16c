package node

import (
	"encoding/hex"
	"maps"
	"slices"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/shard"
)

// ClusterStatus is one node's view of the cluster (GET /v1/cluster).
type ClusterStatus struct {
	Node       string `json:"node"`
	ClusterID  string `json:"cluster_id,omitempty"`
	RaftAddr   string `json:"raft_addr"`
	HTTPAddr   string `json:"http_addr"`
	GossipAddr string `json:"gossip_addr"`
	RingEpoch  uint64 `json:"ring_epoch"`
	// Ring is the ring's compact encoding (ring.Decode), base64 in JSON:
	// clients route keys with it.
	Ring           []byte `json:"ring,omitempty"`
	PlacementEpoch uint64 `json:"placement_epoch"`
	Replicas       int    `json:"replication_factor,omitempty"`
	// Ready: this node knows the layout and a leader for every shard;
	// otherwise NotReady says what is missing.
	Ready    bool          `json:"ready"`
	NotReady string        `json:"not_ready,omitempty"`
	Nodes    []NodeStatus  `json:"nodes"`
	Shards   []ShardStatus `json:"shards"`
}

// NodeStatus is a node as the registry and gossip show it.
type NodeStatus struct {
	NodeInfo
	// Registered: in the meta group's registry; Alive: gossip sees it.
	Registered bool     `json:"registered"`
	Alive      bool     `json:"alive"`
	Leads      []uint64 `json:"leads"`
	// RingEpoch and PlacementEpoch: what the node announced through gossip
	// that it has applied (alive nodes only).
	RingEpoch      uint64 `json:"ring_epoch,omitempty"`
	PlacementEpoch uint64 `json:"placement_epoch,omitempty"`
	// DiskLow: the node's data disk is below its minimum free space, so
	// the cluster refuses writes that add data (see Config.MinFreeDisk).
	DiskLow bool `json:"disk_low,omitempty"`
}

// ShardStatus is a shard: where it is placed, who leads it, and this
// node's replica of it, if any.
type ShardStatus struct {
	Shard uint64 `json:"shard"`
	// Replicas are the nodes placed for the shard (for the meta group,
	// every registered node).
	Replicas   []string      `json:"replicas"`
	Leader     string        `json:"leader"`
	LeaderAddr string        `json:"leader_addr"`
	Local      *shard.Status `json:"local,omitempty"`
}

// Cluster returns this node's view of the cluster.
func (n *Node) Cluster() ClusterStatus {
	v := n.view.Load()
	cs := ClusterStatus{
		Node: n.cfg.Name, RaftAddr: n.raftAddr, HTTPAddr: n.httpAddr, GossipAddr: n.gossip.Addr(),
		Nodes: []NodeStatus{}, Shards: []ShardStatus{},
	}
	if err := n.ready(); err != nil {
		cs.NotReady = err.Error()
	} else {
		cs.Ready = true
	}
	byAddr := map[string]string{} // raft address → node name
	nodes := map[string]*NodeStatus{}
	for name, ni := range v.nodes {
		nodes[name] = &NodeStatus{NodeInfo: ni, Registered: true, Leads: []uint64{}}
		byAddr[ni.RaftAddr] = name
	}
	for _, m := range n.gossip.Members() {
		ns := nodes[m.Name]
		if ns == nil {
			ns = &NodeStatus{NodeInfo: NodeInfo{Name: m.Name, RaftAddr: m.RaftAddr, HTTPAddr: m.HTTPAddr, GossipAddr: m.GossipAddr}, Leads: []uint64{}}
			nodes[m.Name] = ns
			byAddr[m.RaftAddr] = m.Name
		}
		ns.Alive = true
		if a, err := decodeAnnouncement(m.State); err == nil {
			ns.RingEpoch, ns.PlacementEpoch, ns.DiskLow = a.RingEpoch, a.Epoch, a.DiskLow
		}
		if m.Name == n.cfg.Name {
			ns.DiskLow = n.disk.low.Load() // fresher than its announcement
		}
	}
	ids := []fsm.ShardID{MetaShard}
	if v.hasLayout() {
		cs.ClusterID = v.layout.ClusterID
		cs.RingEpoch, cs.PlacementEpoch, cs.Replicas = v.ring.Epoch(), v.place.Epoch, v.layout.ReplicationFactor
		cs.Ring, _ = v.ring.MarshalBinary()
		ids = append(ids, v.ring.Shards()...)
	}
	for _, id := range ids {
		ss := ShardStatus{Shard: uint64(id), Replicas: []string{}}
		for _, r := range v.replicasOf(id) {
			ss.Replicas = append(ss.Replicas, string(r))
		}
		if s := n.localShard(id); s != nil {
			st := s.Status()
			ss.Local = &st
		}
		ss.LeaderAddr = n.leaderAddr(id)
		ss.Leader = byAddr[ss.LeaderAddr]
		if ns := nodes[ss.Leader]; ns != nil {
			ns.Leads = append(ns.Leads, uint64(id))
		}
		cs.Shards = append(cs.Shards, ss)
	}
	for _, name := range slices.Sorted(maps.Keys(nodes)) {
		cs.Nodes = append(cs.Nodes, *nodes[name])
	}
	return cs
}

// ReplicaState is one of this node's replicas as convergence checks see it:
// replicas of a shard at the same applied index must have the same state
// hash.
type ReplicaState struct {
	Shard     uint64 `json:"shard"`
	Role      string `json:"role"`
	Term      uint64 `json:"term"`
	Applied   uint64 `json:"applied_index"`
	StateHash string `json:"state_hash"` // hex SHA-256 of the replica's state at Applied
	Error     string `json:"error,omitempty"`
}

// Replicas hashes the state of every replica this node holds, the meta
// group's included (GET /v1/cluster/replicas). Each hash reads the
// replica's whole state: meant for tests and operators, not for polling.
func (n *Node) Replicas() []ReplicaState {
	list := n.replicas()
	out := make([]ReplicaState, 0, len(list))
	for _, s := range list {
		st := s.Status()
		rs := ReplicaState{Shard: st.Shard, Role: st.Role, Term: st.Term}
		idx, sum, err := s.FSM().StateHash()
		if err != nil {
			rs.Error = err.Error()
		} else {
			rs.Applied, rs.StateHash = idx, hex.EncodeToString(sum[:])
		}
		out = append(out, rs)
	}
	return out
}
