// Package node runs a Cairn node: one Badger store, one raft port shared by
// every shard group, the meta group (shard 0) holding the ring and the
// placement, and the data shards placed on this node.
//
// What exists today is the single-node cluster: Start on a new data
// directory bootstraps the meta group, writes the ring and the placement
// into it (only if absent, so a restart never rewrites them), and bootstraps
// each data shard; a restart reopens them and replays only their log tails.
// Put, Get, Delete and Scan route keys through the ring to their shard, with
// the shard package's guarantees (exact write outcomes, linearizable reads by
// default), and Handler serves them as the HTTP API with cluster status,
// health and metrics. Multi-node clusters (joining through gossip, which
// internal/gossip provides but the node does not use yet, placement across
// nodes, forwarding to remote leaders) are not built; Config.Validate rejects
// the settings that need them.
package node
