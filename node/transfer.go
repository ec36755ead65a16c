package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/internal/peer"
	"github.com/cairndb/cairn/ring"
	"github.com/cairndb/cairn/shard"
)

// TransferLeadership hands the leadership of shard id to the replica on
// node to, or to any other voter when to is empty, and returns the name of
// the node that leads the shard afterwards. Any node may be asked: the
// request goes to the shard's current leader. A transfer that does not
// complete (the target is cut off, say) fails with an unavailable error and
// leaves the group to elect a leader as usual.
func (n *Node) TransferLeadership(ctx context.Context, id fsm.ShardID, to string) (string, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	v := n.view.Load()
	if id != MetaShard && (!v.hasLayout() || !slices.Contains(v.ring.Shards(), id)) {
		return "", fmt.Errorf("%w: no shard %d", fsm.ErrNotFound, id)
	}
	if _, err := n.transferTarget(id, to); err != nil {
		return "", err
	}
	avoid := map[string]bool{}
	var lastErr error
	for attempt := 0; ; attempt++ {
		leader, err := n.transferOnce(ctx, id, to, avoid)
		if err == nil {
			return leader, nil
		}
		lastErr = err
		if !shard.IsRetryable(err) {
			return "", err
		}
		if !n.pause(ctx, attempt) {
			return "", unavailable(lastErr, ctx)
		}
	}
}

func (n *Node) transferOnce(ctx context.Context, id fsm.ShardID, to string, avoid map[string]bool) (string, error) {
	if s := n.localShard(id); s != nil {
		if _, _, self := s.Leader(); self {
			return n.transferLocal(ctx, id, to)
		}
	}
	addr := n.pickPeer(id, avoid)
	if addr == "" {
		return "", errNoRoute(id)
	}
	var rep peer.TransferReply
	a := &peer.TransferArgs{Shard: uint64(id), To: to, Timeout: time.Until(deadlineOf(ctx))}
	if err := n.peers.Call(ctx, addr, "Transfer", a, &rep); err != nil {
		var te *peer.TransportError
		if errors.As(err, &te) && !te.Sent {
			avoid[addr] = true
		}
		return "", fmt.Errorf("%w: %w", shard.ErrUnavailable, err)
	}
	if rep.Err != nil {
		return "", n.peerError(id, addr, rep.Err, "", avoid)
	}
	return rep.Leader, nil
}

// transferLocal hands over the leadership of shard id if this node holds
// it, and waits until its replica knows the new leader.
func (n *Node) transferLocal(ctx context.Context, id fsm.ShardID, to string) (string, error) {
	s := n.localShard(id)
	if s == nil {
		return "", &shard.NotLeaderError{Shard: id, Leader: n.leaderAddr(id)}
	}
	target, err := n.transferTarget(id, to)
	if err != nil {
		return "", err
	}
	if _, _, self := s.Leader(); self && to == n.cfg.Name {
		return to, nil
	}
	if err := s.TransferLeadership(ctx, target); err != nil {
		return "", err
	}
	// The transfer returns once this replica has stepped down; the winner
	// makes itself known with its first heartbeat.
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if leader, _, self := s.Leader(); leader != "" && !self {
			return leader, nil
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return "", fmt.Errorf("%w: %v handed its leadership over, but no new leader is known yet: %w", shard.ErrUnavailable, id, ctx.Err())
		}
	}
}

// transferTarget resolves a target node name to its replica of shard id.
func (n *Node) transferTarget(id fsm.ShardID, to string) (shard.Replica, error) {
	if to == "" {
		return shard.Replica{}, nil
	}
	v := n.view.Load()
	ni, ok := v.nodes[to]
	if !ok {
		return shard.Replica{}, fmt.Errorf("%w: no node named %q in the cluster", fsm.ErrInvalid, to)
	}
	if !slices.Contains(v.replicasOf(id), ring.NodeID(to)) {
		return shard.Replica{}, fmt.Errorf("%w: node %q holds no replica of shard %d", fsm.ErrInvalid, to, id)
	}
	return shard.Replica{ID: to, Addr: ni.RaftAddr}, nil
}
