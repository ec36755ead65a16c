package node

import (
	"context"
	"fmt"

	"github.com/cairndb/cairn/fsm"
)

// RemoveNode takes a node that is gone for good out of the cluster: it
// leaves the registry, so the meta group's leader places its replicas on
// the remaining nodes (each new replica joins as a non-voter and is
// promoted once caught up, then the departed one is removed from the
// shard's group) and drops it from the meta group. The node must be down
// (gossip no longer sees it) and may not be the one asked. If it comes back
// with its old data, it deletes the replicas it no longer holds and joins
// again as a new member.
func (n *Node) RemoveNode(ctx context.Context, name string) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	v := n.view.Load()
	if _, ok := v.nodes[name]; !ok {
		return fmt.Errorf("%w: no node named %q in the cluster", fsm.ErrNotFound, name)
	}
	if name == n.cfg.Name {
		return fmt.Errorf("%w: node %q cannot remove itself; ask another node", fsm.ErrInvalid, name)
	}
	if n.aliveNodes()[name] {
		return fmt.Errorf("%w: node %q is alive; stop it before removing it", fsm.ErrInvalid, name)
	}
	if len(v.nodes) < 2 {
		return fmt.Errorf("%w: the cluster's last node cannot be removed", fsm.ErrInvalid)
	}
	res, err := n.propose(ctx, metaTarget, fsm.Command{Ops: []fsm.Op{fsm.Delete(nodeKey(name))}})
	if err != nil {
		return err
	}
	if err := res.Err(); err != nil {
		return err
	}
	n.logger.Info("node removed from the registry", "node", name)
	return nil
}
