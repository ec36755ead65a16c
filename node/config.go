package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/shard"
	"github.com/cairndb/cairn/txn"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a node. The fields mirror kvnode's flags.
type Config struct {
	// Name identifies the node in the cluster (raft server ID). Default: the
	// host name. It is recorded in DataDir on first start; a data directory
	// cannot be reused under another name.
	Name string
	// DataDir holds the node's Badger store (badger/), raft logs and
	// snapshots (raft/<shard>/) and identity. Default ./kvnode-data.
	DataDir string
	// RaftAddr is the port all shard groups and node-to-node RPC share.
	// Default 127.0.0.1:7071.
	RaftAddr string
	// HTTPAddr is where the HTTP API is served (by the caller: see Handler);
	// the node only announces it to the others. Default 127.0.0.1:7070.
	HTTPAddr string
	// GossipAddr is the memberlist address (TCP and UDP). Default
	// 127.0.0.1:7072; port 0 picks a free one.
	GossipAddr string
	// AdvertiseHost is the host name or IP other nodes use to reach this
	// one. Default: the host of each listen address, or, where that is a
	// wildcard (0.0.0.0, ::), the address gossip detects. Containers set it
	// to their service name, which stays valid when the container's IP
	// changes.
	AdvertiseHost string
	// Join lists gossip addresses of other nodes. BootstrapExpect is how many
	// nodes form a new cluster:
	//   - no Join: the node forms a one-node cluster by itself (others can
	//     join it later);
	//   - Join and BootstrapExpect N > 1: the first N nodes (by name) that
	//     see each other with the same N form the cluster together;
	//   - Join and BootstrapExpect 1: the node joins an existing cluster and
	//     never forms one.
	// A node with existing state ignores both and rejoins its cluster.
	Join            []string
	BootstrapExpect int
	// GossipKey (16, 24 or 32 bytes) encrypts and authenticates gossip.
	// Without it, anyone who reaches the gossip port can join or forge
	// messages. All nodes must use the same key.
	GossipKey []byte
	// Shards is the number of data shards created at bootstrap (default 4);
	// Replicas the replicas per shard (default 3, fewer when the cluster has
	// fewer nodes). Both are decided by the node that creates the cluster's
	// layout and are stored with it; later changes to the flags are ignored.
	Shards   int
	Replicas int
	// ReplicaMaxLag is how many entries behind the leader's commit index a
	// new replica may be when it is promoted to voter. Default 256.
	ReplicaMaxLag uint64
	// ReconcileInterval is how often the node re-checks that its replicas
	// match the placement (it also does so whenever the placement changes).
	// Default 1s.
	ReconcileInterval time.Duration
	// LeaderBalanceInterval is how long the leader counts a node sees must
	// hold still before it hands a shard's leadership to a node leading at
	// least two data shards fewer, and the least time between two such
	// moves of the node (leaderBalancer). 0 turns balancing off. Default 10s.
	LeaderBalanceInterval time.Duration
	// RequestTimeout bounds each HTTP request: a request that cannot be
	// served by then fails as unavailable (nothing was proposed) or, for a
	// write that was proposed, as outcome unknown. Default 10s.
	RequestTimeout time.Duration
	// GossipLocal selects memberlist's timings for one machine (faster
	// failure detection; tests and kvnode demo).
	GossipLocal bool

	// MinFreeDisk is the free space the node keeps on its data disk: below
	// it, writes that add data (puts, transactions and document writes that
	// put) are refused on every node with ErrDiskFull before anything is
	// proposed, until space is freed; reads and deletes still work. Badger
	// writes through memory mappings, where running out of space crashes
	// the process, and compactions and snapshots need room, so keep a
	// margin. 0 turns the check off. Default 1 GiB.
	MinFreeDisk int64
	// diskFree measures a directory's free space (tests fake it); nil:
	// statfs.
	diskFree func(dir string) (int64, error)

	// Logger: default discard. Registry: where metrics go; nil for none.
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// Shard is the template for every shard replica's raft settings; its ID,
	// NodeID, Dir, Store, Mux, Logger and Metrics are filled in by the node.
	Shard shard.Config
	// Txn configures the coordinator of cross-shard transactions (record
	// TTL, attempts); its Failpoint is for tests. ResolveInterval is how
	// often the node looks for abandoned intents on the shards it leads.
	// Default 2s.
	Txn             txn.Config
	ResolveInterval time.Duration
	// IndexResumeInterval is how often the meta group's leader looks for
	// index builds whose builder died, and IndexResumeAge how long a build
	// must have been running to count as such. Defaults 15s and 1m.
	IndexResumeInterval, IndexResumeAge time.Duration
	// Store configures the node's Badger store; Dir and Logger are filled in
	// by the node. Every node of a cluster must use the same MemTableSize
	// (it bounds the largest command; see fsm.Options).
	Store fsm.Options
}

// DefaultConfig returns the defaults of kvnode's flags.
func DefaultConfig() Config {
	name, err := os.Hostname()
	if err != nil || name == "" {
		name = "kvnode"
	}
	return Config{
		Name:                  name,
		DataDir:               "./kvnode-data",
		HTTPAddr:              "127.0.0.1:7070",
		RaftAddr:              "127.0.0.1:7071",
		GossipAddr:            "127.0.0.1:7072",
		BootstrapExpect:       1,
		Shards:                4,
		Replicas:              3,
		ReplicaMaxLag:         256,
		ReconcileInterval:     time.Second,
		LeaderBalanceInterval: 10 * time.Second,
		RequestTimeout:        DefaultTimeout,
		MinFreeDisk:           1 << 30,
		ResolveInterval:       2 * time.Second,
		IndexResumeInterval:   15 * time.Second,
		IndexResumeAge:        time.Minute,
		Shard:                 shard.DefaultConfig(),
		Store:                 fsm.DefaultOptions(""),
	}
}

// MaxShards bounds Shards at bootstrap.
const MaxShards = 1024

// MaxNameLen bounds node names (they travel in every raft configuration).
const MaxNameLen = 128

// Validate reports every problem with c.
func (c Config) Validate() error {
	var errs []error
	if c.Name == "" || len(c.Name) > MaxNameLen {
		errs = append(errs, fmt.Errorf("node: Name must be 1 to %d bytes", MaxNameLen))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("node: DataDir is required"))
	}
	for _, a := range []struct{ name, addr string }{{"RaftAddr", c.RaftAddr}, {"GossipAddr", c.GossipAddr}} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("node: %s %q: %w", a.name, a.addr, err))
		}
	}
	if c.Shards < 1 || c.Shards > MaxShards {
		errs = append(errs, fmt.Errorf("node: Shards %d outside [1, %d]", c.Shards, MaxShards))
	}
	if c.Replicas < 1 {
		errs = append(errs, fmt.Errorf("node: Replicas %d must be at least 1", c.Replicas))
	}
	if c.BootstrapExpect < 1 {
		errs = append(errs, errors.New("node: BootstrapExpect must be at least 1"))
	}
	if c.BootstrapExpect > 1 && len(c.Join) == 0 {
		errs = append(errs, fmt.Errorf("node: BootstrapExpect %d needs Join (the gossip addresses of the other nodes)", c.BootstrapExpect))
	}
	if n := len(c.GossipKey); n != 0 && n != 16 && n != 24 && n != 32 {
		errs = append(errs, fmt.Errorf("node: GossipKey of %d bytes; want 16, 24 or 32", n))
	}
	if c.ReplicaMaxLag == 0 {
		errs = append(errs, errors.New("node: ReplicaMaxLag must be positive"))
	}
	if c.RequestTimeout <= 0 {
		errs = append(errs, errors.New("node: RequestTimeout must be positive"))
	}
	if c.ResolveInterval <= 0 {
		errs = append(errs, errors.New("node: ResolveInterval must be positive"))
	}
	if c.ReconcileInterval <= 0 {
		errs = append(errs, errors.New("node: ReconcileInterval must be positive"))
	}
	if c.MinFreeDisk < 0 {
		errs = append(errs, errors.New("node: MinFreeDisk must not be negative"))
	}
	if c.LeaderBalanceInterval < 0 {
		errs = append(errs, errors.New("node: LeaderBalanceInterval must not be negative"))
	}
	return errors.Join(errs...)
}

// advertise returns addr with its host replaced by the advertised host, or,
// for a wildcard host with no AdvertiseHost, by fallback (the address gossip
// detected).
func (c Config) advertise(addr, fallback string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	switch {
	case c.AdvertiseHost != "":
		host = c.AdvertiseHost
	case host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified():
		host = fallback
	}
	return net.JoinHostPort(host, port)
}
