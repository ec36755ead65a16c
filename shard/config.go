package shard

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/shard/nodelog"
)

// Config configures one replica of a shard.
type Config struct {
	// ID is the shard; NodeID this replica's raft server ID (the node's name).
	ID     fsm.ShardID
	NodeID string
	// Dir holds the raft log and snapshots, e.g. <data-dir>/raft/<shard>.
	Dir string
	// LogStore is the raft log format of a replica created now (default
	// LogStoreWAL). A replica whose Dir already holds a log keeps its format.
	LogStore LogStore
	// SyncLeaderLog makes a leading replica sync its raft log before raft
	// sends the entries to the followers, hashicorp/raft's own order. By
	// default a raft-wal replica that leads writes its command entries ahead
	// of their sync and syncs them while the followers do (writeahead.go);
	// the other formats always sync first.
	SyncLeaderLog bool
	// NodeLog is the node's shared raft log, needed by replicas whose
	// format is LogStoreNode (nil: none may be opened or created).
	NodeLog *nodelog.Log
	// Store is the node's state store; Mux its shared raft port.
	Store *Store
	Mux   *Mux
	// Logger: default discard.
	Logger *slog.Logger
	// Metrics: the node's shard metrics (NewMetrics); nil records none.
	Metrics *Metrics

	// Raft timing. Defaults: heartbeat 500ms, election 1s, lease 250ms,
	// commit 50ms. Tests on loopback use shorter ones. CommitTimeout is how
	// long a leader with nothing new to send waits (a random time between
	// it and twice it) before it sends each follower an empty append, which
	// is how followers learn the commit index once writes stop; the
	// heartbeats do not carry it. A follower that has not learned it yet
	// hands linearizable reads to the leader, and its stale reads lag by up
	// to that wait. Every idle group pays for those appends: with 20ms a
	// node of an idle 3-node cluster used a third more CPU than with 50ms,
	// raft's own default (docs/benchmarks.md, "Idle CPU").
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration

	// MaxAppendEntries bounds entries per AppendEntries RPC and per FSM batch.
	// Default 64: 64, 256 and 1024 measured the same (group commit keeps few
	// entries in flight, each holding many commands), and 64 keeps catch-up
	// requests small (docs/benchmarks.md).
	MaxAppendEntries int
	// SnapshotInterval, SnapshotThreshold, TrailingLogs: as in raft.Config.
	// Defaults 30s, 16384 and 10240. A snapshot streams the shard's whole
	// state to disk, so taking them more often to keep the log shorter cost
	// a third of the write throughput when loading 1M keys (4096/2048:
	// 2,625 puts/s against 3,861; docs/benchmarks.md).
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	TrailingLogs      uint64
	// SnapshotsRetained: default 2.
	SnapshotsRetained int

	// MaxInflight bounds group-commit entries proposed but not yet applied;
	// with P concurrent proposers an entry carries about P/(MaxInflight+1)
	// commands. Default 1: through kvnode on 3 nodes (2 cores, CPU-bound),
	// fewer and larger entries beat more overlap: medians of 3 runs at 16,
	// 64 and 256 clients, 1321/3007/4557 puts/s against 972/2520/4169 with 2.
	MaxInflight int
	// MaxQueue bounds proposals waiting for a group; beyond it Propose fails
	// with ErrUnavailable. Default 8192.
	MaxQueue int
	// LogCacheEntries is how many recent raft log entries are kept in memory
	// for replication to followers. Entries carry whole group-commit batches,
	// so this bounds memory per shard (entries × batch size). Default 256.
	LogCacheEntries int
	// ReadTimeout bounds a read-index round when the caller's context has no
	// deadline. Default 5s.
	ReadTimeout time.Duration
}

// Store is the node-wide state store the replica's FSM lives in.
type Store = fsm.Store

// DefaultConfig returns a Config with every default filled in; the caller sets
// ID, NodeID, Dir, Store and Mux.
func DefaultConfig() Config {
	return Config{
		HeartbeatTimeout:   500 * time.Millisecond,
		ElectionTimeout:    1000 * time.Millisecond,
		LeaderLeaseTimeout: 250 * time.Millisecond,
		CommitTimeout:      50 * time.Millisecond,
		MaxAppendEntries:   64,
		SnapshotInterval:   30 * time.Second,
		SnapshotThreshold:  16384,
		TrailingLogs:       10240,
		SnapshotsRetained:  2,
		MaxInflight:        1,
		MaxQueue:           8192,
		ReadTimeout:        5 * time.Second,
		LogCacheEntries:    256,
		LogStore:           LogStoreWAL,
	}
}

// Validate reports every problem with c.
func (c Config) Validate() error {
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("shard: NodeID is required"))
	}
	if c.Dir == "" {
		errs = append(errs, errors.New("shard: Dir is required"))
	}
	if c.Store == nil {
		errs = append(errs, errors.New("shard: Store is required"))
	}
	if c.Mux == nil {
		errs = append(errs, errors.New("shard: Mux is required"))
	}
	if c.HeartbeatTimeout < 5*time.Millisecond || c.ElectionTimeout < c.HeartbeatTimeout {
		errs = append(errs, fmt.Errorf("shard: need 5ms <= HeartbeatTimeout (%v) <= ElectionTimeout (%v)", c.HeartbeatTimeout, c.ElectionTimeout))
	}
	if c.LeaderLeaseTimeout <= 0 || c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		errs = append(errs, fmt.Errorf("shard: LeaderLeaseTimeout %v must be in (0, HeartbeatTimeout]", c.LeaderLeaseTimeout))
	}
	if c.MaxAppendEntries < 1 || c.MaxAppendEntries > 1024 {
		errs = append(errs, fmt.Errorf("shard: MaxAppendEntries %d outside [1, 1024]", c.MaxAppendEntries))
	}
	if c.MaxInflight < 1 {
		errs = append(errs, errors.New("shard: MaxInflight must be at least 1"))
	}
	if c.MaxQueue < 1 {
		errs = append(errs, errors.New("shard: MaxQueue must be at least 1"))
	}
	if c.SnapshotThreshold == 0 || c.SnapshotInterval <= 0 || c.SnapshotsRetained < 1 {
		errs = append(errs, errors.New("shard: snapshot settings must be positive"))
	}
	if c.LogCacheEntries < 1 {
		errs = append(errs, errors.New("shard: LogCacheEntries must be at least 1"))
	}
	if _, err := ParseLogStore(string(c.LogStore)); err != nil {
		errs = append(errs, fmt.Errorf("shard: %w", err))
	}
	if c.ReadTimeout <= 0 {
		errs = append(errs, errors.New("shard: ReadTimeout must be positive"))
	}
	return errors.Join(errs...)
}
