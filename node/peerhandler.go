package node

import (
	"context"
	"errors"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/internal/peer"
	"github.com/cairndb/cairn/shard"
)

// peerHandler serves requests that other nodes forward to this one.
type peerHandler Node

var _ peer.Handler = (*peerHandler)(nil)

func (h *peerHandler) Propose(ctx context.Context, a *peer.ProposeArgs, r *peer.ProposeReply) {
	n := (*Node)(h)
	id := fsm.ShardID(a.Shard)
	cmds, err := fsm.DecodeGroup(a.Command)
	if err != nil || len(cmds) != 1 {
		r.Err = &peer.Error{Code: peer.CodeInvalid, Message: "forwarded command is not one encoded command"}
		return
	}
	if r.Err = n.checkOwnership(id, a.Epoch, cmds[0].Keys(), false); r.Err != nil {
		return
	}
	s := n.localShard(id)
	if s == nil {
		r.Err = &peer.Error{Code: peer.CodeNotHosted, Message: "shard not hosted here"}
		return
	}
	res, err := s.Propose(ctx, cmds[0])
	r.Result, r.Err = res, toPeerError(err)
}

func (h *peerHandler) Read(ctx context.Context, a *peer.ReadArgs, r *peer.ReadReply) {
	n := (*Node)(h)
	id := fsm.ShardID(a.Shard)
	var keys [][]byte
	if !a.Scan {
		keys = [][]byte{a.Key}
	}
	if r.Err = n.checkOwnership(id, a.Epoch, keys, a.Scan); r.Err != nil {
		return
	}
	s := n.localShard(id)
	if s == nil {
		r.Err = &peer.Error{Code: peer.CodeNotHosted, Message: "shard not hosted here"}
		return
	}
	req := readRequest{key: a.Key, opts: shard.ReadOptions{MaxStaleness: a.MaxStaleness}}
	if a.Stale {
		req.opts.Consistency = shard.Stale
	}
	if a.Scan {
		req.scan = &fsm.ScanOptions{Prefix: a.Prefix, Start: a.Start, End: a.End, After: a.After, Limit: min(max(a.Limit, 0), MaxScanLimit),
			Reverse: a.Reverse}
	}
	items, more, _, err := readLocal(ctx, s, req)
	r.Items, r.More, r.Err = items, more, toPeerError(err)
}

func (h *peerHandler) Status(_ context.Context, a *peer.StatusArgs, r *peer.StatusReply) {
	n := (*Node)(h)
	s := n.localShard(fsm.ShardID(a.Shard))
	if s == nil {
		return
	}
	r.Hosted, r.Status = true, s.Status()
	if a.Replica != "" {
		ex, err := s.Excludes(a.Replica)
		r.Excludes, r.Err = ex, toPeerError(err)
	}
}

// checkOwnership refuses a request for shard id whose keys this node's ring
// maps elsewhere (the sender routed with an older ring: wrong_shard with
// ours), or that was routed with a ring newer than ours (we are behind:
// unavailable, retry). A scan, whose keys are not known, needs equal epochs.
func (n *Node) checkOwnership(id fsm.ShardID, epoch uint64, keys [][]byte, scan bool) *peer.Error {
	if id == MetaShard {
		return nil
	}
	v := n.view.Load()
	if !v.hasLayout() {
		return &peer.Error{Code: peer.CodeUnavailable, Message: "cluster layout not known here yet"}
	}
	ours := v.ring.Epoch()
	switch {
	case epoch > ours:
		return &peer.Error{Code: peer.CodeUnavailable, Message: "this node's ring is behind the sender's"}
	case scan && epoch < ours:
		return &peer.Error{Code: peer.CodeWrongShard, Message: "ring changed", Epoch: ours}
	}
	for _, k := range keys {
		if v.ring.Locate(k) != id {
			return &peer.Error{Code: peer.CodeWrongShard, Message: "key belongs to another shard", Epoch: ours}
		}
	}
	return nil
}

// toPeerError encodes an error of the shard or fsm layer for the wire.
func toPeerError(err error) *peer.Error {
	if err == nil {
		return nil
	}
	e := &peer.Error{Message: err.Error()}
	var nl *shard.NotLeaderError
	var locked *fsm.LockedError
	switch {
	case errors.As(err, &nl):
		e.Code, e.Leader = peer.CodeNotLeader, nl.Leader
	case errors.Is(err, shard.ErrOutcomeUnknown):
		e.Code = peer.CodeOutcomeUnknown
	case errors.Is(err, fsm.ErrTooLarge):
		e.Code = peer.CodeTooLarge
	case errors.Is(err, fsm.ErrInvalid):
		e.Code = peer.CodeInvalid
	case errors.Is(err, fsm.ErrNotFound):
		e.Code = peer.CodeNotFound
	case errors.Is(err, shard.ErrTooStale):
		e.Code = peer.CodeTooStale
	case errors.As(err, &locked):
		e.Code, e.Key, e.TxnID, e.RecordShard = peer.CodeLocked, locked.Key, locked.TxnID, uint64(locked.RecordShard)
		e.LockSince = locked.Since
		e.Found, e.Value, e.Version = locked.Found, locked.Committed.Value, locked.Committed.Version
	default:
		// Unavailable, closed, or the request's deadline before anything
		// was proposed.
		e.Code = peer.CodeUnavailable
	}
	return e
}

// Transfer hands over the leadership of a shard this node leads; it does
// not forward (the caller routes to the leader).
func (h *peerHandler) Transfer(ctx context.Context, a *peer.TransferArgs, r *peer.TransferReply) {
	leader, err := (*Node)(h).transferLocal(ctx, fsm.ShardID(a.Shard), a.To)
	r.Leader, r.Err = leader, toPeerError(err)
}
