package shard

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Confirming leadership for reads.
//
// A linearizable read on the leader of term T records the commit index and
// then needs proof that, at some moment after the read arrived, no leader
// of a later term could yet have been elected. A voter grants a vote for a
// term only after raising its own term to it, so a quorum of voters whose
// terms were each seen at most T after the read arrived is that proof: any
// later leader needs a vote from one of them, given after that moment, and
// so commits nothing the read should have seen. The leader counts itself
// (its term is checked again once the quorum has answered).
//
// raft's VerifyLeader gives the same proof with a heartbeat to every
// follower, each passing through both ends' raft loops. Asking for the term
// (rpcTerm, answered from an atomic on the follower) costs one small
// exchange with as many followers as the quorum needs, fewer than all of
// them once the group has more than one follower: with three voters, one
// follower per check. The others are asked only if the chosen ones fail or
// are slow (confirmHedge).

// confirmLat tracks, per follower, how long term requests take, so that the
// fastest followers are asked first.
type confirmLat struct {
	mu  sync.Mutex
	ewm map[raft.ServerID]time.Duration
	// Tests only: ask replaces peerTerm, and a nonzero hedge replaces
	// confirmHedge.
	ask   func(ctx context.Context, addr string) (uint64, error)
	hedge time.Duration
}

func (c *confirmLat) get(id raft.ServerID) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ewm[id]
}

func (c *confirmLat) note(id raft.ServerID, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ewm == nil {
		c.ewm = make(map[raft.ServerID]time.Duration)
	}
	if old, ok := c.ewm[id]; ok {
		d = (3*old + d) / 4
	}
	c.ewm[id] = d
}

// errOldPeer: a peer does not know rpcTerm (it runs an older build).
var errOldPeer = errors.New("shard: peer does not answer term requests")

const (
	confirmHedgeMin = time.Millisecond
	confirmHedgeMax = 20 * time.Millisecond
	confirmRetry    = 10 * time.Millisecond
)

// confirmHedge is how long a check waits for the followers it asked before
// it asks the others too: twice their usual answer time, within bounds.
func confirmHedge(usual time.Duration) time.Duration {
	return min(max(2*usual, confirmHedgeMin), confirmHedgeMax)
}

// confirmLeadership proves, as described above, that this replica was still
// the only possible leader of its term at some moment after the call. It
// returns raft.ErrNotLeader or raft.ErrLeadershipLost when it is not or no
// longer the leader, and an error wrapping ErrUnavailable when no quorum
// answered within the election timeout. A group with a member on an older
// build is checked with raft's VerifyLeader instead.
func (s *Shard) confirmLeadership() error {
	if s.raft.State() != raft.Leader {
		return raft.ErrNotLeader
	}
	term := s.raft.CurrentTerm()
	peers, need, err := s.quorumPeers()
	if err != nil {
		return err
	}
	if need > len(peers) {
		return fmt.Errorf("%w: %v has %d voters besides itself, a quorum needs %d", ErrUnavailable, s.cfg.ID, len(peers), need)
	}
	if need > 0 {
		err := s.askTerms(term, peers, need)
		if errors.Is(err, errOldPeer) {
			return s.raft.VerifyLeader().Error()
		}
		if err != nil {
			return err
		}
	}
	if s.raft.State() != raft.Leader || s.raft.CurrentTerm() != term {
		return raft.ErrLeadershipLost
	}
	return nil
}

// quorumPeers returns the other voters of the latest configuration and
// how many of them make a quorum with this replica (which counts itself
// when it is a voter).
func (s *Shard) quorumPeers() (peers []raft.Server, need int, err error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, 0, fmt.Errorf("%w: configuration of %v: %w", ErrUnavailable, s.cfg.ID, err)
	}
	voters, self := 0, false
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage != raft.Voter {
			continue
		}
		voters++
		if string(srv.ID) == s.cfg.NodeID {
			self = true
			continue
		}
		peers = append(peers, srv)
	}
	need = voters/2 + 1
	if self {
		need--
	}
	return peers, need, nil
}

// completesQuorum reports whether the voter id alone makes a quorum of the
// latest configuration with this replica.
func (s *Shard) completesQuorum(id raft.ServerID) bool {
	peers, need, err := s.quorumPeers()
	if err != nil || need != 1 {
		return false
	}
	return slices.ContainsFunc(peers, func(p raft.Server) bool { return p.ID == id })
}

// askTerms asks followers for their terms until need of them have answered
// with at most term. Followers whose answers came fastest before are asked
// first; the rest join when one of those fails or is slow to answer.
func (s *Shard) askTerms(term uint64, peers []raft.Server, need int) error {
	lat := make([]time.Duration, len(peers))
	for i, p := range peers {
		lat[i] = s.confirmLat.get(p.ID)
	}
	order := make([]int, len(peers))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return int(lat[a] - lat[b]) })
	var usual time.Duration
	for _, i := range order[:need] {
		usual = max(usual, lat[i])
	}

	ask := s.peerTerm
	if s.confirmLat.ask != nil {
		ask = s.confirmLat.ask
	}

	// A request still out when the quorum is reached runs to its end
	// rather than being cut off, which would close its connection.
	deadline := time.NewTimer(s.cfg.ElectionTimeout)
	defer deadline.Stop()
	type answer struct {
		i    int
		term uint64
		err  error
	}
	answers := make(chan answer, len(peers))
	const (
		unasked = iota
		waiting
		failed
		confirmed
	)
	state := make([]int, len(peers))
	inflight, ok := 0, 0
	askNext := func() bool {
		for _, i := range order {
			if state[i] != unasked {
				continue
			}
			state[i] = waiting
			inflight++
			peer := peers[i]
			go func() {
				ctx, cancel := context.WithTimeout(s.ctx, s.cfg.ElectionTimeout)
				defer cancel()
				start := time.Now()
				t, err := ask(ctx, string(peer.Address))
				took := time.Since(start)
				// Late answers count too, and a failure as a long one, so
				// that a follower that turned slow or went away is no
				// longer asked first.
				if err != nil {
					s.confirmLat.note(peer.ID, s.cfg.ElectionTimeout)
				} else {
					s.confirmLat.note(peer.ID, took)
				}
				answers <- answer{i, t, err}
			}()
			return true
		}
		return false
	}
	for range need {
		askNext()
	}
	hedgeAfter := confirmHedge(usual)
	if s.confirmLat.hedge > 0 {
		hedgeAfter = s.confirmLat.hedge
	}
	hedge := time.NewTimer(hedgeAfter)
	defer hedge.Stop()
	var retry <-chan time.Time
	var lastErr error
	for {
		select {
		case a := <-answers:
			inflight--
			switch {
			case errors.Is(a.err, errOldPeer):
				return a.err
			case a.err != nil:
				state[a.i] = failed
				lastErr = a.err
				askNext()
			case a.term > term:
				return raft.ErrLeadershipLost
			default:
				state[a.i] = confirmed
				ok++
				if ok >= need {
					return nil
				}
			}
			if inflight == 0 && !askNext() && retry == nil {
				// Everyone was asked and too few confirmed: ask the
				// ones that failed again shortly (a peer may be
				// restarting).
				retry = time.After(confirmRetry)
			}
		case <-hedge.C:
			for askNext() {
			}
		case <-retry:
			retry = nil
			for i := range state {
				if state[i] == failed {
					state[i] = unasked
				}
			}
			for askNext() {
			}
		case <-deadline.C:
			return fmt.Errorf("%w: no quorum of %v confirmed term %d within %v (last error: %v)", ErrUnavailable, s.cfg.ID, term, s.cfg.ElectionTimeout, lastErr)
		case <-s.ctx.Done():
			return ErrClosed
		}
	}
}

// peerTerm asks the replica of this shard at addr for its current term.
func (s *Shard) peerTerm(ctx context.Context, addr string) (uint64, error) {
	status, payload, err := s.call(ctx, addr, rpcTerm, nil)
	switch {
	case err != nil:
		return 0, err
	case status == rpcUnknownOp:
		return 0, errOldPeer
	case status != rpcOK || len(payload) != 8:
		return 0, fmt.Errorf("shard: bad term answer from %s (status %d)", addr, status)
	}
	return binary.BigEndian.Uint64(payload), nil
}
