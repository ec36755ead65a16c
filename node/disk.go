package node

import (
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/dustin/go-humanize"
)

// ErrDiskFull: a write that would grow the store was refused, before
// anything was proposed, because a node's data disk is below its
// MinFreeDisk (HTTP 507, disk_full). Reads and deletes still work.
var ErrDiskFull = errors.New("disk full")

// diskCheckInterval is how often a node measures its data disk's free space.
const diskCheckInterval = time.Second

// bootFloor is the least free space a node with MinFreeDisk set needs to
// open its store: opening creates Badger's next memtable file, and Badger
// writes its files through memory mappings, where a full disk is a SIGBUS
// (a crash) rather than an error.
const bootFloor = 64 << 20

// diskState is what the node knows about free space: its own disk's, from
// statfs, and which other nodes announce a disk below their minimum.
type diskState struct {
	free atomic.Int64 // bytes free on this node's data disk; -1: unknown
	low  atomic.Bool  // free < MinFreeDisk
	// others lists the other nodes whose announcement says their disk is
	// low (gossip).
	others atomic.Pointer[[]string]
}

// measureDisk reads the data disk's free space and updates n.disk. It
// logs when the disk goes below MinFreeDisk and when it is back above.
func (n *Node) measureDisk() {
	free, err := n.cfg.diskFree(n.cfg.DataDir)
	if err != nil {
		n.disk.free.Store(-1)
		if n.disk.low.CompareAndSwap(true, false) {
			n.logger.Warn("data disk: cannot measure free space; writes are accepted again", "error", err)
		}
		return
	}
	n.disk.free.Store(free)
	low := free < n.cfg.MinFreeDisk
	if n.disk.low.Swap(low) == low {
		return
	}
	if low {
		n.logger.Warn("data disk below the minimum free space: writes are refused until space is freed (reads and deletes still work)",
			"free", humanize.IBytes(uint64(free)), "min_free", humanize.IBytes(uint64(n.cfg.MinFreeDisk)))
	} else {
		n.logger.Info("data disk has the minimum free space again: writes are accepted",
			"free", humanize.IBytes(uint64(free)), "min_free", humanize.IBytes(uint64(n.cfg.MinFreeDisk)))
	}
}

// diskLoop measures the data disk every diskCheckInterval.
func (n *Node) diskLoop() {
	defer n.wg.Done()
	t := time.NewTicker(diskCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		n.measureDisk()
	}
}

// checkBootSpace refuses to open a store on a disk too full to open it.
func (n *Node) checkBootSpace() error {
	if n.cfg.MinFreeDisk <= 0 {
		return nil
	}
	free, err := n.cfg.diskFree(n.cfg.DataDir)
	if err != nil {
		return nil // nothing to go by; the periodic check logs it
	}
	if need := min(n.cfg.MinFreeDisk, bootFloor); free < need {
		return fmt.Errorf("%w: the data disk of %s has %s free; the node needs at least %s to open its store: free some space on it",
			ErrDiskFull, n.cfg.DataDir, humanize.IBytes(uint64(free)), humanize.IBytes(uint64(need)))
	}
	return nil
}

// checkDisk returns an error wrapping ErrDiskFull when a write that adds
// data must be refused: this node's disk or another node's is below its
// minimum free space. Like etcd's space alarm it holds for the whole
// cluster, since in general a write reaches every node sooner or later (as
// its shard's replica, or as a replica moved there).
func (n *Node) checkDisk() error {
	if n.disk.low.Load() {
		return fmt.Errorf("%w: node %s has %s free on its data disk, less than its minimum of %s; writes are refused until space is freed (reads and deletes still work)",
			ErrDiskFull, n.cfg.Name, humanize.IBytes(uint64(max(n.disk.free.Load(), 0))), humanize.IBytes(uint64(n.cfg.MinFreeDisk)))
	}
	if others := n.disk.others.Load(); others != nil && len(*others) > 0 {
		return fmt.Errorf("%w: node %s reports less free space on its data disk than its minimum; writes are refused until space is freed there (reads and deletes still work)",
			ErrDiskFull, (*others)[0])
	}
	return nil
}

// checkDiskFor is checkDisk for a write of ops: only one that puts a
// value is refused; deletes and reads go on, so that space can be freed.
func (n *Node) checkDiskFor(ops ...[]fsm.Op) error {
	for _, l := range ops {
		if slices.ContainsFunc(l, func(op fsm.Op) bool { return op.Type == fsm.OpPut }) {
			return n.checkDisk()
		}
	}
	return nil
}
