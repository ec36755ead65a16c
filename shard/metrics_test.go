package shard

import (
	"testing"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// metricValue returns the value of the series name{labels} in reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue series
				}
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				return m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	metrics, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, 1, func(cfg *Config) { cfg.Metrics = metrics })
	c.bootstrap(1)
	r := c.leader(10 * time.Second)
	ctx := t.Context()
	for i := range 10 {
		mustOK(t)(r.shard.Propose(ctx, putCmd(string(rune('a'+i)), "v")))
	}
	res, err := r.shard.Propose(ctx, fsm.Command{Ops: []fsm.Op{fsm.Put([]byte("a"), nil).If(0)}})
	if err != nil || res.Code != fsm.VersionMismatch {
		t.Fatalf("conditional put on an existing key: %+v %v", res, err)
	}
	if _, err := r.shard.Propose(ctx, putCmd("", "v")); err == nil {
		t.Fatal("empty key accepted")
	}
	for range 3 {
		if _, _, err := r.shard.Get(ctx, []byte("a"), ReadOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := r.shard.Get(ctx, []byte("a"), ReadOptions{Consistency: Stale}); err != nil {
		t.Fatal(err)
	}
	if err := r.shard.Snapshot(); err != nil {
		t.Fatal(err)
	}

	shard := map[string]string{"shard": "1"}
	with := func(k, v string) map[string]string { return map[string]string{"shard": "1", k: v} }
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"cairn_shard_proposals_total", with("outcome", "applied"), 10},
		{"cairn_shard_proposals_total", with("outcome", "condition_failed"), 1},
		{"cairn_shard_proposals_total", with("outcome", "invalid"), 1},
		{"cairn_shard_propose_seconds", shard, 11},
		{"cairn_shard_reads_total", map[string]string{"shard": "1", "consistency": "linearizable", "outcome": "ok"}, 3},
		{"cairn_shard_reads_total", map[string]string{"shard": "1", "consistency": "stale", "outcome": "ok"}, 1},
		{"cairn_shard_snapshots_total", with("kind", "taken"), 1},
		{"cairn_shard_is_leader", shard, 1},
		{"cairn_shard_applied_index", shard, float64(r.shard.FSM().Applied())},
		{"cairn_shard_commit_index", shard, float64(r.shard.Status().CommitIndex)},
		{"cairn_shard_term", shard, float64(r.shard.Status().Term)},
		// Idle, the log is synced through its last entry; a lone replica
		// has no follower to hold a commit index back from.
		{"cairn_shard_synced_index", shard, float64(r.shard.raft.LastIndex())},
		{"cairn_shard_commit_index_held_total", shard, 0},
	} {
		if got := metricValue(t, reg, tc.name, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	// Every proposal went into an entry; group commit may have merged none
	// of these sequential ones, so there is one entry per proposal that got
	// that far.
	if got := metricValue(t, reg, "cairn_shard_entry_commands", shard); got != 11 {
		t.Errorf("entries recorded: %v, want 11", got)
	}
	if got := metricValue(t, reg, "cairn_shard_apply_batch_seconds", shard); got < 1 {
		t.Errorf("apply batches recorded: %v", got)
	}

	// A closed replica leaves the scrape.
	c.stop(r)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "cairn_shard_is_leader" && len(mf.GetMetric()) != 0 {
			t.Fatal("closed replica still reported")
		}
	}
}
