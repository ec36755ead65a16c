package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/ring"
	"github.com/cairndb/cairn/shard"
	"github.com/hashicorp/raft"
)

// MetaShard is the meta group: it holds the ring and the placement.
const MetaShard fsm.ShardID = 0

// Keys of the meta group's state.
var (
	metaRingKey      = []byte("ring")
	metaPlacementKey = []byte("placement")
)

// Node is a running Cairn node: its store, raft port, meta replica and the
// data shard replicas placed on it.
type Node struct {
	cfg     Config
	logger  *slog.Logger
	store   *fsm.Store
	mux     *shard.Mux
	metrics *shard.Metrics
	meta    *shard.Shard
	ring    *ring.Ring
	place   ring.Placement
	shards  map[fsm.ShardID]*shard.Shard
}

// Start opens the node's data directory and brings its shards up. A node
// whose directory is new bootstraps a one-node cluster: the meta group, the
// ring of cfg.Shards data shards and their placement, each shard a group of
// its own. A node restarting from an existing directory reopens what the
// meta group says it holds. Start returns once every shard of the node has a
// leader ready to serve, or ctx ends.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	n := &Node{cfg: cfg, logger: logger.With("node", cfg.Name), shards: map[fsm.ShardID]*shard.Shard{}}
	if err := n.start(ctx); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

func (n *Node) start(ctx context.Context) error {
	if err := claimDataDir(n.cfg.DataDir, n.cfg.Name); err != nil {
		return err
	}
	var err error
	so := fsm.DefaultOptions(filepath.Join(n.cfg.DataDir, "badger"))
	so.Logger = n.logger
	if n.store, err = fsm.Open(so); err != nil {
		return err
	}
	if n.mux, err = shard.Listen(n.cfg.RaftAddr, shard.MuxConfig{Logger: n.logger}); err != nil {
		return err
	}
	if n.cfg.Registry != nil {
		if n.metrics, err = shard.NewMetrics(n.cfg.Registry); err != nil {
			return fmt.Errorf("node: metrics: %w", err)
		}
		if err := n.store.RegisterMetrics(n.cfg.Registry); err != nil {
			return fmt.Errorf("node: metrics: %w", err)
		}
	}
	self := shard.Replica{ID: n.cfg.Name, Addr: n.mux.Addr().String(), Voter: true}
	if n.meta, err = n.openShard(MetaShard, []shard.Replica{self}); err != nil {
		return err
	}
	if err := waitReady(ctx, n.meta); err != nil {
		return err
	}
	if err := n.loadOrCreateLayout(ctx); err != nil {
		return err
	}
	for _, id := range n.ring.Shards() {
		var reps []shard.Replica
		for _, nodeID := range n.place.Replicas[id] {
			if string(nodeID) != n.cfg.Name {
				return fmt.Errorf("node: %v is placed on %s; multi-node clusters are not implemented yet", id, nodeID)
			}
			reps = append(reps, self)
		}
		s, err := n.openShard(id, reps)
		if err != nil {
			return err
		}
		n.shards[id] = s
	}
	for _, s := range n.shards {
		if err := waitReady(ctx, s); err != nil {
			return err
		}
	}
	n.logger.Info("node started", "raft_addr", self.Addr, "shards", len(n.shards), "ring_epoch", n.ring.Epoch())
	return nil
}

// claimDataDir records name in dir (with fsync) on first use and refuses a
// directory that belongs to another node.
func claimDataDir(dir, name string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("node: data dir: %w", err)
	}
	path := filepath.Join(dir, "node-name")
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if got := strings.TrimSpace(string(b)); got != name {
			return fmt.Errorf("node: data dir %s belongs to node %q, not %q", dir, got, name)
		}
		return nil
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("node: data dir: %w", err)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("node: data dir: %w", err)
	}
	_, err = f.WriteString(name + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("node: record node name: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// openShard opens this node's replica of id and, if it has no raft state
// yet, bootstraps it with replicas.
func (n *Node) openShard(id fsm.ShardID, replicas []shard.Replica) (*shard.Shard, error) {
	sc := n.cfg.Shard
	sc.ID = id
	sc.NodeID = n.cfg.Name
	sc.Dir = filepath.Join(n.cfg.DataDir, "raft", strconv.FormatUint(uint64(id), 10))
	sc.Store = n.store
	sc.Mux = n.mux
	sc.Logger = n.logger
	sc.Metrics = n.metrics
	s, err := shard.Open(sc)
	if err != nil {
		return nil, err
	}
	if err := s.Bootstrap(replicas); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		s.Close()
		return nil, err
	}
	return s, nil
}

func waitReady(ctx context.Context, s *shard.Shard) error {
	for !s.Status().Ready {
		select {
		case <-ctx.Done():
			return fmt.Errorf("node: %v has no ready leader: %w", s.ID(), ctx.Err())
		case <-time.After(5 * time.Millisecond): // poll until the leader's barrier applied
		}
	}
	return nil
}

// placementJSON is how the meta group stores the placement.
type placementJSON struct {
	Epoch    uint64              `json:"epoch"`
	Replicas map[string][]string `json:"replicas"` // shard ID → node names
}

// loadOrCreateLayout reads the ring and placement from the meta group, or
// writes them on first start (conditionally: only if absent).
func (n *Node) loadOrCreateLayout(ctx context.Context) error {
	for {
		rItem, rErr := n.metaGet(ctx, metaRingKey)
		pItem, pErr := n.metaGet(ctx, metaPlacementKey)
		if rErr == nil && pErr == nil {
			return n.decodeLayout(rItem.Value, pItem.Value)
		}
		if !errors.Is(rErr, fsm.ErrNotFound) || !errors.Is(pErr, fsm.ErrNotFound) {
			return fmt.Errorf("node: read cluster layout: %w", errors.Join(rErr, pErr))
		}
		ids := make([]fsm.ShardID, n.cfg.Shards)
		for i := range ids {
			ids[i] = fsm.ShardID(i + 1)
		}
		r, err := ring.New(1, ring.DefaultVNodes, ids)
		if err != nil {
			return err
		}
		p, err := ring.Place(ids, []ring.NodeID{ring.NodeID(n.cfg.Name)}, n.cfg.Replicas)
		if err != nil {
			return err
		}
		rb, _ := r.MarshalBinary()
		pb, err := encodePlacement(p)
		if err != nil {
			return err
		}
		res, err := n.meta.Propose(ctx, fsm.Command{Ops: []fsm.Op{
			fsm.Put(metaRingKey, rb).If(0),
			fsm.Put(metaPlacementKey, pb).If(0),
		}})
		if err != nil {
			return fmt.Errorf("node: write cluster layout: %w", err)
		}
		if res.Code == fsm.OK {
			n.logger.Info("bootstrapped cluster layout", "shards", n.cfg.Shards)
		}
		// Either way, read back what the meta group holds.
	}
}

func (n *Node) metaGet(ctx context.Context, key []byte) (fsm.Item, error) {
	it, _, err := n.meta.Get(ctx, key, shard.ReadOptions{})
	return it, err
}

func encodePlacement(p ring.Placement) ([]byte, error) {
	pj := placementJSON{Epoch: p.Epoch, Replicas: map[string][]string{}}
	for id, nodes := range p.Replicas {
		names := make([]string, len(nodes))
		for i, nd := range nodes {
			names[i] = string(nd)
		}
		pj.Replicas[strconv.FormatUint(uint64(id), 10)] = names
	}
	return json.Marshal(pj)
}

func (n *Node) decodeLayout(rb, pb []byte) error {
	r, err := ring.Decode(rb)
	if err != nil {
		return fmt.Errorf("node: stored ring: %w", err)
	}
	var pj placementJSON
	if err := json.Unmarshal(pb, &pj); err != nil {
		return fmt.Errorf("node: stored placement: %w", err)
	}
	p := ring.Placement{Epoch: pj.Epoch, Replicas: map[fsm.ShardID][]ring.NodeID{}}
	for k, names := range pj.Replicas {
		id, err := strconv.ParseUint(k, 10, 64)
		if err != nil {
			return fmt.Errorf("node: stored placement: shard %q: %w", k, err)
		}
		for _, name := range names {
			p.Replicas[fsm.ShardID(id)] = append(p.Replicas[fsm.ShardID(id)], ring.NodeID(name))
		}
	}
	for _, id := range r.Shards() {
		if len(p.Replicas[id]) == 0 {
			return fmt.Errorf("node: stored placement has no replicas for %v", id)
		}
	}
	n.ring, n.place = r, p
	return nil
}

// Ring returns the ring the node routes with.
func (n *Node) Ring() *ring.Ring { return n.ring }

// RaftAddr returns the address of the node's raft port.
func (n *Node) RaftAddr() string { return n.mux.Addr().String() }

// Shards returns the status of every shard replica on the node, meta first.
func (n *Node) Shards() []shard.Status {
	st := []shard.Status{n.meta.Status()}
	for _, id := range n.ring.Shards() {
		if s := n.shards[id]; s != nil {
			st = append(st, s.Status())
		}
	}
	return st
}

// Close stops the node: data shards, the meta group, the raft port, the
// store, in that order. It is safe on a partly started node.
func (n *Node) Close() error {
	var errs []error
	for _, s := range n.shards {
		errs = append(errs, s.Close())
	}
	n.shards = map[fsm.ShardID]*shard.Shard{}
	if n.meta != nil {
		errs = append(errs, n.meta.Close())
		n.meta = nil
	}
	if n.mux != nil {
		errs = append(errs, n.mux.Close())
		n.mux = nil
	}
	if n.store != nil {
		errs = append(errs, n.store.Close())
		n.store = nil
	}
	return errors.Join(errs...)
}
