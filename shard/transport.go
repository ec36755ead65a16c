package shard

import (
	"sync/atomic"

	"github.com/hashicorp/raft"
)

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
//
// It also caps the commit index a leader sends at what its own log has
// synced (synced, when set): see writeahead.go.
type serialTransport struct {
	*raft.NetworkTransport
	synced func() uint64
	held   *atomic.Uint64 // appends sent with a lower commit index than raft's
}

// AppendEntries sends an append whose commit index is at most the leader's
// synced index.
func (t serialTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if t.synced != nil {
		if at := t.synced(); args.LeaderCommitIndex > at {
			args.LeaderCommitIndex = at
			if t.held != nil {
				t.held.Add(1)
			}
		}
	}
	return t.NetworkTransport.AppendEntries(id, target, args, resp)
}

// AppendEntriesPipeline declines: every append goes through AppendEntries
// (the shard's transport does not pipeline anyway; see Shard.open).
func (serialTransport) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}

// SetHeartbeatHandler keeps heartbeats on the consumer channel.
func (serialTransport) SetHeartbeatHandler(func(raft.RPC)) {}
