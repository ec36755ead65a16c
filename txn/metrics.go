package txn

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are a node's transaction metrics. Create one per node with
// NewMetrics and pass it in Config.Metrics; a nil *Metrics records nothing.
type Metrics struct {
	txns    *prometheus.CounterVec
	phase   *prometheus.HistogramVec
	intents *prometheus.GaugeVec
	oldest  *prometheus.GaugeVec
}

// NewMetrics registers the transaction metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		txns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "txn", Name: "total",
			Help: "Transactions by kind (one_shard, cross_shard, read_only) and outcome (committed, conflict, unknown, error).",
		}, []string{"kind", "outcome"}),
		phase: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "cairn", Subsystem: "txn", Name: "phase_seconds",
			Help:    "Time of the steps of cross-shard transactions: read, prepare (all participants), decide, resolve (all participants).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"phase"}),
		intents: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "cairn", Subsystem: "txn", Name: "intents",
			Help: "Intents (locks of cross-shard transactions) on the replicas this node leads, as of the last resolver round.",
		}, []string{"shard"}),
		oldest: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "cairn", Subsystem: "txn", Name: "oldest_intent_seconds",
			Help: "Age of the oldest intent on the replicas this node leads, as of the last resolver round (0: none).",
		}, []string{"shard"}),
	}
	for _, c := range []prometheus.Collector{m.txns, m.phase, m.intents, m.oldest} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Done counts a finished transaction.
func (m *Metrics) Done(kind, outcome string) {
	if m != nil {
		m.txns.WithLabelValues(kind, outcome).Inc()
	}
}

func (m *Metrics) observe(phase string, since time.Time) {
	if m != nil {
		m.phase.WithLabelValues(phase).Observe(time.Since(since).Seconds())
	}
}

// Intents records what the resolver saw on a shard: how many intents and
// the age of the oldest.
func (m *Metrics) Intents(shard string, n int, oldest time.Duration) {
	if m != nil {
		m.intents.WithLabelValues(shard).Set(float64(n))
		m.oldest.WithLabelValues(shard).Set(oldest.Seconds())
	}
}
