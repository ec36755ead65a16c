package fsm

import "github.com/prometheus/client_golang/prometheus"

// RegisterMetrics exports the store's Badger sizes, read at scrape time:
// cairn_store_lsm_bytes and cairn_store_vlog_bytes. Badger measures its
// files when it opens and then once a minute, so they lag by up to a minute.
// With TableRelease on, also cairn_store_page_release_files_total and
// cairn_store_page_release_bytes_total.
func (s *Store) RegisterMetrics(reg prometheus.Registerer) error {
	return reg.Register(storeCollector{s})
}

var (
	lsmBytesDesc = prometheus.NewDesc("cairn_store_lsm_bytes",
		"Bytes in Badger's LSM tree (keys, values below the value threshold and pointers to the others, of every shard replica on the node).", nil, nil)
	vlogBytesDesc = prometheus.NewDesc("cairn_store_vlog_bytes",
		"Bytes in Badger's value log (values at or above the value threshold; shrunk by value-log GC).", nil, nil)
	releasedFilesDesc = prometheus.NewDesc("cairn_store_page_release_files_total",
		"Table and value-log files whose pages the node handed back to the kernel after Badger wrote them (--table-release-interval).", nil, nil)
	releasedBytesDesc = prometheus.NewDesc("cairn_store_page_release_bytes_total",
		"Bytes of the mapped ranges handed back: those files, and the pages snapshots and prefix deletes brought in (an upper bound on the memory released: only resident pages are).", nil, nil)
)

type storeCollector struct{ s *Store }

func (c storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lsmBytesDesc
	ch <- vlogBytesDesc
	if c.s.releaser != nil {
		ch <- releasedFilesDesc
		ch <- releasedBytesDesc
	}
}

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	lsm, vlog := c.s.Size()
	ch <- prometheus.MustNewConstMetric(lsmBytesDesc, prometheus.GaugeValue, float64(lsm))
	ch <- prometheus.MustNewConstMetric(vlogBytesDesc, prometheus.GaugeValue, float64(vlog))
	if r := c.s.releaser; r != nil {
		ch <- prometheus.MustNewConstMetric(releasedFilesDesc, prometheus.CounterValue, float64(r.files.Load()))
		ch <- prometheus.MustNewConstMetric(releasedBytesDesc, prometheus.CounterValue, float64(r.bytes.Load()))
	}
}
