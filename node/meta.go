package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/ring"
)

// MetaShard is the meta group: it holds the ring, the placement and the
// registry of nodes.
const MetaShard fsm.ShardID = 0

// Keys of the meta group's state. The ring and the placement are written
// together, in one command, conditioned on the placement's version, so
// concurrent decisions cannot interleave.
var (
	metaRingKey      = []byte("ring")
	metaPlacementKey = []byte("placement")
	metaNodePrefix   = []byte("node/")
)

// NodeInfo is a node's registration in the meta group: the addresses it
// announced when it last started.
type NodeInfo struct {
	Name       string `json:"name"`
	RaftAddr   string `json:"raft_addr"`
	HTTPAddr   string `json:"http_addr"`
	GossipAddr string `json:"gossip_addr"`
}

// placementJSON is how the meta group stores the placement.
type placementJSON struct {
	Epoch uint64 `json:"epoch"`
	// ClusterID is chosen by the node that created the layout.
	ClusterID string `json:"cluster_id"`
	// ReplicationFactor is the replicas per shard the cluster aims for.
	ReplicationFactor int `json:"replication_factor"`
	// Nodes are the registered nodes this placement was computed over.
	Nodes    []string            `json:"nodes"`
	Replicas map[string][]string `json:"replicas"` // shard ID → node names
	// Initial lists, for shards created by this placement, the replicas
	// that bootstrap the shard's raft group together (with the same
	// configuration). It is honoured only while Epoch is InitialEpoch.
	Initial      map[string][]string `json:"initial,omitempty"`
	InitialEpoch uint64              `json:"initial_epoch,omitempty"`
}

// view is one node's picture of the cluster, read from its local replica of
// the meta group. It is immutable; the node swaps in a new one when the meta
// group applies something.
type view struct {
	// metaIndex is the meta replica's applied index the view was read at.
	metaIndex uint64
	// ring and place are nil/zero until the layout exists.
	ring    *ring.Ring
	place   ring.Placement
	layout  placementJSON
	version uint64 // the placement item's version, for compare-and-set
	nodes   map[string]NodeInfo
}

func (v *view) hasLayout() bool { return v != nil && v.ring != nil }

// replicasOf returns the nodes placed for shard id (the meta group: every
// registered node, voters or not).
func (v *view) replicasOf(id fsm.ShardID) []ring.NodeID {
	if id == MetaShard {
		var out []ring.NodeID
		for _, name := range slices.Sorted(maps.Keys(v.nodes)) {
			out = append(out, ring.NodeID(name))
		}
		return out
	}
	return v.place.Replicas[id]
}

// initial returns the replicas that bootstrap shard id, if this node should
// bootstrap it under the current placement.
func (v *view) initial(id fsm.ShardID) []string {
	if v.layout.InitialEpoch == 0 || v.layout.InitialEpoch != v.layout.Epoch {
		return nil
	}
	return v.layout.Initial[strconv.FormatUint(uint64(id), 10)]
}

// readView reads the meta group's state from the local replica.
func readView(meta *fsm.FSM) (*view, error) {
	v := &view{metaIndex: meta.Applied(), nodes: map[string]NodeInfo{}}
	res, err := meta.Scan(fsm.ScanOptions{Prefix: metaNodePrefix})
	if err != nil {
		return nil, fmt.Errorf("node: read node registry: %w", err)
	}
	for _, it := range res.Items {
		var ni NodeInfo
		if err := json.Unmarshal(it.Value, &ni); err != nil {
			return nil, fmt.Errorf("node: registry entry %q: %w", it.Key, err)
		}
		v.nodes[ni.Name] = ni
	}
	rItem, rErr := meta.Get(metaRingKey)
	pItem, pErr := meta.Get(metaPlacementKey)
	if errors.Is(rErr, fsm.ErrNotFound) && errors.Is(pErr, fsm.ErrNotFound) {
		return v, nil
	}
	if err := errors.Join(rErr, pErr); err != nil {
		return nil, fmt.Errorf("node: read cluster layout: %w", err)
	}
	if v.ring, err = ring.Decode(rItem.Value); err != nil {
		return nil, fmt.Errorf("node: stored ring: %w", err)
	}
	if v.place, v.layout, err = decodePlacement(pItem.Value); err != nil {
		return nil, err
	}
	v.version = pItem.Version
	for _, id := range v.ring.Shards() {
		if len(v.place.Replicas[id]) == 0 {
			return nil, fmt.Errorf("node: stored placement has no replicas for %v", id)
		}
	}
	return v, nil
}

func decodePlacement(b []byte) (ring.Placement, placementJSON, error) {
	var pj placementJSON
	if err := json.Unmarshal(b, &pj); err != nil {
		return ring.Placement{}, pj, fmt.Errorf("node: stored placement: %w", err)
	}
	p := ring.Placement{Epoch: pj.Epoch, Replicas: map[fsm.ShardID][]ring.NodeID{}}
	for k, names := range pj.Replicas {
		id, err := strconv.ParseUint(k, 10, 64)
		if err != nil {
			return ring.Placement{}, pj, fmt.Errorf("node: stored placement: shard %q: %w", k, err)
		}
		for _, name := range names {
			p.Replicas[fsm.ShardID(id)] = append(p.Replicas[fsm.ShardID(id)], ring.NodeID(name))
		}
	}
	return p, pj, nil
}

// encodePlacement stores p with the layout's other fields taken from base.
func encodePlacement(p ring.Placement, base placementJSON) ([]byte, error) {
	pj := base
	pj.Epoch = p.Epoch
	pj.Replicas = replicaNames(p)
	return json.Marshal(pj)
}

// replicaNames is p's replica lists keyed as stored.
func replicaNames(p ring.Placement) map[string][]string {
	out := map[string][]string{}
	for id, nodes := range p.Replicas {
		names := make([]string, len(nodes))
		for i, nd := range nodes {
			names[i] = string(nd)
		}
		out[strconv.FormatUint(uint64(id), 10)] = names
	}
	return out
}

func nodeKey(name string) []byte { return append(bytes.Clone(metaNodePrefix), name...) }

func hasNode(nodes []ring.NodeID, name string) bool {
	return slices.Contains(nodes, ring.NodeID(name))
}
