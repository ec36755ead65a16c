package node

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/cairndb/cairn/shard"
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
	// HTTPAddr and GossipAddr: defaults 127.0.0.1:7070 and 127.0.0.1:7072.
	// Not served yet (see Start).
	HTTPAddr   string
	GossipAddr string
	// Join lists gossip addresses of other nodes; BootstrapExpect is how many
	// nodes form the first cluster. Multi-node clusters are not implemented
	// yet: Validate rejects Join and BootstrapExpect > 1.
	Join            []string
	BootstrapExpect int
	// Shards is the number of data shards created at bootstrap (default 4);
	// Replicas the replicas per shard (default 3, fewer when the cluster has
	// fewer nodes).
	Shards   int
	Replicas int

	// Logger: default discard. Registry: where metrics go; nil for none.
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// Shard is the template for every shard replica's raft settings; its ID,
	// NodeID, Dir, Store, Mux, Logger and Metrics are filled in by the node.
	Shard shard.Config
}

// DefaultConfig returns the defaults of kvnode's flags.
func DefaultConfig() Config {
	name, err := os.Hostname()
	if err != nil || name == "" {
		name = "kvnode"
	}
	return Config{
		Name:            name,
		DataDir:         "./kvnode-data",
		HTTPAddr:        "127.0.0.1:7070",
		RaftAddr:        "127.0.0.1:7071",
		GossipAddr:      "127.0.0.1:7072",
		BootstrapExpect: 1,
		Shards:          4,
		Replicas:        3,
		Shard:           shard.DefaultConfig(),
	}
}

// MaxShards bounds Shards at bootstrap.
const MaxShards = 1024

// Validate reports every problem with c.
func (c Config) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("node: Name is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("node: DataDir is required"))
	}
	if c.RaftAddr == "" {
		errs = append(errs, errors.New("node: RaftAddr is required"))
	}
	if c.Shards < 1 || c.Shards > MaxShards {
		errs = append(errs, fmt.Errorf("node: Shards %d outside [1, %d]", c.Shards, MaxShards))
	}
	if c.Replicas < 1 {
		errs = append(errs, fmt.Errorf("node: Replicas %d must be at least 1", c.Replicas))
	}
	if len(c.Join) > 0 || c.BootstrapExpect > 1 {
		errs = append(errs, errors.New("node: multi-node clusters (Join, BootstrapExpect > 1) are not implemented yet"))
	}
	if c.BootstrapExpect < 1 {
		errs = append(errs, errors.New("node: BootstrapExpect must be at least 1"))
	}
	return errors.Join(errs...)
}
