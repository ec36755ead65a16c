package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairndb/cairn/bench/load"
	"github.com/cairndb/cairn/bench/report"
)

// fake answers every operation after 1 ms and counts compactions.
type fake struct {
	ops, compactions atomic.Int64
	prepared         []load.Workload
}

func (f *fake) Do(ctx context.Context, _ int, _ load.Op) error {
	f.ops.Add(1)
	select {
	case <-time.After(time.Millisecond):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (f *fake) Ready(context.Context) error { return nil }
func (f *fake) Prepare(_ context.Context, w load.Workload) error {
	f.prepared = append(f.prepared, w)
	return nil
}
func (f *fake) Close() error { return nil }
func (f *fake) Compact(context.Context) error {
	f.compactions.Add(1)
	return nil
}

// runCellRecord runs one cell against f and returns its single record and
// its human line.
func runCellRecord(t *testing.T, f *fake, c cellConfig) (report.Record, string) {
	t.Helper()
	var out, human bytes.Buffer
	if err := runOne(t.Context(), f, c, &out, &human); err != nil {
		t.Fatal(err)
	}
	recs, err := report.Read(&out)
	if err != nil || len(recs) != 1 {
		t.Fatalf("output %q: %v", out.String(), err)
	}
	return recs[0], human.String()
}

func TestRunOneRecord(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "wal"), make([]byte, 50_000), 0o600); err != nil {
		t.Fatal(err)
	}
	f := &fake{}
	c := cellConfig{
		system: "etcd", endpoints: 3, run: 2, preload: true,
		load:     load.Config{Workload: load.Mix, Clients: 4, Keys: 100, ValueSize: 16, Seed: 1, Duration: 200 * time.Millisecond},
		pids:     []int{os.Getpid()},
		dataDirs: []string{dir},
	}
	r, h := runCellRecord(t, f, c)
	if r.System != "etcd" || r.Workload != "mix" || r.Clients != 4 || r.Run != 2 || r.Endpoints != 3 || r.Keys != 100 {
		t.Errorf("record identity %+v", r)
	}
	if r.Ops < 100 || r.OpsPerSec < 500 || r.P50 < 1 || r.P99 < r.P50 || r.P999 < r.P99 || r.Errors != 0 {
		t.Errorf("record figures: %d ops %.0f/s p50 %v p99 %v p99.9 %v errors %d", r.Ops, r.OpsPerSec, r.P50, r.P99, r.P999, r.Errors)
	}
	if r.ByOp["get"].Ops == 0 || r.ByOp["put"].Ops == 0 || r.ByOp["get"].Ops+r.ByOp["put"].Ops != r.Ops {
		t.Errorf("by op %+v for %d ops", r.ByOp, r.Ops)
	}
	if r.ServerProcs != 1 || r.PeakRSSMax <= 0 || r.ServerCPUS < 0 {
		t.Errorf("server figures of this process: procs %d rss %v cpu %v", r.ServerProcs, r.PeakRSSMax, r.ServerCPUS)
	}
	if r.DiskDirs != 1 || r.DiskBytes < 50_000 || f.compactions.Load() != 1 {
		t.Errorf("disk %d bytes over %d dirs after %d compactions, want ≥ 50 kB, 1, 1", r.DiskBytes, r.DiskDirs, f.compactions.Load())
	}
	if len(f.prepared) != 1 || f.prepared[0] != load.Mix {
		t.Errorf("driver prepared for %v, want mix once, before the preload", f.prepared)
	}
	if f.ops.Load() < 100+int64(r.Ops) { // the preload's 100 puts, then the run
		t.Errorf("driver saw %d ops, want the preload's 100 and the run's %d", f.ops.Load(), r.Ops)
	}
	for _, want := range []string{"preloaded 100 keys", "etcd  mix", "4 clients", "ops/s", "p99.9", "CPU/op", "on disk"} {
		if !strings.Contains(h, want) {
			t.Errorf("human output lacks %q:\n%s", want, h)
		}
	}
}

// A load cell measures the preload and, settle later, the servers' memory.
func TestRunLoadCell(t *testing.T) {
	dir := t.TempDir()
	f := &fake{}
	c := cellConfig{
		system: "cairn", endpoints: 3, run: 1, preload: true, settle: 50 * time.Millisecond,
		load:     load.Config{Workload: load.Put, Clients: 4, Keys: 200, ValueSize: 16, Seed: 1},
		pids:     []int{os.Getpid()},
		dataDirs: []string{dir},
	}
	start := time.Now()
	r, h := runCellRecord(t, f, c)
	if r.Workload != report.LoadCell || r.Keys != 200 || r.Ops != 200 || f.ops.Load() != 200 || r.OpsPerSec <= 0 {
		t.Errorf("load record %+v after %d driver ops, want the 200 keys loaded and nothing else", r, f.ops.Load())
	}
	if r.ServerProcs != 1 || r.PeakRSSMax <= 0 || r.SettleS != 0.05 || time.Since(start) < c.settle {
		t.Errorf("server figures: procs %d peak %v settle %v s", r.ServerProcs, r.PeakRSSMax, r.SettleS)
	}
	if r.RSSMax <= 0 || r.RSSAnon <= 0 || r.RSSFile <= 0 || r.RSSAnon+r.RSSFile > r.RSSMax || r.RSSSum != r.RSSMax {
		t.Errorf("RSS after settling: max %v (anon %v, file %v), sum %v", r.RSSMax, r.RSSAnon, r.RSSFile, r.RSSSum)
	}
	if r.DiskDirs != 1 || f.compactions.Load() != 1 {
		t.Errorf("disk over %d dirs after %d compactions, want 1 and 1", r.DiskDirs, f.compactions.Load())
	}
	if !strings.Contains(h, "cairn load") || !strings.Contains(h, "s later RSS") || strings.Contains(h, "p50") {
		t.Errorf("human line: %s", h)
	}
}

func TestRunArgs(t *testing.T) {
	for _, args := range [][]string{
		{"--system", "mysql", "--addrs", "x:1"},
		{"--addrs", "x:1", "--workload", "delete"},
		{"--addrs", "x:1", "--duration", "0"},
		{"--workload", "put"}, // no --addrs
		{"--addrs", "x:1", "--pids", "12,abc"},
		{"leader", "--system", "cairn", "--addrs", "x:1"},
	} {
		if err := run(t.Context(), args); err == nil {
			t.Errorf("run(%q) did not fail", args)
		}
	}
	// --settle is checked before anything is sent.
	for _, args := range [][]string{
		{"--addrs", "x:1", "--settle", "1s"},                                  // not a load
		{"--addrs", "x:1", "--settle", "1s", "--preload", "--duration", "5s"}, // a load has no timed run
		{"--addrs", "x:1", "--settle", "-1s", "--preload", "--duration", "0"}, // negative
	} {
		if err := run(t.Context(), args); err == nil || !strings.Contains(err.Error(), "--settle") {
			t.Errorf("run(%q) = %v, want an error about --settle", args, err)
		}
	}
}
