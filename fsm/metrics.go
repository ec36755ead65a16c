package fsm

import "github.com/prometheus/client_golang/prometheus"

// RegisterMetrics exports the store's Badger sizes, read at scrape time:
// cairn_store_lsm_bytes and cairn_store_vlog_bytes. Badger measures its
// files when it opens and then once a minute, so they lag by up to a minute.
func (s *Store) RegisterMetrics(reg prometheus.Registerer) error {
	return reg.Register(storeCollector{s})
}

var (
	lsmBytesDesc = prometheus.NewDesc("cairn_store_lsm_bytes",
		"Bytes in Badger's LSM tree (keys, values below the value threshold and pointers to the others, of every shard replica on the node).", nil, nil)
	vlogBytesDesc = prometheus.NewDesc("cairn_store_vlog_bytes",
		"Bytes in Badger's value log (values at or above the value threshold; shrunk by value-log GC).", nil, nil)
)

type storeCollector struct{ s *Store }

func (c storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lsmBytesDesc
	ch <- vlogBytesDesc
}

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	lsm, vlog := c.s.Size()
	ch <- prometheus.MustNewConstMetric(lsmBytesDesc, prometheus.GaugeValue, float64(lsm))
	ch <- prometheus.MustNewConstMetric(vlogBytesDesc, prometheus.GaugeValue, float64(vlog))
}
