package shard

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/hashicorp/raft"
)

// Proposal states: a proposal is cancelled by its caller or claimed by the
// proposer, whichever comes first; that decides whether its outcome can be
// unknown.
const (
	queued int32 = iota
	claimed
	cancelled
)

type proposal struct {
	cmd   fsm.Command
	state atomic.Int32
	done  chan outcome
}

type outcome struct {
	res fsm.Result
	err error
}

// Propose replicates cmd and returns its result once applied on this leader.
//
// Errors are exact about what happened:
//   - fsm.ErrInvalid / fsm.ErrTooLarge: bad input, nothing proposed;
//   - ErrNotLeader (a *NotLeaderError) or ErrUnavailable: nothing proposed,
//     safe to retry;
//   - ErrOutcomeUnknown (an *OutcomeUnknownError): proposed, fate unknown;
//   - the context's error if it ended before the command was proposed.
//
// A condition that failed (fsm.VersionMismatch) is a Result, not an error.
// Concurrent proposals are coalesced into one log entry (group commit).
func (s *Shard) Propose(ctx context.Context, cmd fsm.Command) (fsm.Result, error) {
	start := time.Now()
	res, err := s.propose1(ctx, cmd)
	s.metrics.proposal(proposalOutcome(res, err), time.Since(start))
	return res, err
}

func proposalOutcome(res fsm.Result, err error) string {
	switch {
	case err == nil && res.Code == fsm.OK:
		return "applied"
	case err == nil:
		return "condition_failed"
	case errors.Is(err, fsm.ErrInvalid), errors.Is(err, fsm.ErrTooLarge):
		return "invalid"
	case errors.Is(err, ErrOutcomeUnknown):
		return "unknown"
	}
	return "rejected"
}

func (s *Shard) propose1(ctx context.Context, cmd fsm.Command) (fsm.Result, error) {
	if err := s.cfg.Store.Check(cmd); err != nil {
		return fsm.Result{}, err
	}
	if err := s.leaderCheck(); err != nil {
		return fsm.Result{}, err
	}
	if err := ctx.Err(); err != nil {
		// Checked first: the select below picks at random among ready
		// cases, so an ended context could otherwise still be queued.
		return fsm.Result{}, err
	}
	p := &proposal{cmd: cmd, done: make(chan outcome, 1)}
	select {
	case s.proposals <- p:
	case <-ctx.Done():
		return fsm.Result{}, ctx.Err()
	case <-s.ctx.Done():
		return fsm.Result{}, ErrClosed
	default:
		return fsm.Result{}, fmt.Errorf("%w: proposal queue of %v is full", ErrUnavailable, s.cfg.ID)
	}
	closed := s.ctx.Done()
	for {
		select {
		case o := <-p.done:
			return o.res, o.err
		case <-ctx.Done():
			if p.state.CompareAndSwap(queued, cancelled) {
				return fsm.Result{}, ctx.Err()
			}
			return fsm.Result{}, &OutcomeUnknownError{Shard: s.cfg.ID, RequestID: cmd.RequestID, Err: ctx.Err()}
		case <-closed:
			if p.state.CompareAndSwap(queued, cancelled) {
				return fsm.Result{}, ErrClosed
			}
			closed = nil // claimed: its waiter reports the outcome
		}
	}
}

func (s *Shard) leaderCheck() error {
	if s.raft.State() == raft.Leader {
		return nil
	}
	addr, id := s.raft.LeaderWithID()
	return &NotLeaderError{Shard: s.cfg.ID, Leader: string(addr), LeaderID: string(id)}
}

// runProposer takes queued proposals, coalesces whatever is waiting into one
// group entry (bounded by what one apply transaction can hold), and hands it
// to raft. At most MaxInflight entries are outstanding, so under load the
// queue fills while raft works and the next entry carries the whole queue.
func (s *Shard) runProposer() {
	defer s.wg.Done()
	lim := s.cfg.Store.Limits()
	var carry *proposal // did not fit the previous group; opens the next
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-s.proposals:
			case <-s.ctx.Done():
				s.drainProposals()
				return
			}
		}
		select {
		case s.inflight <- struct{}{}:
		case <-s.ctx.Done():
			if first.state.CompareAndSwap(queued, claimed) {
				s.finish(first, outcome{err: ErrClosed})
			}
			s.drainProposals()
			return
		}
		batch := make([]*proposal, 0, 64)
		var bytes, count int64
		// add claims p for this group; false means it does not fit.
		add := func(p *proposal) bool {
			b, c := s.cfg.Store.Footprint(p.cmd)
			if len(batch) > 0 && (bytes+b > lim.MaxFootprint || count+c > lim.MaxCount) {
				return false
			}
			if p.state.CompareAndSwap(queued, claimed) {
				batch = append(batch, p)
				bytes, count = bytes+b, count+c
			}
			return true
		}
		add(first)
	drain:
		for {
			select {
			case p := <-s.proposals:
				if !add(p) {
					carry = p
					break drain
				}
			default:
				break drain
			}
		}
		s.propose(batch)
	}
}

func (s *Shard) propose(batch []*proposal) {
	if len(batch) == 0 {
		<-s.inflight
		return
	}
	s.metrics.entry(len(batch))
	cmds := make([]fsm.Command, len(batch))
	for i, p := range batch {
		cmds[i] = p.cmd
	}
	f := s.raft.Apply(fsm.EncodeGroup(cmds), s.cfg.ElectionTimeout)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := s.await(f)
		<-s.inflight
		if err != nil {
			rejected := s.rejection(err)
			for _, p := range batch {
				if rejected != nil {
					s.finish(p, outcome{err: rejected})
				} else {
					s.finish(p, outcome{err: &OutcomeUnknownError{Shard: s.cfg.ID, RequestID: p.cmd.RequestID, Err: err}})
				}
			}
			return
		}
		if err, failed := f.Response().(error); failed {
			// The replica's log failed to sync; the entry was not applied
			// here, and its fate is unknown.
			for _, p := range batch {
				s.finish(p, outcome{err: &OutcomeUnknownError{Shard: s.cfg.ID, RequestID: p.cmd.RequestID, Err: err}})
			}
			return
		}
		results, ok := f.Response().([]fsm.Result)
		if !ok || len(results) != len(batch) {
			// Cannot happen for an entry this leader appended: the FSM skips
			// only entries it already applied.
			panic(fmt.Sprintf("shard: %v: apply response %T for %d commands", s.cfg.ID, f.Response(), len(batch)))
		}
		for i, p := range batch {
			s.finish(p, outcome{res: results[i]})
		}
	}()
}

// rejection returns the error to report when raft's apply error err proves the
// entry was never appended, and nil when its outcome is unknown.
func (s *Shard) rejection(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		addr, id := s.raft.LeaderWithID()
		return &NotLeaderError{Shard: s.cfg.ID, Leader: string(addr), LeaderID: string(id)}
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %v: %v", ErrUnavailable, s.cfg.ID, err)
	}
	// ErrLeadershipLost, ErrRaftShutdown and anything else: the entry may
	// have been appended and may yet commit.
	return nil
}

func (s *Shard) finish(p *proposal, o outcome) { p.done <- o }

func (s *Shard) drainProposals() {
	for {
		select {
		case p := <-s.proposals:
			if p.state.CompareAndSwap(queued, claimed) {
				s.finish(p, outcome{err: ErrClosed})
			}
		default:
			return
		}
	}
}
