package node

import (
	"errors"
	"time"

	"github.com/cairndb/cairn/internal/gossip"
	"github.com/cairndb/cairn/ring"
	"github.com/cairndb/cairn/shard"
	"github.com/cespare/xxhash/v2"
	"github.com/hashicorp/raft"
)

// form runs until this node's meta replica belongs to a cluster. A node
// with BootstrapExpect N > 1 forms a new cluster with N-1 others; any node
// joins a cluster that gossip shows to exist (registration, in the
// reconciler, reaches its meta leader, which adds this node).
//
// Forming: each node takes the alive members that announce the same N and
// are in no cluster, and picks the first N by name. If it is among them it
// announces a proposal, a hash of those names and raft addresses, and it
// bootstraps the meta group with them as voters only once every one of them
// announces the same proposal. All of them bootstrap the same configuration,
// which raft allows; nodes that see different members propose differently
// and wait until gossip converges. Start exactly N nodes with the same N:
// extra nodes that start at the same moment may race for the N places.
func (n *Node) form() {
	defer n.wg.Done()
	logged := false
	for !n.inCluster() {
		if n.cfg.BootstrapExpect > 1 {
			if err := n.tryBootstrap(); err != nil {
				n.logger.Error("bootstrap", "error", err)
			}
		} else if !logged {
			n.logger.Info("waiting to join a cluster through gossip (set BootstrapExpect to form a new one)", "join", n.cfg.Join)
			logged = true
		}
		select {
		case <-n.ctx.Done():
			return
		case <-n.gossip.Changed():
		case <-time.After(250 * time.Millisecond): // also re-check on a timer
		}
	}
	n.forming.Store(0)
	n.logger.Info("in cluster")
}

func (n *Node) tryBootstrap() error {
	var cands []gossip.Member
	for _, m := range n.gossip.Members() {
		a, err := decodeAnnouncement(m.State)
		if m.Name != n.cfg.Name && err != nil {
			continue
		}
		if a.InCluster {
			n.forming.Store(0)
			return nil // a cluster exists: join it instead
		}
		if m.Name == n.cfg.Name || a.Expect == n.cfg.BootstrapExpect {
			cands = append(cands, m)
		}
	}
	if len(cands) < n.cfg.BootstrapExpect {
		n.forming.Store(0)
		return nil
	}
	chosen := cands[:n.cfg.BootstrapExpect] // Members is sorted by name
	var names []ring.NodeID
	h := xxhash.New()
	for _, m := range chosen {
		names = append(names, ring.NodeID(m.Name))
		_, _ = h.WriteString(m.Name + "\x00" + m.RaftAddr + "\x00")
	}
	if !hasNode(names, n.cfg.Name) {
		n.forming.Store(0)
		return nil // not among the first N: join once they have formed
	}
	prop := h.Sum64() | 1 // never 0, which means "no proposal"
	if n.forming.Swap(prop) != prop {
		n.announce()
	}
	var reps []shard.Replica
	for _, m := range chosen {
		if m.Name != n.cfg.Name {
			a, _ := decodeAnnouncement(m.State)
			if a.Proposal != prop {
				return nil // not agreed yet
			}
		}
		if m.RaftAddr == "" {
			return nil
		}
		reps = append(reps, shard.Replica{ID: m.Name, Addr: m.RaftAddr, Voter: true})
	}
	if err := n.meta.Bootstrap(reps); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return err
	}
	n.logger.Info("bootstrapped the meta group", "members", names)
	return nil
}
