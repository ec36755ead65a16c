package node

import (
	"encoding/binary"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/cairndb/cairn/fsm"
)

// announcement is what a node tells the others through gossip. It is a hint:
// routing uses it to find leaders faster, formation to agree on who
// bootstraps, and nothing is decided from it alone.
type announcement struct {
	// InCluster: the node's meta replica belongs to a formed cluster.
	InCluster bool
	// Expect is the node's BootstrapExpect; Proposal, while it forms a
	// cluster, a hash of the members it proposes to bootstrap with.
	Expect   int
	Proposal uint64
	// RingEpoch and Epoch are the ring and placement epochs the node has
	// applied: a node behind the others shows here.
	RingEpoch uint64
	Epoch     uint64
	// Leads are the shards whose leader is this node (as many as fit).
	Leads []fsm.ShardID
	// DiskLow: the node's data disk is below its MinFreeDisk, so every
	// node refuses writes that add data (disk.go).
	DiskLow bool
}

const announcementVersion = 1

// announceDiskLow is the one flag of the optional flags byte that follows
// the leads. The byte is written only when a flag is set, so a node with
// room on its disk announces exactly what builds before the flag did.
const announceDiskLow = 1

// encode appends as many leads as fit in max bytes.
func (a announcement) encode(max int) []byte {
	if a.DiskLow {
		max-- // room for the flags byte
	}
	b := []byte{announcementVersion, 0}
	if a.InCluster {
		b[1] = 1
	}
	b = binary.AppendUvarint(b, uint64(a.Expect))
	b = binary.BigEndian.AppendUint64(b, a.Proposal)
	b = binary.AppendUvarint(b, a.RingEpoch)
	b = binary.AppendUvarint(b, a.Epoch)
	leads := slices.Sorted(slices.Values(a.Leads))
	// Leads are deltas from the previous ID; the count comes first, so
	// reserve its worst case and trim the list to what fits.
	var body []byte
	count, prev := 0, fsm.ShardID(0)
	for _, id := range leads {
		next := binary.AppendUvarint(body, uint64(id-prev))
		if len(b)+binary.MaxVarintLen64+len(next) > max {
			break
		}
		body, prev, count = next, id, count+1
	}
	b = binary.AppendUvarint(b, uint64(count))
	b = append(b, body...)
	if a.DiskLow {
		b = append(b, announceDiskLow)
	}
	return b
}

var errAnnouncement = errors.New("node: bad gossip announcement")

// decodeAnnouncement never panics on garbage.
func decodeAnnouncement(b []byte) (announcement, error) {
	var a announcement
	if len(b) < 2 || b[0] != announcementVersion || b[1] > 1 {
		return a, errAnnouncement
	}
	a.InCluster = b[1] == 1
	b = b[2:]
	next := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	expect, ok := next()
	if !ok || expect > 1<<16 || len(b) < 8 {
		return a, errAnnouncement
	}
	a.Expect = int(expect)
	a.Proposal = binary.BigEndian.Uint64(b)
	b = b[8:]
	if a.RingEpoch, ok = next(); !ok {
		return a, errAnnouncement
	}
	if a.Epoch, ok = next(); !ok {
		return a, errAnnouncement
	}
	count, ok := next()
	if !ok || count > uint64(len(b)) {
		return a, errAnnouncement
	}
	var prev uint64
	for range count {
		d, ok := next()
		if !ok || (d == 0 && len(a.Leads) > 0) || prev+d < prev {
			return a, errAnnouncement
		}
		prev += d
		a.Leads = append(a.Leads, fsm.ShardID(prev))
	}
	if len(b) > 0 { // the flags byte
		if len(b) > 1 || b[0]&^announceDiskLow != 0 {
			return a, errAnnouncement
		}
		a.DiskLow = b[0]&announceDiskLow != 0
	}
	return a, nil
}

// announceLoop keeps this node's gossip state current.
func (n *Node) announceLoop() {
	defer n.wg.Done()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		n.announce()
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (n *Node) announce() {
	a := announcement{InCluster: n.inCluster(), Expect: n.cfg.BootstrapExpect, Proposal: n.forming.Load(), DiskLow: n.disk.low.Load()}
	if v := n.view.Load(); v.hasLayout() {
		a.RingEpoch, a.Epoch = v.ring.Epoch(), v.place.Epoch
	}
	for _, s := range n.replicas() {
		if _, _, self := s.Leader(); self {
			a.Leads = append(a.Leads, s.ID())
		}
	}
	if err := n.gossip.SetState(a.encode(n.gossip.MaxState())); err != nil {
		n.logger.Warn("gossip announcement", "error", err)
	}
}

// watchGossip rebuilds the leader hints whenever gossip changes, and wakes
// the reconciler (a node came or went).
func (n *Node) watchGossip() {
	defer n.wg.Done()
	for {
		changed := n.gossip.Changed()
		hints := map[fsm.ShardID]string{}
		var diskLow []string
		for _, m := range n.gossip.Members() {
			if m.Name == n.cfg.Name {
				continue
			}
			a, err := decodeAnnouncement(m.State)
			if err != nil {
				continue
			}
			for _, id := range a.Leads {
				hints[id] = m.RaftAddr
			}
			if a.DiskLow {
				diskLow = append(diskLow, m.Name)
			}
		}
		if old := n.gossiped.Load(); old == nil || !maps.Equal(*old, hints) {
			n.gossiped.Store(&hints)
		}
		n.disk.others.Store(&diskLow)
		n.wake()
		select {
		case <-n.ctx.Done():
			return
		case <-changed:
		}
	}
}
