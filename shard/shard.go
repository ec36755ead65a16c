package shard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/hashicorp/raft"
)

// Shard is this node's replica of one shard: a hashicorp/raft group whose
// state machine is an fsm.FSM.
type Shard struct {
	cfg    Config
	logger *slog.Logger
	raft   *raft.Raft
	fsm    *fsm.FSM
	logs   logStore      // the raft log and raft's stable store
	format LogStore      // the format of logs
	log    raft.LogStore // logs behind a cache
	trans  *raft.NetworkTransport

	raftLayer *Layer
	rpcLayer  *Layer
	rpcMu     sync.Mutex
	rpcIdle   map[string][]*bufConn

	proposals chan *proposal
	inflight  chan struct{}
	verifier  *verifier
	// confirmLat: how fast each follower answers term requests.
	confirmLat confirmLat
	// readIndexes shares read-index requests to the leader among
	// concurrent follower reads.
	readIndexes rounds[uint64]
	// leaderRounds and fetchedIndexes count the leadership checks run as
	// leader and the read indexes fetched from the leader, for reads.
	leaderRounds, fetchedIndexes atomic.Uint64
	// applyHold, when set (HoldApplies), stops the state machine's applies
	// until the channel is closed.
	applyHold atomic.Pointer[chan struct{}]
	// readyTerm is the term in which this replica, as leader, has applied an
	// entry of its own term; until then it serves no linearizable read.
	readyTerm    atomic.Uint64
	readyChanged chan struct{}
	readyMu      sync.Mutex
	membership   sync.Mutex
	snapInstalls atomic.Uint64
	// heldCommits counts appends to followers whose commit index was held
	// back to what this replica's log had synced (writeahead.go).
	heldCommits  atomic.Uint64
	bootRestored bool // Open restored the latest snapshot (state was behind)
	metrics      shardMetrics
	// plantedLocalReads is a planted bug for tests: linearizable reads are
	// served from local state without a read index. Tests set it to prove the
	// stale-read test can fail.
	plantedLocalReads bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	err    error
}

// Open starts the replica. A replica with no raft state waits to be
// bootstrapped (Bootstrap) or added to a group by its leader (AddReplica).
//
// Because restarts replay only the log tail (NoSnapshotRestoreOnStart), Open
// first checks that the FSM's durable applied index reaches the latest
// snapshot; if it does not (the snapshot was installed from a leader but the
// FSM state was lost), it restores that snapshot before raft starts.
func Open(cfg Config) (*Shard, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("shard", uint64(cfg.ID))
	s := &Shard{
		cfg:          cfg,
		logger:       logger,
		rpcIdle:      make(map[string][]*bufConn),
		proposals:    make(chan *proposal, cfg.MaxQueue),
		inflight:     make(chan struct{}, cfg.MaxInflight),
		readyChanged: make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.metrics = cfg.Metrics.forShard(cfg.ID)
	if err := s.open(); err != nil {
		s.teardown()
		return nil, fmt.Errorf("shard: open %v: %w", cfg.ID, err)
	}
	return s, nil
}

func (s *Shard) open() error {
	cfg := s.cfg
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return err
	}
	var err error
	if s.fsm, err = cfg.Store.Shard(cfg.ID); err != nil {
		return err
	}
	hlog := newHCLogger(s.logger)
	s.logs, s.format, err = openLogStore(cfg.Dir, cfg.LogStore, hlog, cfg.NodeLog, cfg.ID)
	if err != nil {
		return fmt.Errorf("open raft log: %w", err)
	}
	if err := s.removePartialSnapshots(); err != nil {
		return err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, cfg.SnapshotsRetained, hlog)
	if err != nil {
		return fmt.Errorf("open snapshot store: %w", err)
	}
	if err := s.catchUpFromSnapshot(snaps); err != nil {
		return err
	}
	cache, err := raft.NewLogCache(cfg.LogCacheEntries, s.logs)
	if err != nil {
		return err
	}
	if s.raftLayer, err = cfg.Mux.Listen(KindRaft, cfg.ID); err != nil {
		return err
	}
	if s.rpcLayer, err = cfg.Mux.Listen(KindRPC, cfg.ID); err != nil {
		return err
	}
	s.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  s.raftLayer,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		// No pipelined replication: when a follower answers a pipelined
		// append with failure, raft v1.8.0's sender can block for good on
		// the pipeline's unbuffered channel. Replication to that follower
		// then stops while its heartbeats keep it from calling an election,
		// and Shutdown waits forever (seen in CI; hashicorp/raft #612). One
		// request in flight is the synchronous path; group commit already
		// puts many commands in each entry.
		MaxRPCsInFlight: 1,
		Logger:          hlog,
	})
	notify := make(chan bool, 16)
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hlog
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.MaxAppendEntries = cfg.MaxAppendEntries
	rc.BatchApplyCh = true
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.NoSnapshotRestoreOnStart = true
	rc.NotifyCh = notify
	rc.NoLegacyTelemetry = true
	s.log = cache
	watched := newSendWatch(snaps, s.resnapshot)
	trans := serialTransport{NetworkTransport: s.trans}
	ws, writesAhead := s.logs.(*walStore)
	writesAhead = writesAhead && !cfg.SyncLeaderLog
	if writesAhead {
		trans.synced, trans.held = ws.syncedIndex, &s.heldCommits
	}
	s.raft, err = raft.NewRaft(rc, (*fsmAdapter)(s), cache, s.logs, watched, trans)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	if writesAhead {
		r := s.raft
		ws.writeAhead(func() bool { return r.State() == raft.Leader })
	}
	s.verifier = newVerifier(s.confirmLeadership, &s.leaderRounds)
	s.readIndexes.fn = func() (uint64, error) {
		s.fetchedIndexes.Add(1)
		return s.fetchReadIndex()
	}
	cfg.Metrics.track(s)
	s.wg.Add(4)
	go s.watchLeadership(notify)
	go s.runProposer()
	go s.serveRPC()
	go s.keepLease()
	return nil
}

// catchUpFromSnapshot is the boot-time check of NoSnapshotRestoreOnStart.
// Raft's index for a snapshot also counts entries the FSM never sees, so when
// the FSM is below it, the snapshot's own header says whether it is behind.
func (s *Shard) catchUpFromSnapshot(snaps *raft.FileSnapshotStore) error {
	list, err := snaps.List()
	if err != nil || len(list) == 0 {
		return err
	}
	latest := list[0]
	if s.fsm.Applied() >= latest.Index {
		return nil
	}
	_, rc, err := snaps.Open(latest.ID)
	if err != nil {
		return fmt.Errorf("open snapshot %s: %w", latest.ID, err)
	}
	holds, err := fsm.SnapshotApplied(rc)
	rc.Close()
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", latest.ID, err)
	}
	if s.fsm.Applied() >= holds {
		return nil
	}
	s.logger.Warn("state behind latest snapshot, restoring it", "applied_index", s.fsm.Applied(), "snapshot_index", latest.Index)
	_, rc, err = snaps.Open(latest.ID)
	if err != nil {
		return fmt.Errorf("open snapshot %s: %w", latest.ID, err)
	}
	s.bootRestored = true
	s.metrics.snapshot("restored_at_boot")
	return s.fsm.Restore(rc)
}

// removePartialSnapshots deletes snapshot directories that a crash left
// half-written; raft skips them but never removes them.
func (s *Shard) removePartialSnapshots() error {
	tmp, err := filepath.Glob(filepath.Join(s.cfg.Dir, "snapshots", "*.tmp"))
	if err != nil {
		return err
	}
	for _, dir := range tmp {
		s.logger.Info("removing partial snapshot", "path", dir)
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("remove partial snapshot: %w", err)
		}
	}
	return nil
}

// Bootstrap makes this replica the first member of a new group with the given
// replicas (which must include this one). It fails with raft.ErrCantBootstrap
// if the replica already has state.
func (s *Shard) Bootstrap(replicas []Replica) error {
	cfg := raft.Configuration{}
	for _, r := range replicas {
		cfg.Servers = append(cfg.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(r.ID), Address: raft.ServerAddress(r.Addr)})
	}
	if err := s.raft.BootstrapCluster(cfg).Error(); err != nil {
		return fmt.Errorf("shard: bootstrap %v: %w", s.cfg.ID, err)
	}
	return nil
}

// ID returns the shard's ID.
func (s *Shard) ID() fsm.ShardID { return s.cfg.ID }

// FSM returns the replica's state machine (for reads at a point the caller
// established, and for state hashes).
func (s *Shard) FSM() *fsm.FSM { return s.fsm }

// Snapshot takes a raft snapshot now (raft then compacts its log to
// TrailingLogs).
func (s *Shard) Snapshot() error {
	if err := s.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return fmt.Errorf("shard: snapshot %v: %w", s.cfg.ID, err)
	}
	return nil
}

// resnapshot takes a new snapshot when snapshot id keeps being sent in full
// (see sendWatch).
func (s *Shard) resnapshot(id string) error {
	if s.ctx.Err() != nil || s.raft.State() != raft.Leader {
		return nil
	}
	s.logger.Warn("snapshot sent in full repeatedly: taking a newer one", "snapshot", id, "sends", resendLimit)
	if err := s.Snapshot(); err != nil {
		s.logger.Warn("snapshot after repeated sends failed", "error", err)
		return err
	}
	s.metrics.snapshot("retaken_after_resends")
	return nil
}

// Close stops the replica without handing leadership away (see
// TransferLeadership for a graceful stop). Pending proposals end with
// ErrOutcomeUnknown or ErrClosed. It is idempotent.
func (s *Shard) Close() error {
	s.once.Do(func() { s.err = s.teardown() })
	return s.err
}

func (s *Shard) teardown() error {
	s.cancel()
	s.cfg.Metrics.untrack(s)
	var errs []error
	if s.raft != nil {
		errs = append(errs, s.raft.Shutdown().Error())
	}
	if s.trans != nil {
		errs = append(errs, s.trans.Close())
	}
	for _, l := range []*Layer{s.raftLayer, s.rpcLayer} {
		if l != nil {
			_ = l.Close()
		}
	}
	s.wg.Wait()
	s.closePeerConns()
	if s.logs != nil {
		errs = append(errs, s.logs.Close())
	}
	if s.fsm != nil {
		s.fsm.Close()
	}
	return errors.Join(errs...)
}

// watchLeadership makes a new leader ready for reads: it applies a barrier
// (an entry of the new term) and only then records the term as ready.
func (s *Shard) watchLeadership(notify <-chan bool) {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case leader := <-notify:
			if !leader {
				continue
			}
			for s.ctx.Err() == nil && s.raft.State() == raft.Leader {
				term := s.raft.CurrentTerm()
				err := s.await(s.raft.Barrier(s.cfg.ElectionTimeout))
				if err == nil && s.raft.CurrentTerm() == term && s.raft.State() == raft.Leader {
					s.setReady(term)
					s.logger.Info("leader ready", "term", term)
					break
				}
				if err != nil {
					s.logger.Debug("leader barrier", "error", err)
				}
			}
		}
	}
}

// await waits for a raft future, or for Close. Raft does not resolve futures
// still queued in its apply channel when it shuts down, so a goroutine that
// must stop on Close cannot block on Error alone; the helper goroutine left
// behind in that case is the price.
func (s *Shard) await(f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-s.ctx.Done():
		return raft.ErrRaftShutdown
	}
}

func (s *Shard) setReady(term uint64) {
	s.readyMu.Lock()
	s.readyTerm.Store(term)
	close(s.readyChanged)
	s.readyChanged = make(chan struct{})
	s.readyMu.Unlock()
}

// fsmAdapter counts snapshot installs and records metrics on the way to the
// FSM.
type fsmAdapter Shard

func (a *fsmAdapter) Apply(l *raft.Log) any {
	if err := a.awaitSynced(l.Index); err != nil {
		return err
	}
	return a.fsm.Apply(l)
}

func (a *fsmAdapter) ApplyBatch(logs []*raft.Log) []any {
	if hold := a.applyHold.Load(); hold != nil {
		select {
		case <-*hold:
		case <-a.ctx.Done():
		}
	}
	if len(logs) > 0 {
		if err := a.awaitSynced(logs[len(logs)-1].Index); err != nil {
			resp := make([]any, len(logs))
			for i := range resp {
				resp[i] = err
			}
			return resp
		}
	}
	start := time.Now()
	resp := a.fsm.ApplyBatch(logs)
	a.metrics.applied(time.Since(start))
	return resp
}

// awaitSynced returns once this replica's raft log is synced through index:
// an entry its leader wrote ahead of the sync is applied only then (see
// writeahead.go). On a follower, and with other log stores, it is at once.
// If a sync failed, the replica applies nothing more: it waits for the
// shard to close and returns the error.
func (a *fsmAdapter) awaitSynced(index uint64) error {
	ws, ok := a.logs.(*walStore)
	if !ok {
		return nil
	}
	if err := ws.waitSynced(context.Background(), index); err != nil {
		<-a.ctx.Done()
		return err
	}
	return nil
}

func (a *fsmAdapter) Snapshot() (raft.FSMSnapshot, error) {
	if ws, ok := a.logs.(*walStore); ok {
		// After a failed sync the FSM stops short of raft's applied index,
		// so a snapshot would claim entries it does not hold.
		if err := ws.synced.failed(); err != nil {
			return nil, err
		}
	}
	a.metrics.snapshot("taken")
	return a.fsm.Snapshot()
}

func (a *fsmAdapter) Restore(rc io.ReadCloser) error {
	a.snapInstalls.Add(1)
	a.metrics.snapshot("installed")
	return a.fsm.Restore(rc)
}
