// Package shard runs one node's replica of a shard: a hashicorp/raft group
// whose log lives in raft-wal or, for replicas created with it, raft-boltdb
// (behind a log cache; see LogStore), whose snapshots live in a file
// snapshot store beside it, and whose state machine is an fsm.FSM in the
// node's shared Badger store.
//
// # One port for every group
//
// All groups of a node share one TCP listener (Mux). A connection opens with
// an 11-byte header, magic "CN", a kind (raft traffic or peer RPC) and the
// shard ID, and is handed to that shard's listener; anything else is closed.
// Peer RPC carries what raft does not: read indexes for follower reads, and a
// new replica's progress while it catches up as a non-voter.
//
// # Writes
//
// Propose checks the command against the store's limits before anything is
// proposed, then queues it. One proposer goroutine per shard coalesces
// whatever is queued into one log entry (group commit), bounded by what one
// Badger transaction can apply, with at most MaxInflight entries outstanding;
// raft's BatchApplyCh batches those entries again into one disk write and one
// AppendEntries round. A leader whose log is raft-wal writes its command
// entries ahead of their sync and syncs them while the followers sync
// theirs; nothing applies or answers an entry before that sync
// (writeahead.go). The caller learns exactly one of: the result (applied),
// a rejection that proves nothing was proposed (ErrNotLeader, ErrUnavailable,
// bad input), or ErrOutcomeUnknown when the entry may have been appended but
// its fate is unknown (leadership lost, shutdown, the caller's deadline).
//
// # Reads
//
// Linearizable reads write nothing to the log. The leader records its commit
// index, confirms leadership with a check that started after the read
// arrived (concurrent reads share a check), waits until its FSM has
// applied that index, and reads. A new leader serves no such read until a
// barrier of its own term has applied, because its commit index may lag what
// the previous leader acknowledged. A follower asks the leader for the read
// index and waits for its own FSM. Raft never hands no-op and barrier entries
// to the FSM, so the wait targets the last entry at or below the read index
// that the FSM does receive, looked up in the committed log.
//
// The check asks followers for their current raft terms, as many as make a
// quorum with the leader (one of two in a group of three), and passes when
// all of them answer with at most the leader's term: a later leader would
// need a vote from one of them, cast after that answer. raft's VerifyLeader
// proves the same with a heartbeat to every follower through both ends'
// raft loops; it is still used when a follower runs an older build that
// does not answer term requests (confirm.go).
//
// Stale reads serve local state and report their staleness: on a leader, the
// time since a quorum last confirmed its leadership (refreshed every lease
// period); on a follower, the time since it last heard from a leader.
//
// # Restarts
//
// Raft runs with NoSnapshotRestoreOnStart: the FSM's state is durable (its
// applied index is stored with the data and Badger is synced before raft
// compacts its log), so a restart replays only the log tail and the FSM skips
// entries it already holds. Open checks that the FSM's applied index reaches
// the latest snapshot and restores the snapshot first when it does not.
//
// # Membership
//
// New replicas join as non-voters and are promoted once their applied index
// is within a given lag of the commit index. Changes go one at a time.
// Leadership transfer is bounded by the caller's context, since transfers
// have had liveness bugs upstream.
package shard
