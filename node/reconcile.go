package node

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/internal/peer"
	"github.com/cairndb/cairn/ring"
	"github.com/cairndb/cairn/shard"
	"github.com/hashicorp/raft"
)

// The reconciler makes this node act on the committed cluster state in its
// meta replica (never on gossip alone):
//
//   - it registers the node (its addresses) in the meta group;
//   - it opens the replicas the placement puts on this node, bootstrapping
//     a shard's group together with its initial replicas;
//   - as leader of a data shard, it moves the group's membership toward the
//     placement one change at a time: new replicas join as non-voters and
//     are promoted once caught up; only then are replicas removed; once
//     the membership matches, it may hand the leadership to a node that
//     leads fewer data shards (leaderBalancer);
//   - a replica no longer placed here is closed and deleted once its
//     group's leader confirms the removal is committed;
//   - as leader of the meta group, it adds registered nodes to the meta
//     group (as non-voters, promoting up to five voters), creates the
//     cluster's layout once the founding nodes registered, and rebalances
//     the placement when new nodes register.
//
// Each shard has at most one membership task running; the loop itself never
// blocks on another node.

// membershipTimeout bounds one membership step (adding a replica waits for
// it to catch up).
const membershipTimeout = 30 * time.Second

func (n *Node) reconcileLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.ReconcileInterval)
	defer t.Stop()
	opened := false
	for {
		if !opened {
			opened = n.openLocal() == nil
		}
		n.reconcile()
		select {
		case <-n.ctx.Done():
			return
		case <-n.kick:
		case <-t.C:
		}
	}
}

// openLocal opens every data replica found on disk, placed here or not, so
// that one the placement dropped can be drained and deleted properly.
func (n *Node) openLocal() error {
	ids, err := n.localShards()
	if err != nil {
		n.logger.Error("list local replicas", "error", err)
		return err
	}
	for _, id := range ids {
		if _, err := n.ensureOpen(id); err != nil {
			return err
		}
	}
	return nil
}

func (n *Node) ensureOpen(id fsm.ShardID) (*shard.Shard, error) {
	if s := n.localShard(id); s != nil {
		return s, nil
	}
	n.mu.RLock()
	busy := n.busy[id]
	n.mu.RUnlock()
	if busy {
		// A task still owns this shard's files (a replica being deleted
		// after it moved away): open it again on a later pass.
		return nil, fmt.Errorf("node: %v is busy", id)
	}
	s, err := n.openShard(id)
	if err != nil {
		n.logger.Error("open replica", "shard", uint64(id), "error", err)
		return nil, err
	}
	n.mu.Lock()
	n.shards[id] = s
	n.mu.Unlock()
	return s, nil
}

func (n *Node) reconcile() {
	if n.ctx.Err() != nil {
		return
	}
	v := n.view.Load()
	n.register(v)
	if _, _, self := n.meta.Leader(); self {
		n.task(MetaShard, func(ctx context.Context) error { return n.metaStep(ctx, v) })
	}
	if !v.hasLayout() {
		return
	}
	for _, id := range v.ring.Shards() {
		if !hasNode(v.place.Replicas[id], n.cfg.Name) {
			continue
		}
		s, err := n.ensureOpen(id)
		if err != nil {
			continue
		}
		if init := v.initial(id); hasNode(toNodeIDs(init), n.cfg.Name) && len(s.Status().Replicas) == 0 {
			n.bootstrapShard(v, s, init)
		}
	}
	if n.cfg.LeaderBalanceInterval > 0 {
		n.balancer.observe(n.leaderCounts(v))
	}
	n.mu.RLock()
	local := maps.Clone(n.shards)
	n.mu.RUnlock()
	for id, s := range local {
		if _, _, self := s.Leader(); self {
			n.task(id, func(ctx context.Context) error { return n.convergeStep(ctx, v, s) })
		} else if !hasNode(v.place.Replicas[id], n.cfg.Name) {
			n.task(id, func(ctx context.Context) error { return n.dropIfRemoved(ctx, s) })
		}
	}
}

// task runs fn for shard id in the background unless a task for id is
// already running.
func (n *Node) task(id fsm.ShardID, fn func(ctx context.Context) error) {
	n.mu.Lock()
	if n.busy[id] || n.ctx.Err() != nil {
		n.mu.Unlock()
		return
	}
	n.busy[id] = true
	n.wg.Add(1)
	n.mu.Unlock()
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithTimeout(n.ctx, membershipTimeout)
		err := fn(ctx)
		cancel()
		n.mu.Lock()
		delete(n.busy, id)
		n.mu.Unlock()
		if err != nil && n.ctx.Err() == nil {
			n.logger.Warn("reconcile", "shard", uint64(id), "error", err)
		}
	}()
}

func toNodeIDs(names []string) []ring.NodeID {
	out := make([]ring.NodeID, len(names))
	for i, s := range names {
		out[i] = ring.NodeID(s)
	}
	return out
}

// register records this node's addresses in the meta group when the
// registry lacks them or holds old ones.
func (n *Node) register(v *view) {
	me := NodeInfo{Name: n.cfg.Name, RaftAddr: n.raftAddr, HTTPAddr: n.httpAddr, GossipAddr: n.gossip.Addr()}
	if !n.clusterVisible() || v.nodes[n.cfg.Name] == me && !n.removedFromMeta() {
		return
	}
	b, _ := json.Marshal(me)
	n.task(registerTask, func(ctx context.Context) error {
		_, err := n.propose(ctx, metaTarget, fsm.Command{Ops: []fsm.Op{fsm.Put(nodeKey(me.Name), b)}})
		if err == nil {
			n.logger.Info("registered in the cluster", "raft_addr", me.RaftAddr, "http_addr", me.HTTPAddr)
		}
		return err
	})
}

// removedFromMeta reports whether the meta group's leader says this node's
// meta replica is out of the group. That happens to a node removed
// (RemoveNode) while it was down: its own copy of the registry stopped
// before the removal and still lists it, so only the leader can tell it to
// register again. It asks only while its meta replica knows no leader, as a
// removed replica never learns one.
func (n *Node) removedFromMeta() bool {
	if _, addr, self := n.meta.Leader(); addr != "" || self {
		return false
	}
	addr := n.leaderAddr(MetaShard) // from peers' answers or gossip
	if addr == "" || addr == n.raftAddr {
		return false
	}
	ctx, cancel := context.WithTimeout(n.ctx, time.Second)
	defer cancel()
	var r peer.StatusReply
	if err := n.peers.Call(ctx, addr, "Status", &peer.StatusArgs{Shard: uint64(MetaShard), Replica: n.cfg.Name}, &r); err != nil {
		return false
	}
	if r.Excludes {
		n.logger.Warn("this node was removed from the cluster; registering again as a new member")
	}
	return r.Excludes
}

// registerTask is the task key of registration (no shard has this ID).
const registerTask = fsm.ShardID(1<<64 - 1)

func metaTarget(context.Context) (target, error) { return target{id: MetaShard}, nil }

// clusterVisible: this node is in a cluster, or gossip shows one to join.
func (n *Node) clusterVisible() bool {
	if n.inCluster() {
		return true
	}
	for _, m := range n.gossip.Members() {
		if a, err := decodeAnnouncement(m.State); err == nil && a.InCluster {
			return true
		}
	}
	return false
}

func (n *Node) bootstrapShard(v *view, s *shard.Shard, init []string) {
	var reps []shard.Replica
	for _, name := range init {
		ni, ok := v.nodes[name]
		if !ok || ni.RaftAddr == "" {
			n.logger.Warn("cannot bootstrap: initial replica not registered", "shard", uint64(s.ID()), "replica", name)
			return
		}
		reps = append(reps, shard.Replica{ID: name, Addr: ni.RaftAddr, Voter: true})
	}
	if err := s.Bootstrap(reps); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		n.logger.Error("bootstrap replica", "shard", uint64(s.ID()), "error", err)
		return
	}
	n.logger.Info("bootstrapped shard", "shard", uint64(s.ID()), "replicas", init)
}

// convergeStep makes one membership change of a shard this node leads,
// toward its placement: add or re-address a placed replica (non-voter
// first, promoted once caught up), else remove one that is not placed (if
// that is this node, hand leadership to a placed voter first).
func (n *Node) convergeStep(ctx context.Context, v *view, s *shard.Shard) error {
	want := v.place.Replicas[s.ID()]
	have := map[string]shard.Replica{}
	for _, r := range s.Status().Replicas {
		have[r.ID] = r
	}
	for _, name := range want {
		ni, ok := v.nodes[string(name)]
		if !ok || ni.RaftAddr == "" {
			continue // not registered yet
		}
		if r, ok := have[string(name)]; ok && r.Voter && r.Addr == ni.RaftAddr {
			continue
		}
		n.logger.Info("adding replica", "shard", uint64(s.ID()), "replica", name, "addr", ni.RaftAddr)
		return s.AddReplica(ctx, string(name), ni.RaftAddr, n.cfg.ReplicaMaxLag)
	}
	for _, id := range slices.Sorted(maps.Keys(have)) {
		if hasNode(want, id) {
			continue
		}
		if id == n.cfg.Name {
			for _, name := range want {
				if r, ok := have[string(name)]; ok && r.Voter {
					n.logger.Info("handing leadership away from a replica that is moving", "shard", uint64(s.ID()), "to", r.ID)
					return s.TransferLeadership(ctx, r)
				}
			}
			return nil
		}
		n.logger.Info("removing replica", "shard", uint64(s.ID()), "replica", id)
		return s.RemoveReplica(ctx, id)
	}
	return n.balanceStep(ctx, s)
}

// dropIfRemoved deletes this node's replica of a shard that is no longer
// placed here, once the group's leader says the removal is committed.
func (n *Node) dropIfRemoved(ctx context.Context, s *shard.Shard) error {
	_, addr, _ := s.Leader()
	if addr == "" {
		addr = n.leaderAddr(s.ID())
	}
	if addr == "" || addr == n.raftAddr {
		return nil
	}
	var r peer.StatusReply
	if err := n.peers.Call(ctx, addr, "Status", &peer.StatusArgs{Shard: uint64(s.ID()), Replica: n.cfg.Name}, &r); err != nil {
		return err
	}
	if !r.Excludes {
		return nil
	}
	n.mu.Lock()
	if n.shards[s.ID()] == s {
		delete(n.shards, s.ID())
	}
	n.mu.Unlock()
	if err := s.Close(); err != nil {
		n.logger.Warn("close moved replica", "shard", uint64(s.ID()), "error", err)
	}
	if err := n.store.Drop(s.ID()); err != nil {
		return err
	}
	if err := os.RemoveAll(n.shardDir(s.ID())); err != nil {
		return fmt.Errorf("node: remove replica files: %w", err)
	}
	if n.logs != nil {
		// After the files: a crash in between leaves entries that the next
		// start (or a replica created here again) drops.
		if err := n.logs.Drop(uint64(s.ID())); err != nil {
			return fmt.Errorf("node: drop replica's raft log: %w", err)
		}
	}
	n.logger.Info("deleted replica that moved away", "shard", uint64(s.ID()))
	return nil
}

// metaVoters is how many voters the meta group aims for with k registered
// nodes: an odd number, at most five.
func metaVoters(k int) int {
	t := min(k, 5)
	if t%2 == 0 {
		t--
	}
	return max(t, 1)
}

// metaStep is one decision of the meta group's leader.
func (n *Node) metaStep(ctx context.Context, v *view) error {
	have := map[string]shard.Replica{}
	voters := 0
	for _, r := range n.meta.Status().Replicas {
		have[r.ID] = r
		if r.Voter {
			voters++
		}
	}
	names := slices.Sorted(maps.Keys(v.nodes))
	// Every registered node holds a meta replica, at its current address.
	for _, name := range names {
		ni := v.nodes[name]
		if r, ok := have[name]; !ok || r.Addr != ni.RaftAddr {
			n.logger.Info("adding node to the meta group", "replica", name, "addr", ni.RaftAddr)
			return n.meta.AddNonvoter(ctx, name, ni.RaftAddr)
		}
	}
	if voters < metaVoters(len(names)) {
		alive := n.aliveNodes()
		for _, name := range names {
			if r := have[name]; !r.Voter && alive[name] {
				n.logger.Info("promoting meta replica", "replica", name)
				return n.meta.AddReplica(ctx, name, r.Addr, n.cfg.ReplicaMaxLag)
			}
		}
	}
	if v.hasLayout() {
		// A replica whose node left the registry (RemoveNode) leaves the
		// group. Before the layout exists, founding voters may not have
		// registered yet, so this waits for it.
		for _, id := range slices.Sorted(maps.Keys(have)) {
			if _, ok := v.nodes[id]; !ok && id != n.cfg.Name {
				n.logger.Info("removing departed node from the meta group", "replica", id)
				return n.meta.RemoveReplica(ctx, id)
			}
		}
	}
	if !v.hasLayout() {
		for id, r := range have {
			if _, ok := v.nodes[id]; r.Voter && !ok {
				return nil // wait for every founding node to register
			}
		}
		return n.createLayout(ctx, v, names)
	}
	if !slices.Equal(v.layout.Nodes, names) && n.placementRealized(ctx, v) {
		return n.rebalance(ctx, v, names)
	}
	return nil
}

func (n *Node) aliveNodes() map[string]bool {
	alive := map[string]bool{}
	for _, m := range n.gossip.Members() {
		alive[m.Name] = true
	}
	return alive
}

// createLayout writes the ring and the first placement (only if absent).
func (n *Node) createLayout(ctx context.Context, v *view, names []string) error {
	ids := make([]fsm.ShardID, n.cfg.Shards)
	for i := range ids {
		ids[i] = fsm.ShardID(i + 1)
	}
	r, err := ring.New(1, ring.DefaultVNodes, ids)
	if err != nil {
		return err
	}
	p, err := ring.Place(ids, toNodeIDs(names), n.cfg.Replicas)
	if err != nil {
		return err
	}
	var idb [8]byte
	_, _ = crand.Read(idb[:])
	// The initial replicas are the placement itself, recorded apart from it
	// so that later placements bootstrap nothing.
	pb, err := encodePlacement(p, placementJSON{
		ClusterID:         hex.EncodeToString(idb[:]),
		ReplicationFactor: n.cfg.Replicas,
		Nodes:             names,
		Initial:           replicaNames(p),
		InitialEpoch:      p.Epoch,
	})
	if err != nil {
		return err
	}
	rb, _ := r.MarshalBinary()
	res, err := n.propose(ctx, metaTarget, fsm.Command{Ops: []fsm.Op{
		fsm.Put(metaRingKey, rb).If(0),
		fsm.Put(metaPlacementKey, pb).If(0),
	}})
	if err != nil {
		return fmt.Errorf("node: write cluster layout: %w", err)
	}
	if res.Code == fsm.OK {
		n.logger.Info("created cluster layout", "shards", n.cfg.Shards, "replicas", n.cfg.Replicas, "nodes", names)
	}
	return nil
}

// placementRealized reports whether every data shard's group has exactly
// its placed voters (so no move is in flight), asking the leaders.
func (n *Node) placementRealized(ctx context.Context, v *view) bool {
	for _, id := range v.ring.Shards() {
		st, err := n.leaderStatus(ctx, id)
		if err != nil {
			return false
		}
		var voters []ring.NodeID
		for _, r := range st.Replicas {
			if !r.Voter {
				return false
			}
			voters = append(voters, ring.NodeID(r.ID))
		}
		slices.Sort(voters)
		if !slices.Equal(voters, v.place.Replicas[id]) {
			return false
		}
	}
	return true
}

// leaderStatus returns the status of shard id's leader replica.
func (n *Node) leaderStatus(ctx context.Context, id fsm.ShardID) (shard.Status, error) {
	if s := n.localShard(id); s != nil {
		if _, _, self := s.Leader(); self {
			return s.Status(), nil
		}
	}
	addr := n.leaderAddr(id)
	if addr == "" || addr == n.raftAddr {
		return shard.Status{}, errNoRoute(id)
	}
	var r peer.StatusReply
	if err := n.peers.Call(ctx, addr, "Status", &peer.StatusArgs{Shard: uint64(id)}, &r); err != nil {
		return shard.Status{}, err
	}
	if !r.Hosted || r.Status.Role != "leader" {
		return shard.Status{}, fmt.Errorf("%w: %s does not lead %v", shard.ErrNotLeader, addr, id)
	}
	return r.Status, nil
}

// rebalance places replicas on nodes that registered since the last
// placement (conditioned on the placement not having changed meanwhile).
func (n *Node) rebalance(ctx context.Context, v *view, names []string) error {
	p, err := v.place.Rebalance(toNodeIDs(names), v.layout.ReplicationFactor)
	if err != nil {
		return err
	}
	base := v.layout
	base.Nodes, base.Initial, base.InitialEpoch = names, nil, 0
	pb, err := encodePlacement(p, base)
	if err != nil {
		return err
	}
	res, err := n.propose(ctx, metaTarget, fsm.Command{Ops: []fsm.Op{fsm.Put(metaPlacementKey, pb).If(v.version)}})
	if err != nil {
		return fmt.Errorf("node: write placement: %w", err)
	}
	if res.Code == fsm.OK {
		n.logger.Info("rebalanced placement", "epoch", p.Epoch, "nodes", names)
	}
	return nil
}
