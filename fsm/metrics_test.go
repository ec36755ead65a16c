package fsm_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairndb/cairn/fsm"
)

// Badger measures its files when it opens and then once a minute, so the
// test writes, reopens, and compares the export with what the store reports.
func TestStoreMetrics(t *testing.T) {
	dir := t.TempDir()
	s, err := fsm.Open(testOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	f, err := s.Shard(1)
	if err != nil {
		t.Fatal(err)
	}
	// Values over the value threshold go to the value log.
	for i := range 50 {
		apply(t, f, fsm.Command{Ops: []fsm.Op{fsm.Put(fmt.Appendf(nil, "k%d", i), bytes.Repeat([]byte{'v'}, 8<<10))}})
	}
	f.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir)
	got := storeMetrics(t, s)
	lsm, vlog := s.Size()
	if vlog < 50*8<<10 {
		t.Fatalf("store reports a value log of %d bytes after 400 KiB of large values", vlog)
	}
	if got["cairn_store_lsm_bytes"] != float64(lsm) || got["cairn_store_vlog_bytes"] != float64(vlog) {
		t.Fatalf("exported %v, store reports lsm %d vlog %d", got, lsm, vlog)
	}
}

// storeMetrics gathers the metrics s exports, by name: the value of a gauge
// or of a counter.
func storeMetrics(t testing.TB, s *fsm.Store) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := s.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		got[mf.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue() // one of them is nil
	}
	return got
}
