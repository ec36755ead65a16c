package node

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/shard"
	"github.com/cairndb/cairn/txn"
	"github.com/prometheus/client_golang/prometheus"
)

// httpMetrics are the HTTP API's metrics: requests by route, method and
// status code, and their latency.
type httpMetrics struct {
	requests *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
}

// nodeMetrics describe the node's view of the cluster, read at scrape time.
type nodeMetrics struct {
	n                         *Node
	members, ringEpoch, place *prometheus.Desc
	diskFree, diskLow         *prometheus.Desc
}

func (m nodeMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.members
	ch <- m.ringEpoch
	ch <- m.place
	ch <- m.diskFree
	ch <- m.diskLow
}

func (m nodeMetrics) Collect(ch chan<- prometheus.Metric) {
	if g := m.n.gossip; g != nil {
		ch <- prometheus.MustNewConstMetric(m.members, prometheus.GaugeValue, float64(len(g.Members())))
	}
	if v := m.n.view.Load(); v.hasLayout() {
		ch <- prometheus.MustNewConstMetric(m.ringEpoch, prometheus.GaugeValue, float64(v.ring.Epoch()))
		ch <- prometheus.MustNewConstMetric(m.place, prometheus.GaugeValue, float64(v.place.Epoch))
	}
	if free := m.n.disk.free.Load(); free >= 0 {
		ch <- prometheus.MustNewConstMetric(m.diskFree, prometheus.GaugeValue, float64(free))
	}
	low := 0
	if m.n.disk.low.Load() {
		low++
	}
	if others := m.n.disk.others.Load(); others != nil {
		low += len(*others)
	}
	ch <- prometheus.MustNewConstMetric(m.diskLow, prometheus.GaugeValue, float64(low))
}

// registerMetrics registers the shard, store, node and HTTP metrics with
// the configured registry (none without one).
func (n *Node) registerMetrics() error {
	reg := n.cfg.Registry
	if reg == nil {
		return nil
	}
	var err error
	if n.metrics, err = shard.NewMetrics(reg); err != nil {
		return fmt.Errorf("node: metrics: %w", err)
	}
	if err := n.store.RegisterMetrics(reg); err != nil {
		return fmt.Errorf("node: metrics: %w", err)
	}
	if n.txnMetrics, err = txn.NewMetrics(reg); err != nil {
		return fmt.Errorf("node: metrics: %w", err)
	}
	n.http = &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "http", Name: "requests_total",
			Help: "HTTP API requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "cairn", Subsystem: "http", Name: "request_seconds",
			Help:    "HTTP API request latency by route, method and status code.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16),
		}, []string{"route", "method", "code"}),
	}
	nm := nodeMetrics{
		n:         n,
		members:   prometheus.NewDesc("cairn_node_gossip_members", "Alive members this node sees through gossip, itself included.", nil, nil),
		ringEpoch: prometheus.NewDesc("cairn_node_ring_epoch", "Epoch of the ring this node routes with.", nil, nil),
		place:     prometheus.NewDesc("cairn_node_placement_epoch", "Epoch of the placement this node acts on.", nil, nil),
		diskFree:  prometheus.NewDesc("cairn_node_disk_free_bytes", "Free space on this node's data disk, measured every second.", nil, nil),
		diskLow:   prometheus.NewDesc("cairn_node_disk_low_nodes", "Nodes, this one included, whose data disk is below their minimum free space (--min-free-disk); while it is above 0, writes that add data are refused.", nil, nil),
	}
	cs := []prometheus.Collector{n.http.requests, n.http.seconds, nm,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "node", Name: "leader_balance_moves_total",
			Help: "Leadership transfers this node started to hand a data shard to a node leading at least two fewer.",
		}, func() float64 { return float64(n.balancer.moves.Load()) }),
	}
	if l := n.logs; l != nil {
		counter := func(name, help string, f func() uint64) prometheus.Collector {
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "cairn", Subsystem: "raft_log", Name: name, Help: help},
				func() float64 { return float64(f()) })
		}
		cs = append(cs,
			counter("syncs_total", "Batches the node's shared raft log wrote with one write and one sync.", func() uint64 { return l.Stats().Syncs }),
			counter("entries_total", "Raft entries appended to the node's shared raft log.", func() uint64 { return l.Stats().Entries }),
			counter("written_bytes_total", "Bytes written to the node's shared raft log.", func() uint64 { return l.Stats().Bytes }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "cairn", Subsystem: "raft_log", Name: "segments", Help: "Segment files of the node's shared raft log."},
				func() float64 { return float64(l.Segments()) }),
		)
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("node: metrics: %w", err)
		}
	}
	return nil
}

// instrument records h's requests under route. The series of each (method,
// code) are resolved once and cached: resolving labels on every request
// cost a measurable share of a read's CPU.
func (m *httpMetrics) instrument(route string, h http.HandlerFunc) http.Handler {
	if m == nil {
		return h
	}
	var cache sync.Map // method + " " + code → *httpSeries
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h(sw, r)
		key := r.Method + " " + strconv.Itoa(sw.code)
		v, ok := cache.Load(key)
		if !ok {
			method, code := strings.ToLower(r.Method), strconv.Itoa(sw.code)
			v, _ = cache.LoadOrStore(key, &httpSeries{
				requests: m.requests.WithLabelValues(route, method, code),
				seconds:  m.seconds.WithLabelValues(route, method, code),
			})
		}
		s := v.(*httpSeries)
		s.requests.Inc()
		s.seconds.Observe(time.Since(start).Seconds())
	})
}

type httpSeries struct {
	requests prometheus.Counter
	seconds  prometheus.Observer
}

// statusWriter remembers the status code a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func sortedIDs[V any](m map[fsm.ShardID]V) []fsm.ShardID {
	return slices.Sorted(maps.Keys(m))
}
