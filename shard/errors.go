package shard

import (
	"errors"
	"fmt"

	"github.com/cairndb/cairn/fsm"
)

// Sentinel errors. Callers match them with errors.Is; typed errors below carry
// details and unwrap to them.
var (
	// ErrNotLeader: this replica does not lead the shard; nothing was
	// proposed. Retry at the leader.
	ErrNotLeader = errors.New("shard: not leader")
	// ErrUnavailable: the shard cannot serve now (no leader, no quorum, a new
	// leader not yet ready, queue full); nothing was proposed. Safe to retry.
	ErrUnavailable = errors.New("shard: unavailable")
	// ErrOutcomeUnknown: the command was proposed but its fate is unknown
	// (leadership lost, timeout, shutdown). It may or may not apply.
	ErrOutcomeUnknown = errors.New("shard: outcome unknown")
	// ErrTooStale: a stale read could not meet its maximum staleness.
	ErrTooStale = errors.New("shard: replica too stale")
	// ErrBehind: a follower asked not to wait (ReadOptions.NoWait) has not
	// yet learned that the read index is committed; the leader can serve
	// the read at once.
	ErrBehind = errors.New("shard: replica behind the read index")
	// ErrClosed: the shard was closed.
	ErrClosed = errors.New("shard: closed")
)

// NotLeaderError names the leader, when known.
type NotLeaderError struct {
	Shard    fsm.ShardID
	Leader   string // raft address, empty if unknown
	LeaderID string
}

func (e *NotLeaderError) Error() string {
	if e.Leader == "" {
		return fmt.Sprintf("shard: not leader of %v (leader unknown)", e.Shard)
	}
	return fmt.Sprintf("shard: not leader of %v (leader %s at %s)", e.Shard, e.LeaderID, e.Leader)
}

func (e *NotLeaderError) Unwrap() error { return ErrNotLeader }

// OutcomeUnknownError reports a proposal whose fate is unknown.
type OutcomeUnknownError struct {
	Shard     fsm.ShardID
	RequestID string
	Err       error // the cause
}

func (e *OutcomeUnknownError) Error() string {
	return fmt.Sprintf("shard: outcome of request %q on %v unknown: %v", e.RequestID, e.Shard, e.Err)
}

func (e *OutcomeUnknownError) Unwrap() []error { return []error{ErrOutcomeUnknown, e.Err} }

// IsRetryable reports whether err guarantees nothing was proposed.
func IsRetryable(err error) bool {
	return errors.Is(err, ErrNotLeader) || errors.Is(err, ErrUnavailable)
}
