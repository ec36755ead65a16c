// Package ring maps keys to shards and shards to nodes.
//
// A Ring is a consistent-hash ring of data shards: every shard owns VNodes
// points, placed by hashing (shard, i) with xxhash, and a key belongs to the
// shard of the first point at or after the key's hash. Adding a shard moves
// only the keys that now belong to it; removing one moves only its own keys.
// Rings carry an epoch that grows with every change, so a request routed
// with an old ring can be recognised and re-routed. A ring encodes to a few
// bytes per shard: the points are derived, not stored.
//
// A Placement assigns each shard's replicas to nodes. Place and Rebalance are
// deterministic (the meta group's leader computes them and replicates the
// result), keep every node's replica count within one of every other's, and
// move only what they must: replicas of departed nodes, and onto new nodes
// just enough to even the load.
//
// Shard 0 is the cluster's meta group; it is never on the ring.
package ring
