package jepsen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/jepsen/cluster"
	"github.com/cairndb/cairn/jepsen/history"
)

// nemesis injects one fault at a time on a seeded schedule: the cluster
// runs healthy for an interval, a fault holds for an interval, it is
// healed, and so on. The same seed draws the same sequence of faults and
// targets; faults aimed at a shard's leader pick the same shard, whichever
// node leads it at the time.
type nemesis struct {
	c        *cluster.Cluster
	rec      *history.Recorder
	kinds    []string
	rng      *rand.Rand
	interval time.Duration
	logf     func(string, ...any)
	shards   []uint64 // data and meta shards, for leader-targeted faults

	heal func() error // undoes the active fault; nil when none
	name string
}

func newNemesis(c *cluster.Cluster, rec *history.Recorder, kinds []string, seed int64, interval time.Duration, logf func(string, ...any)) *nemesis {
	return &nemesis{c: c, rec: rec, kinds: kinds, rng: rand.New(rand.NewPCG(uint64(seed), 0x6e656d)), interval: interval, logf: logf}
}

// run injects faults until ctx ends, then heals the last one.
func (n *nemesis) run(ctx context.Context) error {
	if len(n.kinds) == 0 {
		<-ctx.Done()
		return nil
	}
	var errs []error
	for {
		if sleepCtx(ctx, n.interval) != nil {
			break
		}
		kind := n.kinds[n.rng.IntN(len(n.kinds))]
		if err := n.start(ctx, kind); err != nil {
			// A fault that could not be applied is logged and recorded;
			// the schedule goes on.
			n.logf("nemesis: %s: %v", kind, err)
			n.rec.Nemesis("error", fmt.Sprintf("%s: %v", kind, err))
			errs = append(errs, err)
		}
		sleepCtx(ctx, n.interval)
		if err := n.stop(); err != nil {
			errs = append(errs, err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

func (n *nemesis) start(ctx context.Context, kind string) error {
	nodes := len(n.c.Nodes())
	switch kind {
	case NemesisPartition:
		var groups [][]int
		var desc string
		switch v := n.rng.IntN(4); {
		case v == 0:
			i := n.rng.IntN(nodes)
			groups, desc = isolate(nodes, i), "isolate "+n.nodeName(i)
		case v == 1:
			i, shard, err := n.leaderOf(ctx)
			if err != nil {
				return err
			}
			groups, desc = isolate(nodes, i), fmt.Sprintf("isolate %s (leader of shard %d)", n.nodeName(i), shard)
		case v == 2 && nodes == 5:
			perm := n.rng.Perm(nodes)
			var cut [][2]int
			for a := range nodes {
				// Each node keeps its two ring neighbours: a majority
				// of its own, a different one for every node.
				cut = append(cut, [2]int{perm[a], perm[(a+2)%nodes]})
			}
			desc = "majorities ring " + n.names(perm)
			for k := range cut {
				cut[k][0]++
				cut[k][1]++
			}
			if err := n.c.Cut(cut); err != nil {
				return err
			}
			return n.began(kind, desc, n.c.Heal)
		default:
			perm := n.rng.Perm(nodes)
			k := nodes / 2
			groups = [][]int{perm[:k], perm[k:]}
			desc = "halves " + n.names(perm[:k]) + " | " + n.names(perm[k:])
		}
		if err := n.c.Partition(oneBasedGroups(groups)); err != nil {
			return err
		}
		return n.began(kind, desc, n.c.Heal)
	case NemesisKill:
		var targets []int
		var desc string
		switch n.rng.IntN(3) {
		case 0:
			targets = []int{n.rng.IntN(nodes)}
			desc = "kill " + n.names(targets)
		case 1:
			targets = n.rng.Perm(nodes)[:(nodes-1)/2]
			desc = "kill minority " + n.names(targets)
		default:
			i, shard, err := n.leaderOf(ctx)
			if err != nil {
				return err
			}
			targets = []int{i}
			desc = fmt.Sprintf("kill %s (leader of shard %d)", n.nodeName(i), shard)
		}
		for _, i := range targets {
			if err := n.c.Kill(i + 1); err != nil {
				return err
			}
		}
		return n.began(kind, desc, func() error {
			var errs []error
			for _, i := range targets {
				errs = append(errs, n.c.Restart(i+1))
			}
			return errors.Join(errs...)
		})
	case NemesisPause:
		var i int
		var desc string
		if n.rng.IntN(2) == 0 {
			i = n.rng.IntN(nodes)
			desc = "pause " + n.nodeName(i)
		} else {
			var shard uint64
			var err error
			if i, shard, err = n.leaderOf(ctx); err != nil {
				return err
			}
			desc = fmt.Sprintf("pause %s (leader of shard %d)", n.nodeName(i), shard)
		}
		if err := n.c.Pause(i + 1); err != nil {
			return err
		}
		return n.began(kind, desc, func() error { return n.c.Resume(i + 1) })
	case NemesisNetem:
		delay := time.Duration(20+n.rng.IntN(80)) * time.Millisecond
		loss := float64(n.rng.IntN(11))
		targets := n.rng.Perm(nodes)
		if n.rng.IntN(2) == 0 {
			targets = targets[:1+n.rng.IntN(nodes)]
		}
		slices.Sort(targets)
		desc := fmt.Sprintf("netem delay %v ±%v loss %.0f%% on %s", delay, delay/2, loss, n.names(targets))
		if !n.c.Supports("delay") {
			// A kernel without the netem qdisc: packet loss only, and
			// more of it.
			delay, loss = 0, 5+2*loss
			desc = fmt.Sprintf("packet loss %.0f%% on %s (no netem qdisc in this kernel: no delay)", loss, n.names(targets))
		}
		if err := n.c.Netem(oneBased(targets), delay, delay/2, loss); err != nil {
			return err
		}
		return n.began(kind, desc, n.c.ClearNetem)
	case NemesisTransfer:
		i, shard, err := n.leaderOf(ctx)
		if err != nil {
			return err
		}
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if n.rng.IntN(2) == 0 || !n.c.Supports(NemesisPartition) {
			// A plain transfer, asked of any node (it forwards to the
			// leader).
			via := n.rng.IntN(nodes)
			leader, err := n.c.Client(via+1).TransferLeader(tctx, shard, "")
			desc := fmt.Sprintf("transfer shard %d away from %s (asked %s): ", shard, n.nodeName(i), n.nodeName(via))
			if err != nil {
				desc += "failed: " + err.Error()
			} else {
				desc += "now led by " + leader
			}
			return n.began(kind, desc, func() error { return nil })
		}
		// Cut the leader off, then ask it to hand over: the transfer
		// cannot complete, and the majority must still elect a leader
		// that takes writes (a transfer stuck "in progress" must not
		// hold the shard).
		if err := n.c.Partition(oneBasedGroups(isolate(nodes, i))); err != nil {
			return err
		}
		n.began(kind, fmt.Sprintf("isolate %s (leader of shard %d), then ask it to transfer", n.nodeName(i), shard), n.c.Heal)
		_, terr := n.c.Client(i+1).TransferLeader(tctx, shard, "")
		result := "the cut-off leader claims the transfer succeeded"
		if terr != nil {
			result = "the cut-off leader's transfer failed: " + terr.Error()
		}
		n.rec.Nemesis("transfer-result", result)
		n.logf("nemesis: %s", result)
		return nil
	case NemesisDisk:
		// Fill a node's data disk below its minimum free space: the
		// whole cluster must refuse writes that add data, cleanly
		// (disk_full: certainly not applied), and take them again once
		// the filler is gone.
		i := n.rng.IntN(nodes)
		if err := n.c.FillDisk(i+1, diskLeave); err != nil {
			return err
		}
		free, _ := n.c.DiskFree(i + 1)
		desc := fmt.Sprintf("fill the disk of %s (%d MiB left, its minimum %d MiB)", n.nodeName(i), free>>20, diskMinFree>>20)
		return n.began(kind, desc, func() error { return n.c.FreeDisk(i + 1) })
	case NemesisMove:
		// Kill a node and remove it from the cluster: its replicas move to
		// the others while clients write. Healing restarts it with its old
		// data: it drops what it no longer holds, joins as a new member,
		// and replicas move back onto it.
		i := n.rng.IntN(nodes)
		via := (i + 1 + n.rng.IntN(nodes-1)) % nodes
		if err := n.c.Kill(i + 1); err != nil {
			return err
		}
		heal := func() error { return n.c.Restart(i + 1) }
		desc := fmt.Sprintf("kill %s and remove it from the cluster (asked %s): its replicas move", n.nodeName(i), n.nodeName(via))
		if err := n.removeWhenDead(ctx, via, n.nodeName(i)); err != nil {
			desc = fmt.Sprintf("kill %s; removing it failed: %v", n.nodeName(i), err)
		}
		return n.began(kind, desc, heal)
	}
	return fmt.Errorf("unknown nemesis %q", kind)
}

// removeWhenDead asks node via to remove node name, retrying while gossip
// still sees name alive (it was just killed).
func (n *nemesis) removeWhenDead(ctx context.Context, via int, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		err := n.c.Client(via+1).RemoveNode(rctx, name)
		rcancel()
		if err == nil {
			return nil
		}
		if !errors.Is(err, client.ErrBadRequest) || !strings.Contains(err.Error(), "alive") {
			return err
		}
		if sleepCtx(ctx, 250*time.Millisecond) != nil {
			return err
		}
	}
}

func (n *nemesis) began(kind, desc string, heal func() error) error {
	n.rec.Nemesis("start-"+kind, desc)
	n.logf("nemesis: %s", desc)
	n.heal, n.name = heal, kind
	return nil
}

// stop heals the active fault, if any.
func (n *nemesis) stop() error {
	if n.heal == nil {
		return nil
	}
	err := n.heal()
	desc := "healed"
	if err != nil {
		desc = "heal failed: " + err.Error()
	}
	n.rec.Nemesis("stop-"+n.name, desc)
	n.logf("nemesis: %s %s", n.name, desc)
	n.heal = nil
	return err
}

// leaderOf picks a shard at random and returns the node leading it.
func (n *nemesis) leaderOf(ctx context.Context) (int, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	leaders, err := n.c.ShardLeaders(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("find shard leaders: %w", err)
	}
	if n.shards == nil {
		for id := range leaders {
			n.shards = append(n.shards, id)
		}
		slices.Sort(n.shards)
	}
	if len(n.shards) == 0 {
		return 0, 0, errors.New("no shard has a leader")
	}
	shard := n.shards[n.rng.IntN(len(n.shards))]
	i, ok := leaders[shard]
	if !ok {
		return 0, 0, fmt.Errorf("shard %d has no leader now", shard)
	}
	return i - 1, shard, nil // the cluster numbers nodes from 1
}

// The cluster package numbers nodes from 1; the nemesis from 0.
func oneBased(is []int) []int {
	out := make([]int, len(is))
	for k, i := range is {
		out[k] = i + 1
	}
	return out
}

func oneBasedGroups(gs [][]int) [][]int {
	out := make([][]int, len(gs))
	for k, g := range gs {
		out[k] = oneBased(g)
	}
	return out
}

// isolate returns groups that cut node i off from the others.
func isolate(nodes, i int) [][]int {
	rest := []int{}
	for j := range nodes {
		if j != i {
			rest = append(rest, j)
		}
	}
	return [][]int{{i}, rest}
}

func (n *nemesis) nodeName(i int) string { return n.c.Nodes()[i].Name }

func (n *nemesis) names(is []int) string {
	s := make([]string, len(is))
	for k, i := range is {
		s[k] = n.nodeName(i)
	}
	return strings.Join(s, ",")
}
