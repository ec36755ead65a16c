package shard

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/hashicorp/raft"
)

// Consistency selects how fresh a read must be.
type Consistency int

const (
	// Linearizable reads reflect every write acknowledged before the read
	// began. On the leader: commit index, a shared leadership check, wait for
	// the local apply. On a follower: the same read index, fetched from the
	// leader, then a wait for the local apply. No log entry is written.
	Linearizable Consistency = iota
	// Stale reads serve this replica's state as it is. ReadOptions.MaxStaleness
	// bounds how long ago the replica last knew it was current.
	Stale
)

// ReadOptions configure a read.
type ReadOptions struct {
	Consistency Consistency
	// MaxStaleness (Stale only): fail with ErrTooStale if the replica's
	// staleness exceeds it. 0: no bound.
	MaxStaleness time.Duration
	// NoWait (Linearizable, on a follower): fail with ErrBehind instead of
	// waiting when this replica has not yet learned that the read index is
	// committed. Followers learn the commit index with the leader's next
	// append, which under light writes can be a CommitTimeout away; the
	// leader itself answers without that wait.
	NoWait bool
	// After (Linearizable): an applied index at which this replica served a
	// linearizable read earlier in the same operation (ReadInfo.Index). The
	// read then skips the leadership check or read-index fetch and is
	// served once the replica has applied After, which it already has
	// unless the replica was replaced. Every write acknowledged before the
	// operation began is at or below After, so the read reflects them all:
	// it is linearizable within the operation's span, not within its own.
	// Only for operations that read many keys without promising one point
	// in time across them (a document query); never for a read whose
	// answer must come after something the operation did in between.
	After uint64
}

// ReadInfo describes the point a read was served at.
type ReadInfo struct {
	// Index: the replica's applied index when the read was served (at least
	// the read index for linearizable reads).
	Index uint64
	// Staleness (Stale reads): on a leader, time since its leadership was
	// last confirmed by a quorum; on a follower, time since it last heard
	// from a leader. Zero for linearizable reads.
	Staleness time.Duration
}

// Get reads one key. A missing key is an error wrapping fsm.ErrNotFound.
func (s *Shard) Get(ctx context.Context, key []byte, o ReadOptions) (fsm.Item, ReadInfo, error) {
	info, err := s.ReadBarrier(ctx, o)
	if err != nil {
		return fsm.Item{}, info, err
	}
	it, err := s.fsm.Get(key)
	return it, info, err
}

// GetMany reads keys at one consistent point (found false for an absent
// key). A key held by a transaction's intent fails the call with its
// *fsm.LockedError.
func (s *Shard) GetMany(ctx context.Context, keys [][]byte, o ReadOptions) ([]fsm.Item, []bool, ReadInfo, error) {
	info, err := s.ReadBarrier(ctx, o)
	if err != nil {
		return nil, nil, info, err
	}
	items, found, err := s.fsm.GetMany(keys)
	return items, found, info, err
}

// Scan reads a range of keys in order, at one consistent point.
func (s *Shard) Scan(ctx context.Context, so fsm.ScanOptions, o ReadOptions) (fsm.ScanResult, ReadInfo, error) {
	info, err := s.ReadBarrier(ctx, o)
	if err != nil {
		return fsm.ScanResult{}, info, err
	}
	res, err := s.fsm.Scan(so)
	return res, info, err
}

// ReadRounds reports how many leadership checks this replica ran as leader
// (for linearizable reads, and the idle ones of keepLease), and how many
// read indexes it fetched from the leader (each shared by the reads that
// waited for it).
func (s *Shard) ReadRounds() (leadership, fetched uint64) {
	return s.leaderRounds.Load(), s.fetchedIndexes.Load()
}

// HoldApplies stops this replica's state machine from applying entries
// (raft goes on appending and committing them) until release is called,
// so that tests can make a replica lag. release may be called more than
// once.
func (s *Shard) HoldApplies() (release func()) {
	ch := make(chan struct{})
	s.applyHold.Store(&ch)
	var once sync.Once
	return func() {
		once.Do(func() {
			s.applyHold.Store(nil)
			close(ch)
		})
	}
}

// ReadBarrier returns once the local FSM may serve a read with consistency o.
// Reads of s.FSM() that start after it returns see at least that state.
func (s *Shard) ReadBarrier(ctx context.Context, o ReadOptions) (ReadInfo, error) {
	info, err := s.readBarrier(ctx, o)
	s.metrics.read(o.Consistency, err)
	return info, err
}

func (s *Shard) readBarrier(ctx context.Context, o ReadOptions) (ReadInfo, error) {
	if s.ctx.Err() != nil {
		return ReadInfo{}, ErrClosed
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.ReadTimeout)
		defer cancel()
	}
	switch o.Consistency {
	case Stale:
		st := s.staleness()
		info := ReadInfo{Index: s.fsm.Applied(), Staleness: st}
		if o.MaxStaleness > 0 && st > o.MaxStaleness {
			return info, fmt.Errorf("%w: %v is %v behind, limit %v", ErrTooStale, s.cfg.ID, st.Round(time.Millisecond), o.MaxStaleness)
		}
		return info, nil
	case Linearizable:
	default:
		return ReadInfo{}, fmt.Errorf("%w: unknown consistency %d", fsm.ErrInvalid, o.Consistency)
	}
	if s.plantedLocalReads {
		return ReadInfo{Index: s.fsm.Applied()}, nil
	}
	if o.After > 0 {
		if err := s.waitLocal(ctx, o.After); err != nil {
			return ReadInfo{}, err
		}
		return ReadInfo{Index: s.fsm.Applied()}, nil
	}
	var idx uint64
	var err error
	if s.raft.State() == raft.Leader {
		idx, err = s.leaderReadIndex(ctx)
	} else {
		idx, err = s.remoteReadIndex(ctx)
		if err == nil && o.NoWait && s.raft.CommitIndex() < idx {
			return ReadInfo{}, fmt.Errorf("%w: %v knows commit index %d, read index is %d", ErrBehind, s.cfg.ID, s.raft.CommitIndex(), idx)
		}
	}
	if err != nil {
		return ReadInfo{}, err
	}
	if err := s.waitLocal(ctx, idx); err != nil {
		return ReadInfo{}, err
	}
	return ReadInfo{Index: s.fsm.Applied()}, nil
}

// leaderReadIndex returns an index such that every write acknowledged before
// the call is at or below it: the commit index, recorded before a leadership
// check that started after the call. It refuses until this leader has applied
// an entry of its own term, since before that its commit index may lag the
// previous leader's.
func (s *Shard) leaderReadIndex(ctx context.Context) (uint64, error) {
	return s.leaderReadIndexFor(ctx, nil)
}

// askedBy identifies a follower asking for a read index, with its term as
// it stood when it sent the request (after every read waiting for the
// answer had arrived).
type askedBy struct {
	id   raft.ServerID
	term uint64
}

// leaderReadIndexFor is leaderReadIndex for a read index requested by a
// follower. The follower's term, no higher than this leader's, is the
// answer a term request to it would have given, at a moment after the read
// arrived (confirm.go); when it completes a quorum with this leader (a
// group of three), no further check is needed.
func (s *Shard) leaderReadIndexFor(ctx context.Context, by *askedBy) (uint64, error) {
	var term uint64
	for {
		if err := s.leaderCheck(); err != nil {
			return 0, err
		}
		term = s.raft.CurrentTerm()
		s.readyMu.Lock()
		ready, changed := s.readyTerm.Load() == term, s.readyChanged
		s.readyMu.Unlock()
		if ready {
			break
		}
		// Readiness is signalled; the timer re-checks leadership, which may
		// be lost while waiting.
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return 0, fmt.Errorf("%w: new leader of %v not ready: %w", ErrUnavailable, s.cfg.ID, ctx.Err())
		}
		t.Stop()
	}
	idx := s.raft.CommitIndex()
	var err error
	switch {
	case by != nil && by.term > term:
		err = raft.ErrLeadershipLost
	case by != nil && s.completesQuorum(by.id):
	default:
		err = s.verifier.verify(ctx)
	}
	if err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return 0, s.leaderCheckOr(err)
		}
		return 0, fmt.Errorf("%w: confirm leadership of %v: %w", ErrUnavailable, s.cfg.ID, err)
	}
	if s.raft.CurrentTerm() != term {
		return 0, s.leaderCheckOr(raft.ErrLeadershipLost)
	}
	return idx, nil
}

func (s *Shard) leaderCheckOr(err error) error {
	if nl := s.leaderCheck(); nl != nil {
		return nl
	}
	return &NotLeaderError{Shard: s.cfg.ID}
}

// remoteReadIndex asks the leader for a read index. Concurrent reads on this
// follower share one request (see rounds).
func (s *Shard) remoteReadIndex(ctx context.Context) (uint64, error) {
	return s.readIndexes.do(ctx)
}

func (s *Shard) fetchReadIndex() (uint64, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.ReadTimeout)
	defer cancel()
	addr, id := s.raft.LeaderWithID()
	if addr == "" {
		return 0, fmt.Errorf("%w: %v has no leader", ErrUnavailable, s.cfg.ID)
	}
	// The term is read after every read sharing this request arrived, so
	// the leader may count it as this replica's answer to a term request.
	req := binary.BigEndian.AppendUint64(nil, s.raft.CurrentTerm())
	req = append(req, s.cfg.NodeID...)
	status, payload, err := s.call(ctx, string(addr), rpcReadIndex, req)
	if err != nil {
		return 0, fmt.Errorf("%w: read index from %s: %w", ErrUnavailable, id, err)
	}
	switch status {
	case rpcOK:
		if len(payload) != 8 {
			return 0, fmt.Errorf("%w: bad read index reply from %s", ErrUnavailable, id)
		}
		return binary.BigEndian.Uint64(payload), nil
	case rpcNotLeader:
		return 0, fmt.Errorf("%w: %s is no longer leader of %v", ErrUnavailable, id, s.cfg.ID)
	default:
		return 0, fmt.Errorf("%w: read index from %s: %s", ErrUnavailable, id, payload)
	}
}

// waitLocal waits until the local FSM reflects every entry up to idx.
//
// Raft does not hand the FSM every index (no-op and barrier entries never
// reach it), so waiting for Applied() >= idx could wait forever. Instead,
// once idx is committed locally, find the last entry at or below idx that
// the FSM does receive and wait for that one. Only committed entries are
// inspected: an uncommitted tail on a follower may still be replaced.
func (s *Shard) waitLocal(ctx context.Context, idx uint64) error {
	target := uint64(0)
	for {
		changed := s.fsm.AppliedChanged()
		applied := s.fsm.Applied()
		if applied >= idx || (target != 0 && applied >= target) {
			return nil
		}
		if target == 0 && s.raft.CommitIndex() >= idx {
			target = s.lastFSMEntry(idx, applied)
			if applied >= target {
				return nil
			}
		}
		// Applies wake us; the timer covers an index reached only by
		// entries the FSM never sees (and so never signals).
		t := time.NewTimer(time.Millisecond)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: %v waiting to apply index %d (applied %d): %w", ErrUnavailable, s.cfg.ID, idx, s.fsm.Applied(), ctx.Err())
		case <-s.ctx.Done():
			t.Stop()
			return ErrClosed
		}
		t.Stop()
	}
}

// lastFSMEntry returns the highest index in (floor, idx] holding an entry the
// FSM applies, or floor if there is none. idx must be committed locally, so
// a committed entry missing from the log was compacted into, or replaced by,
// a snapshot the FSM already holds (even when the FSM's applied index is
// below raft's index for that snapshot: the difference is entries the FSM
// never sees), and so is every entry below it.
func (s *Shard) lastFSMEntry(idx, floor uint64) uint64 {
	var l raft.Log
	for i := idx; i > floor; i-- {
		err := s.log.GetLog(i, &l)
		switch {
		case errors.Is(err, raft.ErrLogNotFound):
			return floor
		case err != nil:
			return i // unexpected: wait for the FSM to pass it
		case l.Type == raft.LogCommand || l.Type == raft.LogConfiguration:
			return i
		}
	}
	return floor
}

// staleness is how long ago this replica last knew it was current.
func (s *Shard) staleness() time.Duration {
	if s.raft.State() == raft.Leader {
		at := s.verifier.lastOK.Load()
		if at == 0 {
			return time.Duration(1<<63 - 1)
		}
		return time.Since(time.Unix(0, at))
	}
	last := s.raft.LastContact()
	if last.IsZero() {
		return time.Duration(1<<63 - 1)
	}
	return time.Since(last)
}

// keepLease confirms leadership every lease period while leader, so that the
// staleness of stale reads on a leader stays meaningful without traffic.
func (s *Shard) keepLease() {
	defer s.wg.Done()
	period := s.cfg.LeaderLeaseTimeout
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if s.raft.State() != raft.Leader {
			continue
		}
		if at := s.verifier.lastOK.Load(); at != 0 && time.Since(time.Unix(0, at)) < period {
			continue
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.ElectionTimeout)
		_ = s.verifier.verify(ctx)
		cancel()
	}
}

// rounds shares one call of fn among concurrent callers. A caller joins the
// next round to start, never one already in flight, so every result it gets
// was produced after it arrived: a leadership check or read index that began
// before the caller's read could predate writes acknowledged before it.
type rounds[T any] struct {
	fn      func() (T, error)
	mu      sync.Mutex
	next    []chan roundResult[T]
	running bool
}

type roundResult[T any] struct {
	v   T
	err error
}

func (r *rounds[T]) do(ctx context.Context) (T, error) {
	ch := make(chan roundResult[T], 1)
	r.mu.Lock()
	r.next = append(r.next, ch)
	if !r.running {
		r.running = true
		go r.run()
	}
	r.mu.Unlock()
	select {
	case res := <-ch:
		return res.v, res.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

func (r *rounds[T]) run() {
	for {
		r.mu.Lock()
		batch := r.next
		r.next = nil
		if len(batch) == 0 {
			r.running = false
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		v, err := r.fn()
		for _, ch := range batch {
			ch <- roundResult[T]{v, err}
		}
	}
}

// verifier shares leadership checks (confirmLeadership) among concurrent
// reads on a leader.
type verifier struct {
	rounds[struct{}]
	lastOK atomic.Int64 // unix nanos of the start of the last successful round
}

func newVerifier(confirm func() error, count *atomic.Uint64) *verifier {
	v := &verifier{}
	v.fn = func() (struct{}, error) {
		count.Add(1)
		start := time.Now()
		err := confirm()
		if err == nil {
			v.lastOK.Store(start.UnixNano())
		}
		return struct{}{}, err
	}
	return v
}

func (v *verifier) verify(ctx context.Context) error {
	_, err := v.do(ctx)
	return err
}
