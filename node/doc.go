// Package node runs a Cairn node: one Badger store, one raft port shared by
// every shard group and by node-to-node RPC, a gossip member, the node's
// replica of the meta group (shard 0) and the data shard replicas placed on
// it.
//
// # Cluster state
//
// The meta group is the source of truth: it holds the ring (which shard owns
// a key, with an epoch), the placement (which nodes hold each shard's
// replicas, with an epoch) and the registry of nodes (their raft, HTTP and
// gossip addresses). Every node holds a meta replica (up to five voters, the
// rest non-voters), so every node reads the cluster state locally and acts
// on what is committed. Gossip (memberlist) finds nodes, tells who is alive
// and spreads hints (who leads which shard, formation proposals); nothing is
// decided from gossip alone, and gossip never removes a raft member.
//
// # Forming and joining
//
// A node with no Join forms a one-node cluster by itself. Nodes started
// with Join and BootstrapExpect N form a cluster once N of them see each
// other: the first N by name each announce the same proposal and then
// bootstrap the meta group with identical configurations. A node that sees
// an existing cluster joins it instead: it registers through the meta
// leader, which adds it to the meta group. Restarted nodes rejoin from their
// own state.
//
// # The reconciler
//
// Each node runs a loop (reconcile.go) that compares the committed placement
// with reality and takes one step at a time: it opens the replicas placed on
// it (bootstrapping new shards together with their initial replicas), and,
// as the leader of a shard, adds placed replicas (non-voter first, promoted
// once caught up) before removing replicas that are no longer placed. A
// replica that moved away is deleted once its group's leader confirms that
// the removal is committed. The meta leader registers nodes in the meta
// group, creates the layout when the founding nodes have registered, and
// rebalances the placement when a new node registers and no move is in
// flight.
//
// # Requests
//
// Any node serves any key. Writes go to the leader of the key's shard, on
// this node or forwarded over the raft port (internal/peer). A rejection
// that proves nothing was proposed (not leader, no leader yet, unreachable
// before sending) is retried at the leader the answer names, until the
// request's deadline. An attempt whose outcome is unknown is retried with
// the same request ID, which the state machine applies at most once; if the
// last attempt is still unknown, so is the answer. Linearizable reads are
// served by this node's replica if it has one (a follower asks the leader
// for the read index) or by the leader; stale reads by any replica. Every
// forwarded request carries the ring epoch it was routed with: a node whose
// ring maps the key elsewhere answers wrong_shard with its epoch, and the
// sender waits for that epoch and routes again. Scans read every shard in
// parallel and merge in key order.
//
// Handler serves all of this as the HTTP API, with metrics; Cluster reports
// this node's view of nodes, shards, replicas and leaders.
package node
