package shard

import (
	"strconv"
	"sync"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the Prometheus metrics of all shard replicas of one node. Create
// one per node with NewMetrics and pass it to every shard's Config; each
// series carries a "shard" label. Gauges (role, term, indexes) are read from
// the replicas at scrape time.
type Metrics struct {
	mu     sync.Mutex
	shards map[fsm.ShardID]*Shard

	proposals      *prometheus.CounterVec
	proposeSeconds *prometheus.HistogramVec
	entryCommands  *prometheus.HistogramVec
	applySeconds   *prometheus.HistogramVec
	reads          *prometheus.CounterVec
	snapshots      *prometheus.CounterVec

	isLeader, term, commitIndex, appliedIndex, lastContact, readRounds *prometheus.Desc
	syncedIndex, commitHeld                                            *prometheus.Desc
}

const metricsNamespace = "cairn"

// NewMetrics registers the shard metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	labels := []string{"shard"}
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(metricsNamespace, "shard", name), help, labels, nil)
	}
	m := &Metrics{
		shards: map[fsm.ShardID]*Shard{},
		proposals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "shard", Name: "proposals_total",
			Help: "Proposals by outcome: applied, condition_failed, rejected (nothing proposed), unknown (outcome unknown), invalid (bad input).",
		}, []string{"shard", "outcome"}),
		proposeSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Subsystem: "shard", Name: "propose_seconds",
			Help:    "Time from Propose to the applied result, for proposals that applied.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14),
		}, labels),
		entryCommands: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Subsystem: "shard", Name: "entry_commands",
			Help:    "Commands coalesced into one raft log entry by group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}, labels),
		applySeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Subsystem: "shard", Name: "apply_batch_seconds",
			Help:    "Time the state machine takes to apply one batch of log entries.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 14),
		}, labels),
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "shard", Name: "reads_total",
			Help: "Read barriers by consistency (linearizable, stale) and outcome (ok, error).",
		}, []string{"shard", "consistency", "outcome"}),
		snapshots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "shard", Name: "snapshots_total",
			Help: "Snapshots by kind: taken (of this replica's state), installed (from the leader), restored_at_boot, retaken_after_resends (a snapshot a follower kept refusing after installing it, see sendWatch).",
		}, []string{"shard", "kind"}),
		isLeader:     desc("is_leader", "1 if this replica leads the shard."),
		term:         desc("term", "Current raft term."),
		commitIndex:  desc("commit_index", "Raft commit index known to this replica."),
		appliedIndex: desc("applied_index", "Last index whose effects are in the state machine."),
		lastContact:  desc("last_contact_seconds", "Followers: seconds since the leader was last heard from (0 on the leader)."),
		syncedIndex:  desc("synced_index", "Last raft log index synced to this replica's disk (raft-wal replicas). On a leader writing ahead of its syncs it trails the commit index until the sync; nothing applies an entry before."),
		commitHeld:   desc("commit_index_held_total", "Appends this replica sent as leader whose commit index was held back to its synced index, because its own copy of the entries was not yet synced. This replica's count, reset when it restarts."),
		readRounds: prometheus.NewDesc(prometheus.BuildFQName(metricsNamespace, "shard", "read_rounds_total"),
			"Rounds linearizable reads waited for, each shared by the reads waiting then: leadership (a quorum check run as leader; also one per lease period while no read asks, which keeps stale reads' staleness known) and read_index (a read index fetched from the leader). This replica's count, reset when it restarts.",
			[]string{"shard", "kind"}, nil),
	}
	for _, c := range []prometheus.Collector{m.proposals, m.proposeSeconds, m.entryCommands, m.applySeconds, m.reads, m.snapshots, m} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Describe implements prometheus.Collector for the scrape-time gauges.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.isLeader, m.term, m.commitIndex, m.appliedIndex, m.lastContact, m.readRounds, m.syncedIndex, m.commitHeld} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	shards := make([]*Shard, 0, len(m.shards))
	for _, s := range m.shards {
		shards = append(shards, s)
	}
	m.mu.Unlock()
	for _, s := range shards {
		id := strconv.FormatUint(uint64(s.cfg.ID), 10)
		leader := 0.0
		if s.raft.State() == raft.Leader {
			leader = 1
		}
		contact := 0.0
		if lc := s.raft.LastContact(); leader == 0 && !lc.IsZero() {
			contact = time.Since(lc).Seconds()
		}
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, id)
		}
		gauge(m.isLeader, leader)
		gauge(m.term, float64(s.raft.CurrentTerm()))
		gauge(m.commitIndex, float64(s.raft.CommitIndex()))
		gauge(m.appliedIndex, float64(s.fsm.Applied()))
		gauge(m.lastContact, contact)
		if ws, ok := s.logs.(*walStore); ok {
			gauge(m.syncedIndex, float64(ws.syncedIndex()))
		}
		ch <- prometheus.MustNewConstMetric(m.commitHeld, prometheus.CounterValue, float64(s.heldCommits.Load()), id)
		leadership, fetched := s.ReadRounds()
		ch <- prometheus.MustNewConstMetric(m.readRounds, prometheus.CounterValue, float64(leadership), id, "leadership")
		ch <- prometheus.MustNewConstMetric(m.readRounds, prometheus.CounterValue, float64(fetched), id, "read_index")
	}
}

// shardMetrics is one replica's view of Metrics, with its series resolved
// once (label lookups per operation cost more than the counting); its
// methods are no-ops when the node has no metrics.
type shardMetrics struct {
	m              *Metrics
	id             string
	proposals      map[string]prometheus.Counter // by outcome
	proposeSeconds prometheus.Observer
	entryCommands  prometheus.Observer
	applySeconds   prometheus.Observer
	reads          [2][2]prometheus.Counter // [consistency][outcome: ok, error]
}

var proposalOutcomes = []string{"applied", "condition_failed", "rejected", "unknown", "invalid"}

func (m *Metrics) forShard(id fsm.ShardID) shardMetrics {
	if m == nil {
		return shardMetrics{}
	}
	l := strconv.FormatUint(uint64(id), 10)
	sm := shardMetrics{
		m:              m,
		id:             l,
		proposals:      map[string]prometheus.Counter{},
		proposeSeconds: m.proposeSeconds.WithLabelValues(l),
		entryCommands:  m.entryCommands.WithLabelValues(l),
		applySeconds:   m.applySeconds.WithLabelValues(l),
	}
	for _, o := range proposalOutcomes {
		sm.proposals[o] = m.proposals.WithLabelValues(l, o)
	}
	for c, consistency := range []string{"linearizable", "stale"} {
		for o, outcome := range []string{"ok", "error"} {
			sm.reads[c][o] = m.reads.WithLabelValues(l, consistency, outcome)
		}
	}
	return sm
}

// track adds a running replica to the scrape-time gauges.
func (m *Metrics) track(s *Shard) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.shards[s.cfg.ID] = s
	m.mu.Unlock()
}

func (m *Metrics) untrack(s *Shard) {
	if m == nil {
		return
	}
	m.mu.Lock()
	if m.shards[s.cfg.ID] == s {
		delete(m.shards, s.cfg.ID)
	}
	m.mu.Unlock()
}

func (sm shardMetrics) proposal(outcome string, took time.Duration) {
	if sm.m == nil {
		return
	}
	sm.proposals[outcome].Inc()
	if outcome == "applied" || outcome == "condition_failed" {
		sm.proposeSeconds.Observe(took.Seconds())
	}
}

func (sm shardMetrics) entry(commands int) {
	if sm.m != nil {
		sm.entryCommands.Observe(float64(commands))
	}
}

func (sm shardMetrics) applied(took time.Duration) {
	if sm.m != nil {
		sm.applySeconds.Observe(took.Seconds())
	}
}

func (sm shardMetrics) read(c Consistency, err error) {
	if sm.m == nil {
		return
	}
	consistency, outcome := 0, 0
	if c == Stale {
		consistency = 1
	}
	if err != nil {
		outcome = 1
	}
	sm.reads[consistency][outcome].Inc()
}

func (sm shardMetrics) snapshot(kind string) {
	if sm.m != nil {
		sm.m.snapshots.WithLabelValues(sm.id, kind).Inc()
	}
}
