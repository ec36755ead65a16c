package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairndb/cairn/docstore"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/internal/gossip"
	"github.com/cairndb/cairn/internal/peer"
	"github.com/cairndb/cairn/ring"
	"github.com/cairndb/cairn/shard"
	"github.com/cairndb/cairn/shard/nodelog"
	"github.com/cairndb/cairn/txn"
	sockaddr "github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/raft"
)

// Node is a running Cairn node: its store, raft port, gossip member, meta
// replica and the data shard replicas placed on it.
type Node struct {
	cfg     Config
	logger  *slog.Logger
	store   *fsm.Store
	logs    *nodelog.Log // the shared raft log; nil when no replica uses it
	mux     *shard.Mux
	metrics *shard.Metrics
	http    *httpMetrics
	gossip  *gossip.Gossip
	peers   *peer.Pool
	rpc     *peer.Server
	// raftAddr and httpAddr are the addresses other nodes use.
	raftAddr, httpAddr string

	meta *shard.Shard
	// coord runs cross-shard transactions and settles the intents that
	// reads and writes meet.
	coord      *txn.Coordinator
	docs       *docstore.DB
	shardTags  shardTagCache
	txnMetrics *txn.Metrics

	mu     sync.RWMutex
	shards map[fsm.ShardID]*shard.Shard // data shard replicas open here
	busy   map[fsm.ShardID]bool         // membership work in flight, by shard

	view        atomic.Pointer[view]
	viewMu      sync.Mutex
	viewChanged chan struct{}
	// learned holds leader addresses that peers reported (not_leader
	// answers), by shard; gossiped holds those announced through gossip.
	learned  sync.Map // fsm.ShardID → string
	gossiped atomic.Pointer[map[fsm.ShardID]string]
	// forming is this node's bootstrap proposal while it forms a cluster.
	forming atomic.Uint64
	kick    chan struct{} // wakes the reconciler
	// balancer spreads data shard leaderships (balance.go).
	balancer leaderBalancer
	// disk is the free space of this node's data disk and which nodes
	// report theirs below the minimum (disk.go).
	disk diskState

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	err    error
}

// Start opens the node's data directory and brings its parts up: the store,
// the raft port, gossip, and the replicas the node holds. It does not wait
// for other nodes: a node that forms or joins a cluster, or restarts while
// its peers are down, serves requests once the cluster is ready (requests
// meanwhile wait within their deadline, then fail as unavailable). WaitReady
// waits for that point.
//
// A node with no Join and no state forms a one-node cluster by itself.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	n := &Node{
		cfg:         cfg,
		logger:      logger.With("node", cfg.Name),
		shards:      map[fsm.ShardID]*shard.Shard{},
		busy:        map[fsm.ShardID]bool{},
		viewChanged: make(chan struct{}),
		kick:        make(chan struct{}, 1),
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
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
	if n.cfg.diskFree == nil {
		n.cfg.diskFree = statFree
	}
	if err := n.checkBootSpace(); err != nil {
		return err
	}
	n.measureDisk()
	var err error
	so := n.cfg.Store
	so.Dir = filepath.Join(n.cfg.DataDir, "badger")
	so.Logger = n.logger
	if n.store, err = fsm.Open(so); err != nil {
		return err
	}
	if err := n.openNodeLog(); err != nil {
		return err
	}
	if n.mux, err = shard.Listen(n.cfg.RaftAddr, shard.MuxConfig{Logger: n.logger}); err != nil {
		return err
	}
	if err := n.registerMetrics(); err != nil {
		return err
	}
	gossipBind, err := n.resolveGossipBind()
	if err != nil {
		return err
	}
	fallback := advertiseFallback(gossipBind)
	n.raftAddr = n.cfg.advertise(n.mux.Addr().String(), fallback)
	n.httpAddr = n.cfg.advertise(n.cfg.HTTPAddr, fallback)
	n.mux.Advertise(n.raftAddr)
	n.peers = peer.NewPool(func(ctx context.Context, addr string) (net.Conn, error) {
		return n.mux.Dial(ctx, addr, shard.KindNode, 0)
	}, n.logger)
	ln, err := n.mux.Listen(shard.KindNode, 0)
	if err != nil {
		return err
	}
	if n.rpc, err = peer.Serve(ln, (*peerHandler)(n)); err != nil {
		return err
	}
	if n.meta, err = n.openShard(MetaShard); err != nil {
		return err
	}
	if v, err := readView(n.meta.FSM()); err == nil {
		n.setView(v)
	} else {
		return err
	}
	if n.gossip, err = gossip.Start(gossip.Config{
		Name:          n.cfg.Name,
		BindAddr:      gossipBind,
		AdvertiseAddr: n.gossipAdvertise(),
		Seeds:         n.cfg.Join,
		RaftAddr:      n.raftAddr,
		HTTPAddr:      n.httpAddr,
		SecretKey:     n.cfg.GossipKey,
		Local:         n.cfg.GossipLocal,
		Logger:        n.logger,
	}); err != nil {
		return err
	}
	if !n.inCluster() && len(n.cfg.Join) == 0 {
		// A node on its own forms a one-node cluster right away.
		self := shard.Replica{ID: n.cfg.Name, Addr: n.raftAddr, Voter: true}
		if err := n.meta.Bootstrap([]shard.Replica{self}); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return err
		}
		n.logger.Info("formed a one-node cluster")
	}
	tcfg := n.cfg.Txn
	tcfg.Metrics = n.txnMetrics
	n.coord = txn.New(txnCluster{n}, tcfg)
	n.docs = docstore.New(docsKV{n}, docstore.Options{MaxDocSize: n.store.Limits().MaxValueSize})
	n.wg.Add(7)
	go n.diskLoop()
	go n.watchMeta()
	go n.watchGossip()
	go n.announceLoop()
	go n.reconcileLoop()
	go n.resolveLoop()
	go n.indexBuildLoop()
	if !n.inCluster() {
		n.wg.Add(1)
		go n.form()
	}
	n.logger.Info("node started", "raft_addr", n.raftAddr, "http_addr", n.httpAddr, "gossip_addr", n.gossip.Addr(), "in_cluster", n.inCluster())
	return nil
}

// resolveGossipBind returns the gossip bind address; port 0 is resolved to
// a port that is free for both TCP and UDP, because memberlist needs both
// and must know its port before it binds.
func (n *Node) resolveGossipBind() (string, error) {
	host, port, err := net.SplitHostPort(n.cfg.GossipAddr)
	if err != nil {
		return "", fmt.Errorf("node: GossipAddr: %w", err)
	}
	if port != "0" {
		return n.cfg.GossipAddr, nil
	}
	return gossip.FreeAddr(host)
}

// advertiseFallback is the host other nodes use when this node listens on a
// wildcard address and AdvertiseHost is unset: the gossip host if it is
// specific, or else a private IP of this machine (as memberlist picks).
func advertiseFallback(gossipBind string) string {
	host, _, _ := net.SplitHostPort(gossipBind)
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return host
	}
	if ip, err := sockaddr.GetPrivateIP(); err == nil && ip != "" {
		return ip
	}
	return "127.0.0.1"
}

// gossipAdvertise is the IP memberlist announces: AdvertiseHost resolved,
// when set (memberlist needs an IP, not a name).
func (n *Node) gossipAdvertise() string {
	if n.cfg.AdvertiseHost == "" {
		return ""
	}
	if ip := net.ParseIP(n.cfg.AdvertiseHost); ip != nil {
		return ip.String()
	}
	ips, err := net.LookupIP(n.cfg.AdvertiseHost)
	if err != nil || len(ips) == 0 {
		n.logger.Warn("advertise host does not resolve; gossip announces the detected address", "host", n.cfg.AdvertiseHost, "error", err)
		return ""
	}
	return ips[0].String()
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

func (n *Node) shardDir(id fsm.ShardID) string {
	return filepath.Join(n.cfg.DataDir, "raft", strconv.FormatUint(uint64(id), 10))
}

// openShard opens this node's replica of id. A replica with no raft state
// waits to be bootstrapped or added by its group's leader.
func (n *Node) openShard(id fsm.ShardID) (*shard.Shard, error) {
	sc := n.cfg.Shard
	sc.ID = id
	sc.NodeID = n.cfg.Name
	sc.Dir = n.shardDir(id)
	sc.Store = n.store
	sc.NodeLog = n.logs
	sc.Mux = n.mux
	sc.Logger = n.logger
	sc.Metrics = n.metrics
	return shard.Open(sc)
}

// localShards lists the data shard replicas on disk, so that a restart
// reopens replicas the placement may no longer list (they are removed by
// the reconciler once their group lets them go).
func (n *Node) localShards() ([]fsm.ShardID, error) {
	entries, err := os.ReadDir(filepath.Join(n.cfg.DataDir, "raft"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node: list replicas: %w", err)
	}
	var ids []fsm.ShardID
	for _, e := range entries {
		id, err := strconv.ParseUint(e.Name(), 10, 64)
		if err != nil || !e.IsDir() || id == uint64(MetaShard) {
			continue
		}
		ids = append(ids, fsm.ShardID(id))
	}
	return ids, nil
}

// inCluster reports whether this node's meta replica belongs to a group.
func (n *Node) inCluster() bool { return len(n.meta.Status().Replicas) > 0 }

func (n *Node) setView(v *view) {
	n.view.Store(v)
	n.viewMu.Lock()
	close(n.viewChanged)
	n.viewChanged = make(chan struct{})
	n.viewMu.Unlock()
	n.wake()
}

func (n *Node) viewChange() <-chan struct{} {
	n.viewMu.Lock()
	defer n.viewMu.Unlock()
	return n.viewChanged
}

// wake asks the reconciler for a pass.
func (n *Node) wake() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// watchMeta refreshes the view whenever the local meta replica applies.
func (n *Node) watchMeta() {
	defer n.wg.Done()
	f := n.meta.FSM()
	for {
		changed := f.AppliedChanged()
		if old := n.view.Load(); old == nil || f.Applied() != old.metaIndex {
			v, err := readView(f)
			if err != nil {
				n.logger.Error("read cluster state", "error", err)
			} else {
				n.setView(v)
			}
		}
		select {
		case <-changed:
		case <-n.ctx.Done():
			return
		}
	}
}

// WaitReady waits until this node knows the cluster's layout and every
// shard has a leader that serves, or ctx ends.
func (n *Node) WaitReady(ctx context.Context) error {
	for {
		if err := n.ready(); err == nil {
			return nil
		} else if ctx.Err() != nil {
			return fmt.Errorf("node: not ready: %w (%w)", err, ctx.Err())
		}
		select {
		case <-ctx.Done():
		case <-n.viewChange():
		case <-time.After(20 * time.Millisecond): // leaders change without view changes
		}
	}
}

// ready reports why the node cannot serve every shard yet, or nil.
func (n *Node) ready() error {
	v := n.view.Load()
	if !v.hasLayout() {
		return errors.New("cluster layout not known yet")
	}
	var missing []string
	for _, id := range append([]fsm.ShardID{MetaShard}, v.ring.Shards()...) {
		if n.leaderAddr(id) == "" {
			missing = append(missing, strconv.FormatUint(uint64(id), 10))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("no known leader for shards %s", strings.Join(missing, ","))
	}
	return nil
}

// Ring returns the ring the node routes with (nil before the cluster's
// layout exists).
func (n *Node) Ring() *ring.Ring { return n.view.Load().ring }

// RaftAddr returns the address other nodes reach this node's raft port at.
func (n *Node) RaftAddr() string { return n.raftAddr }

// GossipAddr returns the node's gossip address (a seed for others' Join).
func (n *Node) GossipAddr() string { return n.gossip.Addr() }

// Name returns the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Shards returns the status of every shard replica on the node, meta first.
func (n *Node) Shards() []shard.Status {
	st := []shard.Status{n.meta.Status()}
	n.mu.RLock()
	defer n.mu.RUnlock()
	for _, id := range sortedIDs(n.shards) {
		st = append(st, n.shards[id].Status())
	}
	return st
}

// localShard returns this node's replica of id, or nil.
func (n *Node) localShard(id fsm.ShardID) *shard.Shard {
	if id == MetaShard {
		return n.meta
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.shards[id]
}

// Shutdown hands every shard this node leads to another replica (HandOff,
// bounded by ctx), then closes the node. Use it for planned stops: clients
// see a short pause instead of an election timeout.
func (n *Node) Shutdown(ctx context.Context) error {
	n.HandOff(ctx)
	return n.Close()
}

// HandOff transfers the leadership of every shard this node leads to
// another voter, in parallel, and returns when all transfers ended or ctx
// did. Requests keep being served (and routed to the new leaders).
func (n *Node) HandOff(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range n.replicas() {
		if _, _, self := s.Leader(); !self || len(s.Status().Replicas) < 2 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.TransferLeadership(ctx, shard.Replica{}); err != nil {
				n.logger.Warn("leadership transfer before shutdown", "shard", uint64(s.ID()), "error", err)
			}
		}()
	}
	wg.Wait()
}

// replicas returns every replica open on the node, meta first.
func (n *Node) replicas() []*shard.Shard {
	out := []*shard.Shard{n.meta}
	n.mu.RLock()
	defer n.mu.RUnlock()
	for _, id := range sortedIDs(n.shards) {
		out = append(out, n.shards[id])
	}
	return out
}

// Close stops the node without handing leadership away: background work,
// gossip (leaving the pool), peer RPC, data shards, the meta group, the raft
// port, the store, in that order. It is idempotent and safe on a partly
// started node.
func (n *Node) Close() error {
	n.once.Do(func() { n.err = n.close() })
	return n.err
}

func (n *Node) close() error {
	n.cancel()
	if n.coord != nil {
		n.coord.Close()
	}
	n.wg.Wait()
	var errs []error
	if n.gossip != nil {
		// Leaving is a courtesy to the others (they would notice anyway);
		// a leave nobody acknowledged in time, as when every node stops at
		// once, is not a failure to close.
		if err := n.gossip.Close(time.Second); err != nil {
			n.logger.Warn("gossip leave", "error", err)
		}
	}
	if n.rpc != nil {
		errs = append(errs, n.rpc.Close())
	}
	n.mu.Lock()
	for _, s := range n.shards {
		errs = append(errs, s.Close())
	}
	n.shards = map[fsm.ShardID]*shard.Shard{}
	n.mu.Unlock()
	if n.meta != nil {
		errs = append(errs, n.meta.Close())
	}
	if n.peers != nil {
		errs = append(errs, n.peers.Close())
	}
	if n.mux != nil {
		errs = append(errs, n.mux.Close())
	}
	if n.logs != nil {
		errs = append(errs, n.logs.Close())
	}
	if n.store != nil {
		errs = append(errs, n.store.Close())
	}
	return errors.Join(errs...)
}

// openNodeLog opens the node's shared raft log when new replicas are to use
// it or one already does (its directory exists), and forgets what it holds
// for replicas whose files are gone (removed before a crash let the node
// say so to the log).
func (n *Node) openNodeLog() error {
	dir := filepath.Join(n.cfg.DataDir, "raft", "nodelog")
	if n.cfg.Shard.LogStore != shard.LogStoreNode {
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
	}
	var err error
	if n.logs, err = nodelog.Open(dir, nodelog.Options{Logger: n.logger}); err != nil {
		return err
	}
	for _, id := range n.logs.Shards() {
		kind, err := shard.ExistingLogStore(n.shardDir(fsm.ShardID(id)))
		if err != nil {
			return err
		}
		if kind != shard.LogStoreNode {
			n.logger.Info("dropping raft log of a removed replica", "shard", id)
			if err := n.logs.Drop(id); err != nil {
				return err
			}
		}
	}
	return nil
}
