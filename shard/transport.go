package shard

import "github.com/hashicorp/raft"

// serialTransport is the network transport with raft's heartbeat fast path
// turned off. raft v1.8.0 handles a heartbeat on the transport's own
// goroutine, so that a follower busy writing its log still hears its
// leader; but a heartbeat that carries a newer term then changes the term
// and the role while the leader loop may be building entries. A deposed
// leader (one that was paused, say) can thus write a client's command
// under the new leader's term, at an index where the new leader wrote
// another entry: both claim the same term, so the followers' log check
// passes and replicas apply different commands at one index
// (hashicorp/raft #695 and #701; a Jepsen run that paused a shard's leader
// found two replicas at the same applied index with different state).
// Without the fast path every heartbeat waits its turn in raft's main
// loop, where the term changes only between the leader loop's steps.
type serialTransport struct{ *raft.NetworkTransport }

// SetHeartbeatHandler keeps heartbeats on the consumer channel.
func (serialTransport) SetHeartbeatHandler(func(raft.RPC)) {}
