package shard

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Replica is one member of a shard's raft group.
type Replica struct {
	ID    string `json:"id"`   // node ID (raft server ID)
	Addr  string `json:"addr"` // raft port address
	Voter bool   `json:"voter"`
}

// AddReplica adds a replica the way a new member should join: first as a
// non-voter, which cannot affect quorum while it copies the log or a snapshot;
// then, once its applied index is within maxLag entries of the leader's commit
// index, it is promoted to voter. One membership change runs at a time on
// this leader (raft itself also refuses overlapping changes). If ctx ends
// before promotion the replica stays a non-voter; calling again resumes.
func (s *Shard) AddReplica(ctx context.Context, id, addr string, maxLag uint64) error {
	s.membership.Lock()
	defer s.membership.Unlock()
	if err := s.leaderCheck(); err != nil {
		return err
	}
	timeout := timeoutOf(ctx, s.cfg.ElectionTimeout)
	if err := s.wait(ctx, s.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeout)); err != nil {
		return fmt.Errorf("shard: add non-voter %s to %v: %w", id, s.cfg.ID, err)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		status, payload, err := s.call(ctx, addr, rpcApplied, nil)
		if err == nil && status == rpcOK && len(payload) == 8 {
			applied := binary.BigEndian.Uint64(payload)
			if applied+maxLag >= s.raft.CommitIndex() {
				break
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("shard: %s did not catch up on %v: %w", id, s.cfg.ID, ctx.Err())
		}
	}
	if err := s.wait(ctx, s.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeoutOf(ctx, s.cfg.ElectionTimeout))); err != nil {
		return fmt.Errorf("shard: promote %s on %v: %w", id, s.cfg.ID, err)
	}
	s.logger.Info("replica promoted", "replica", id)
	return nil
}

// AddNonvoter adds a replica that receives the log but never votes (or
// updates the address of an existing member, keeping its suffrage).
func (s *Shard) AddNonvoter(ctx context.Context, id, addr string) error {
	s.membership.Lock()
	defer s.membership.Unlock()
	if err := s.leaderCheck(); err != nil {
		return err
	}
	if err := s.wait(ctx, s.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeoutOf(ctx, s.cfg.ElectionTimeout))); err != nil {
		return fmt.Errorf("shard: add non-voter %s to %v: %w", id, s.cfg.ID, err)
	}
	return nil
}

// Excludes reports, on a leader, whether replica id is out of the group for
// good: the leader has applied an entry of its own term (so every entry it
// inherited is committed), its configuration lacks id, and no membership
// change is in flight on it. A replica that learns this may delete its copy.
// It fails with ErrNotLeader elsewhere.
func (s *Shard) Excludes(id string) (bool, error) {
	if err := s.leaderCheck(); err != nil {
		return false, err
	}
	if !s.membership.TryLock() {
		return false, nil
	}
	defer s.membership.Unlock()
	if s.readyTerm.Load() != s.raft.CurrentTerm() || s.raft.State() != raft.Leader {
		return false, nil
	}
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return false, err
	}
	for _, srv := range f.Configuration().Servers {
		if string(srv.ID) == id {
			return false, nil
		}
	}
	return true, nil
}

// Leader returns the leader's ID and raft address as this replica knows them
// (empty when unknown), and whether this replica is the leader.
func (s *Shard) Leader() (id, addr string, self bool) {
	a, i := s.raft.LeaderWithID()
	return string(i), string(a), s.raft.State() == raft.Leader
}

// IsVoter reports whether this replica is a voting member of its group's
// latest configuration. A non-voter may still be catching up (copying a
// snapshot), so its state can be far behind while it hears from the leader.
func (s *Shard) IsVoter() bool {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, srv := range f.Configuration().Servers {
		if string(srv.ID) == s.cfg.NodeID {
			return srv.Suffrage == raft.Voter
		}
	}
	return false
}

// RemoveReplica removes a replica from the group.
func (s *Shard) RemoveReplica(ctx context.Context, id string) error {
	s.membership.Lock()
	defer s.membership.Unlock()
	if err := s.leaderCheck(); err != nil {
		return err
	}
	if err := s.wait(ctx, s.raft.RemoveServer(raft.ServerID(id), 0, timeoutOf(ctx, s.cfg.ElectionTimeout))); err != nil {
		return fmt.Errorf("shard: remove %s from %v: %w", id, s.cfg.ID, err)
	}
	return nil
}

// TransferLeadership hands leadership to another voter (to is empty: raft
// picks the most up-to-date one) and waits until this replica is no longer
// leader, or ctx ends. Raft's own transfer times out after an election
// timeout; a transfer that neither completes nor fails by the context's end
// reports the context's error and leaves this replica leader.
func (s *Shard) TransferLeadership(ctx context.Context, to Replica) error {
	if err := s.leaderCheck(); err != nil {
		return err
	}
	var f raft.Future
	if to.ID == "" {
		f = s.raft.LeadershipTransfer()
	} else {
		f = s.raft.LeadershipTransferToServer(raft.ServerID(to.ID), raft.ServerAddress(to.Addr))
	}
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("shard: transfer leadership of %v: %w", s.cfg.ID, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("shard: transfer leadership of %v: %w", s.cfg.ID, ctx.Err())
	}
}

// wait waits for a membership future, ctx or Close. Raft resolves such a
// future only when the change commits or leadership is lost, so without
// this a change stuck without quorum would hold its caller (and Close)
// indefinitely. A change abandoned this way may still commit later.
func (s *Shard) wait(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-s.ctx.Done():
		return ErrClosed
	}
}

func timeoutOf(ctx context.Context, def time.Duration) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return time.Until(dl)
	}
	return def
}

// Status is a replica's view of its group.
type Status struct {
	Shard       uint64        `json:"shard"`
	Node        string        `json:"node"`
	Role        string        `json:"role"` // leader, follower, candidate, shutdown
	Leader      string        `json:"leader"`
	LeaderAddr  string        `json:"leader_addr"`
	Term        uint64        `json:"term"`
	CommitIndex uint64        `json:"commit_index"`
	Applied     uint64        `json:"applied_index"`
	LastIndex   uint64        `json:"last_index"`
	LastContact time.Duration `json:"last_contact_ns"` // followers: since the leader was last heard
	Ready       bool          `json:"ready"`           // leader: serves linearizable reads
	Replicas    []Replica     `json:"replicas"`
	Snapshots   uint64        `json:"snapshots_installed"`
	// BootRestored: at open, the state was behind the latest snapshot and was
	// restored from it (normally a restart replays only the log tail).
	BootRestored bool `json:"boot_restored"`
	// LogStore is the format of this replica's raft log (wal or bolt).
	LogStore LogStore `json:"log_store"`
}

// Status reports the replica's role, leader, indexes and membership.
func (s *Shard) Status() Status {
	addr, id := s.raft.LeaderWithID()
	st := Status{
		Shard:        uint64(s.cfg.ID),
		Node:         s.cfg.NodeID,
		Role:         roleName(s.raft.State()),
		Leader:       string(id),
		LeaderAddr:   string(addr),
		Term:         s.raft.CurrentTerm(),
		CommitIndex:  s.raft.CommitIndex(),
		Applied:      s.fsm.Applied(),
		LastIndex:    s.raft.LastIndex(),
		Snapshots:    s.snapInstalls.Load(),
		BootRestored: s.bootRestored,
		LogStore:     s.format,
	}
	st.Ready = st.Role == "leader" && s.readyTerm.Load() == st.Term
	if lc := s.raft.LastContact(); st.Role != "leader" && !lc.IsZero() {
		st.LastContact = time.Since(lc)
	}
	if f := s.raft.GetConfiguration(); f.Error() == nil {
		for _, srv := range f.Configuration().Servers {
			st.Replicas = append(st.Replicas, Replica{ID: string(srv.ID), Addr: string(srv.Address), Voter: srv.Suffrage == raft.Voter})
		}
	}
	return st
}

func roleName(st raft.RaftState) string {
	switch st {
	case raft.Leader:
		return "leader"
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	}
	return "shutdown"
}
