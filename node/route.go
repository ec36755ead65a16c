package node

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/internal/peer"
	"github.com/cairndb/cairn/shard"
	"github.com/cairndb/cairn/txn"
)

// DefaultTimeout bounds a request whose context has no deadline.
const DefaultTimeout = 10 * time.Second

// target is where a request goes: a shard, and the ring epoch it was routed
// with (0: no ring, for the meta group).
type target struct {
	id    fsm.ShardID
	epoch uint64
}

// wrongShardError: a peer's ring no longer maps the request's keys to the
// shard it was sent to; Epoch is the peer's ring epoch.
type wrongShardError struct {
	shard fsm.ShardID
	epoch uint64
}

func (e *wrongShardError) Error() string {
	return fmt.Sprintf("node: %v does not own the key at ring epoch %d", e.shard, e.epoch)
}

func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, DefaultTimeout)
}

func newRequestID() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// routingView waits until the cluster's layout is known.
func (n *Node) routingView(ctx context.Context) (*view, error) {
	for {
		v := n.view.Load()
		if v.hasLayout() {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: cluster layout not known yet: %w", shard.ErrUnavailable, ctx.Err())
		case <-n.ctx.Done():
			return nil, shard.ErrClosed
		case <-n.viewChange():
		}
	}
}

// awaitEpoch waits until the local ring reaches epoch (after a wrong_shard
// answer from a node that is ahead).
func (n *Node) awaitEpoch(ctx context.Context, epoch uint64) {
	for {
		if v := n.view.Load(); v.hasLayout() && v.ring.Epoch() >= epoch {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-n.ctx.Done():
			return
		case <-n.viewChange():
		}
	}
}

// pause waits before retry attempt (growing, jittered), or reports false if
// ctx or the node ends first.
func (n *Node) pause(ctx context.Context, attempt int) bool {
	d := min(5*time.Millisecond<<min(attempt, 5), 100*time.Millisecond)
	d = d/2 + rand.N(d/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-n.ctx.Done():
		return false
	}
}

// leaderAddr returns the raft address of shard id's leader as far as this
// node knows: its own replica's view, what peers answered, what gossip says.
func (n *Node) leaderAddr(id fsm.ShardID) string {
	if s := n.localShard(id); s != nil {
		if _, addr, self := s.Leader(); self {
			return n.raftAddr
		} else if addr != "" {
			return addr
		}
	}
	if a, ok := n.learned.Load(id); ok {
		return a.(string)
	}
	if m := n.gossiped.Load(); m != nil {
		return (*m)[id]
	}
	return ""
}

func (n *Node) learn(id fsm.ShardID, addr string) {
	if addr == "" {
		n.learned.Delete(id)
		return
	}
	n.learned.Store(id, addr)
}

// pickPeer chooses a node to send a request for shard id to: the leader if
// known, else a replica in the placement (for the meta group before this
// node knows anything: a node that gossip says is in the cluster). Addresses
// in avoid failed earlier in this request and are tried last.
func (n *Node) pickPeer(id fsm.ShardID, avoid map[string]bool) string {
	var cands []string
	add := func(a string) {
		if a != "" && a != n.raftAddr {
			cands = append(cands, a)
		}
	}
	add(n.leaderAddr(id))
	v := n.view.Load()
	for _, name := range v.replicasOf(id) {
		add(v.nodes[string(name)].RaftAddr)
	}
	if id == MetaShard {
		for _, m := range n.gossip.Members() {
			if a, err := decodeAnnouncement(m.State); err == nil && a.InCluster {
				add(m.RaftAddr)
			}
		}
	}
	for _, a := range cands {
		if !avoid[a] {
			return a
		}
	}
	if len(cands) > 0 {
		clear(avoid) // every candidate failed once: start over
		return cands[0]
	}
	return ""
}

// errNoRoute: nobody to send a request to yet.
func errNoRoute(id fsm.ShardID) error {
	return fmt.Errorf("%w: no known leader or replica of %v", shard.ErrUnavailable, id)
}

// propose runs cmd on the leader of the shard that locate returns, here or
// forwarded. Answers that prove nothing was proposed are retried (with
// backoff, at the leader they name) until ctx ends; an attempt whose outcome
// is unknown is retried with the same request ID, which the state machine
// applies at most once. If the last attempt left the outcome unknown, so is
// the result: an *shard.OutcomeUnknownError.
func (n *Node) propose(ctx context.Context, locate func(context.Context) (target, error), cmd fsm.Command) (fsm.Result, error) {
	if err := n.store.Check(cmd); err != nil {
		return fsm.Result{}, err
	}
	if cmd.RequestID == "" {
		cmd.RequestID = newRequestID()
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	var (
		maybe   bool // some attempt may have been proposed
		first   target
		lastErr error
		avoid   = map[string]bool{}
	)
attempts:
	for attempt := 0; ; attempt++ {
		t, err := locate(ctx)
		if err != nil {
			lastErr = err
			break
		}
		if maybe && t.id != first.id {
			// The key moved to another shard after an attempt that may have
			// applied: the first shard's dedupe record cannot protect a
			// retry here.
			break
		}
		first = t
		if err := ctx.Err(); err != nil {
			lastErr = err
			break
		}
		res, err := n.proposeOnce(ctx, t, cmd, avoid)
		if err == nil {
			return res, nil
		}
		lastErr = err
		var ws *wrongShardError
		switch {
		case errors.Is(err, shard.ErrOutcomeUnknown):
			maybe = true
		case errors.As(err, &ws):
			n.awaitEpoch(ctx, ws.epoch)
		case shard.IsRetryable(err), errors.Is(err, shard.ErrClosed) && n.ctx.Err() == nil:
		case maybe:
			// This attempt ended without proposing (its deadline, say), but
			// an earlier one may have applied.
			break attempts
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			// The context ended before the command was proposed (a
			// proposed one ends as outcome unknown): unavailable.
			break attempts
		default:
			return fsm.Result{}, err
		}
		if !n.pause(ctx, attempt) {
			break
		}
	}
	if maybe {
		return fsm.Result{}, &shard.OutcomeUnknownError{Shard: first.id, RequestID: cmd.RequestID, Err: lastErr}
	}
	return fsm.Result{}, unavailable(lastErr, ctx)
}

// unavailable makes a final error of a request that gave up: the last
// attempt's error, marked unavailable (nothing was proposed) unless it says
// something more precise.
func unavailable(err error, ctx context.Context) error {
	if err == nil {
		err = ctx.Err()
	}
	if errors.Is(err, shard.ErrUnavailable) || errors.Is(err, shard.ErrClosed) {
		return err
	}
	return fmt.Errorf("%w: %w", shard.ErrUnavailable, err)
}

func (n *Node) proposeOnce(ctx context.Context, t target, cmd fsm.Command, avoid map[string]bool) (fsm.Result, error) {
	if s := n.localShard(t.id); s != nil {
		if _, _, self := s.Leader(); self {
			res, err := s.Propose(ctx, cmd)
			var nl *shard.NotLeaderError
			if errors.As(err, &nl) {
				n.learn(t.id, nl.Leader)
			}
			return res, err
		}
	}
	addr := n.pickPeer(t.id, avoid)
	if addr == "" {
		return fsm.Result{}, errNoRoute(t.id)
	}
	timeout := time.Until(deadlineOf(ctx))
	var r peer.ProposeReply
	err := n.peers.Call(ctx, addr, "Propose", &peer.ProposeArgs{
		Shard: uint64(t.id), Epoch: t.epoch, Command: fsm.EncodeGroup([]fsm.Command{cmd}), Timeout: timeout,
	}, &r)
	if err != nil {
		return fsm.Result{}, n.transportFailure(t.id, addr, err, cmd.RequestID, avoid)
	}
	if r.Err != nil {
		return fsm.Result{}, n.peerError(t.id, addr, r.Err, cmd.RequestID, avoid)
	}
	return r.Result, nil
}

func deadlineOf(ctx context.Context) time.Time {
	if dl, ok := ctx.Deadline(); ok {
		return dl
	}
	return time.Now().Add(DefaultTimeout)
}

// transportFailure turns a failed call into the error the router acts on.
func (n *Node) transportFailure(id fsm.ShardID, addr string, err error, requestID string, avoid map[string]bool) error {
	var te *peer.TransportError
	if errors.As(err, &te) && te.Sent {
		return &shard.OutcomeUnknownError{Shard: id, RequestID: requestID, Err: err}
	}
	avoid[addr] = true
	if a, ok := n.learned.Load(id); ok && a.(string) == addr {
		n.learned.Delete(id)
	}
	return fmt.Errorf("%w: %w", shard.ErrUnavailable, err)
}

// peerError turns a peer's error answer into the error it stands for, and
// learns from it where the leader is.
func (n *Node) peerError(id fsm.ShardID, addr string, e *peer.Error, requestID string, avoid map[string]bool) error {
	switch e.Code {
	case peer.CodeNotLeader:
		if e.Leader != "" && e.Leader != addr {
			n.learn(id, e.Leader)
			// A peer that said "not leader" earlier in this request may
			// have won the election since: being named leader now is
			// newer news than that refusal. Keeping it avoided would
			// bounce the request among followers that all name it.
			delete(avoid, e.Leader)
		} else {
			avoid[addr] = true
			n.learn(id, "")
		}
		return &shard.NotLeaderError{Shard: id, Leader: e.Leader}
	case peer.CodeNotHosted:
		avoid[addr] = true
		n.learn(id, "")
		return fmt.Errorf("%w: %s", shard.ErrUnavailable, e.Message)
	case peer.CodeUnavailable:
		return fmt.Errorf("%w: %s", shard.ErrUnavailable, e.Message)
	case peer.CodeOutcomeUnknown:
		return &shard.OutcomeUnknownError{Shard: id, RequestID: requestID, Err: errors.New(e.Message)}
	case peer.CodeInvalid:
		return fmt.Errorf("%w: %s", fsm.ErrInvalid, e.Message)
	case peer.CodeTooLarge:
		return fmt.Errorf("%w: %s", fsm.ErrTooLarge, e.Message)
	case peer.CodeNotFound:
		return fmt.Errorf("%w: %s", fsm.ErrNotFound, e.Message)
	case peer.CodeTooStale:
		return fmt.Errorf("%w: %s", shard.ErrTooStale, e.Message)
	case peer.CodeWrongShard:
		return &wrongShardError{shard: id, epoch: e.Epoch}
	case peer.CodeLocked:
		return &fsm.LockedError{Key: e.Key, TxnID: e.TxnID, RecordShard: fsm.ShardID(e.RecordShard), Since: e.LockSince,
			Found: e.Found, Committed: fsm.Item{Key: e.Key, Value: e.Value, Version: e.Version}}
	}
	return fmt.Errorf("%w: peer answered %s: %s", shard.ErrUnavailable, e.Code, e.Message)
}

// readRequest is one get or scan of one shard.
type readRequest struct {
	key  []byte // get
	scan *fsm.ScanOptions
	opts shard.ReadOptions
}

// A readSession lets the linearizable reads of one operation that reads
// many keys without promising one point in time across them (a document
// query) share, per shard, the freshness this node's replica proved on
// the operation's first read of that shard: later reads of the shard in
// the operation are served from the same replica without another
// leadership round or read-index fetch (shard.ReadOptions.After). The
// replica's state only moves forward, so each of them still reflects
// every write acknowledged before the operation began, and nothing that
// was not committed: every key is read at some moment within the
// operation. A read that is retried (it met an intent, say) starts afresh,
// since the retry must see what happened since. Transactions never use a
// session: their lock-free path compares reads made one after the other.
type readSession struct {
	mu sync.Mutex
	at map[fsm.ShardID]sessionPoint
}

// sessionPoint is where a session's replica of a shard proved fresh: the
// replica (a replaced one starts over) and its applied index then.
type sessionPoint struct {
	replica *shard.Shard
	index   uint64
}

type readSessionKey struct{}

// withReadSession returns ctx carrying a new read session.
func withReadSession(ctx context.Context) context.Context {
	return context.WithValue(ctx, readSessionKey{}, &readSession{at: map[fsm.ShardID]sessionPoint{}})
}

// withoutReadSession returns ctx without a read session.
func withoutReadSession(ctx context.Context) context.Context {
	if ctx.Value(readSessionKey{}) == nil {
		return ctx
	}
	return context.WithValue(ctx, readSessionKey{}, (*readSession)(nil))
}

func readSessionOf(ctx context.Context) *readSession {
	rs, _ := ctx.Value(readSessionKey{}).(*readSession)
	return rs
}

// point returns the index at which replica last proved fresh in the
// session, 0 if it has not.
func (rs *readSession) point(id fsm.ShardID, replica *shard.Shard) uint64 {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if p, ok := rs.at[id]; ok && p.replica == replica {
		return p.index
	}
	return 0
}

func (rs *readSession) record(id fsm.ShardID, replica *shard.Shard, index uint64) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if p, ok := rs.at[id]; !ok || p.replica != replica || p.index < index {
		rs.at[id] = sessionPoint{replica, index}
	}
}

// read serves r on shard t.id: on this node's replica when it has one (a
// follower serves linearizable reads through the leader's read index), else
// on the leader (any replica for stale reads). Failures that leave nothing
// read are retried until ctx ends.
func (n *Node) read(ctx context.Context, locate func(context.Context) (target, error), r readRequest) ([]fsm.Item, bool, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	avoid := map[string]bool{}
	var lastErr error
	pending := "" // a transaction found undecided by the last settle
	rs := readSessionOf(ctx)
	if r.opts.Consistency != shard.Linearizable {
		rs = nil
	}
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, false, unavailable(err, ctx)
		}
		t, err := locate(ctx)
		if err != nil {
			return nil, false, err
		}
		if attempt > 0 {
			rs = nil // a retry reads afresh
		}
		items, more, err := n.readOnce(ctx, t, r, avoid, rs)
		if err == nil {
			return items, more, nil
		}
		lastErr = err
		var ws *wrongShardError
		var locked *fsm.LockedError
		switch {
		case errors.As(err, &ws):
			n.awaitEpoch(ctx, ws.epoch)
		case errors.As(err, &locked) && r.scan == nil && locked.TxnID == pending:
			// A get met the intent of a transaction that, when the
			// settle looked after the first meeting, had not committed
			// (no record yet: records are written only by the commit,
			// and forgotten only once no intent is left). The intent is
			// still here, so that was no record forgotten: the
			// transaction had not taken effect then, and the key (locked
			// by it all along) held its committed state.
			if !locked.Found {
				return nil, false, fmt.Errorf("%w: key %q", fsm.ErrNotFound, locked.Key)
			}
			return []fsm.Item{locked.Committed}, false, nil
		case errors.As(err, &locked):
			// An undecided write of a cross-shard transaction: learn its
			// fate (aborting it if it was abandoned). Decided, it is
			// resolved and the key read again. Still pending, a get reads
			// again to make sure (above); a scan waits and reads again.
			if hook := testHookLockedRead.Load(); hook != nil {
				(*hook)()
			}
			err := n.coord.Settle(ctx, locked.TxnID, locked.RecordShard, t.id, locked.Since, locked.Key)
			switch {
			case errors.Is(err, txn.ErrPending) && r.scan == nil:
				pending = locked.TxnID
				continue
			case err != nil && !errors.Is(err, txn.ErrPending):
				lastErr = err
			}
		case shard.IsRetryable(err), errors.Is(err, shard.ErrOutcomeUnknown), errors.Is(err, shard.ErrClosed) && n.ctx.Err() == nil,
			errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			// Retried while ctx lasts; a context that ended is unavailable.
		default:
			return nil, false, err
		}
		if !n.pause(ctx, attempt) {
			return nil, false, unavailable(lastErr, ctx)
		}
	}
}

// testHookLockedRead, set by tests, runs when a read has met an intent,
// before it settles it.
var testHookLockedRead atomic.Pointer[func()]

// readOnce makes one try at r on shard t.id. With a read session (rs), a
// linearizable read of a replica here that already proved fresh in the
// session reads it at once, and one that proves it records where.
func (n *Node) readOnce(ctx context.Context, t target, r readRequest, avoid map[string]bool, rs *readSession) ([]fsm.Item, bool, error) {
	if s := n.localShard(t.id); s != nil && bugLocalReads {
		local := r
		local.opts = shard.ReadOptions{Consistency: shard.Stale}
		items, more, _, err := readLocal(ctx, s, local)
		return items, more, err
	}
	if s := n.localShard(t.id); s != nil {
		if rs != nil {
			if at := rs.point(t.id, s); at > 0 {
				local := r
				local.opts.After = at
				items, more, _, err := readLocal(ctx, s, local)
				return items, more, err
			}
		}
		// A local follower serves the read (linearizable ones through the
		// leader's read index) unless it is a non-voter: one that is still
		// catching up could make linearizable reads wait long and would
		// serve stale reads from far behind while it hears from the leader.
		_, leader, self := s.Leader()
		if self || (leader != "" || r.opts.Consistency == shard.Stale) && s.IsVoter() {
			local := r
			local.opts.NoWait = true
			items, more, at, err := readLocal(ctx, s, local)
			if rs != nil && at > 0 {
				rs.record(t.id, s, at)
			}
			if !errors.Is(err, shard.ErrBehind) {
				return items, more, err
			}
			// Behind the read index: the leader answers sooner than this
			// replica would learn the commit.
		}
	}
	addr := n.pickPeer(t.id, avoid)
	if addr == "" {
		return nil, false, errNoRoute(t.id)
	}
	a := &peer.ReadArgs{
		Shard: uint64(t.id), Epoch: t.epoch, Key: r.key,
		Stale: r.opts.Consistency == shard.Stale, MaxStaleness: r.opts.MaxStaleness,
		Timeout: time.Until(deadlineOf(ctx)),
	}
	if r.scan != nil {
		a.Scan, a.Prefix, a.Start, a.End, a.After, a.Limit = true, r.scan.Prefix, r.scan.Start, r.scan.End, r.scan.After, r.scan.Limit
		a.Reverse = r.scan.Reverse
	}
	var rep peer.ReadReply
	if err := n.peers.Call(ctx, addr, "Read", a, &rep); err != nil {
		var te *peer.TransportError
		if errors.As(err, &te) && !te.Sent {
			avoid[addr] = true
		}
		return nil, false, fmt.Errorf("%w: %w", shard.ErrUnavailable, err)
	}
	if rep.Err != nil {
		return nil, false, n.peerError(t.id, addr, rep.Err, "", avoid)
	}
	return rep.Items, rep.More, nil
}

// readLocal serves r on this node's replica s and returns the replica's
// applied index when it served it: also with an error from the state
// machine (not found, a lock), 0 when the read barrier failed.
func readLocal(ctx context.Context, s *shard.Shard, r readRequest) ([]fsm.Item, bool, uint64, error) {
	if r.scan != nil {
		res, info, err := s.Scan(ctx, *r.scan, r.opts)
		return res.Items, res.More, info.Index, err
	}
	it, info, err := s.Get(ctx, r.key, r.opts)
	if err != nil {
		return nil, false, info.Index, err
	}
	return []fsm.Item{it}, false, info.Index, nil
}
