package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/cairndb/cairn/bench/load"
	"github.com/cairndb/cairn/bench/measure"
	"github.com/cairndb/cairn/bench/report"
)

// cellConfig is one invocation of sidebyside.
type cellConfig struct {
	system    string
	endpoints int
	load      load.Config
	preload   bool
	run       int
	pids      []int    // server processes to measure (none: no server figures)
	dataDirs  []string // data directories to measure after the run (none: no disk figure)
	// settle > 0 makes this a load cell: the preload is measured, and the
	// servers' resident memory is sampled settle after it.
	settle time.Duration
}

// runOne preloads if asked, runs the timed cell and prints its record as
// JSON on out and as a human line on human.
func runOne(ctx context.Context, d driver, c cellConfig, out, human io.Writer) error {
	if err := d.Prepare(ctx, c.load.Workload); err != nil {
		return fmt.Errorf("prepare %s: %w", c.load.Workload, err)
	}
	if c.settle > 0 {
		return runLoadCell(ctx, d, c, out, human)
	}
	if c.preload {
		start := time.Now()
		n, err := load.Preload(ctx, d, c.load.Workload, c.load.Clients, c.load.Keys, c.load.ValueSize, c.load.Seed)
		if err != nil {
			return fmt.Errorf("preload: %w", err)
		}
		took := time.Since(start)
		fmt.Fprintf(human, "%s: preloaded %d keys in %v (%.0f puts/s)\n", c.system, n, took.Round(time.Millisecond), float64(n)/took.Seconds())
		if c.load.Duration == 0 {
			return nil
		}
	}
	before, err := startMeasuring(c.pids)
	if err != nil {
		return err
	}
	cpu0 := selfCPU()
	startAt := time.Now().UTC()
	res, err := load.Run(ctx, d, c.load)
	if err != nil {
		return err
	}
	after, err := measure.Snapshot(c.pids)
	if err != nil {
		return fmt.Errorf("after the run (did a server exit?): %w", err)
	}
	if ctx.Err() != nil {
		return ctx.Err() // interrupted: no record
	}
	rec := record(c, res, startAt)
	rec.ClientCPUS = (selfCPU() - cpu0).Seconds()
	if len(c.pids) > 0 {
		setServer(&rec, len(c.pids), measure.Between(before, after))
	}
	return finish(ctx, d, c, rec, out, human)
}

// startMeasuring resets the processes' peak RSS and samples their counters.
func startMeasuring(pids []int) ([]measure.Sample, error) {
	for _, pid := range pids {
		if err := measure.ResetPeak(pid); err != nil {
			return nil, err
		}
	}
	return measure.Snapshot(pids)
}

// runLoadCell measures the preload of c.load.Keys keys as the cell, then
// waits c.settle and samples the servers' resident memory.
func runLoadCell(ctx context.Context, d driver, c cellConfig, out, human io.Writer) error {
	before, err := startMeasuring(c.pids)
	if err != nil {
		return err
	}
	cpu0 := selfCPU()
	startAt := time.Now().UTC()
	n, err := load.Preload(ctx, d, c.load.Workload, c.load.Clients, c.load.Keys, c.load.ValueSize, c.load.Seed)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	took := time.Since(startAt)
	after, err := measure.Snapshot(c.pids)
	if err != nil {
		return fmt.Errorf("after the load (did a server exit?): %w", err)
	}
	rec := report.Record{
		Time: startAt.Format(time.RFC3339), System: c.system, Workload: report.LoadCell,
		Clients: c.load.Clients, Run: c.run, Keys: c.load.Keys, ValueSize: c.load.ValueSize,
		Seed: c.load.Seed, Endpoints: c.endpoints,
		DurationS: took.Seconds(), Ops: n, OpsPerSec: float64(n) / took.Seconds(),
		ClientCPUS: (selfCPU() - cpu0).Seconds(), SettleS: c.settle.Seconds(),
	}
	if len(c.pids) > 0 {
		setServer(&rec, len(c.pids), measure.Between(before, after))
	}
	select {
	case <-time.After(c.settle):
	case <-ctx.Done():
		return ctx.Err()
	}
	const mb = 1 << 20
	for _, pid := range c.pids {
		r, err := measure.ReadRSS(pid)
		if err != nil {
			return fmt.Errorf("after settling (did a server exit?): %w", err)
		}
		rec.RSSSum += float64(r.Total) / mb
		if v := float64(r.Total) / mb; v > rec.RSSMax {
			rec.RSSMax, rec.RSSAnon, rec.RSSFile = v, float64(r.Anon)/mb, float64(r.File)/mb
		}
	}
	return finish(ctx, d, c, rec, out, human)
}

// finish measures the disk if asked and prints the record.
func finish(ctx context.Context, d driver, c cellConfig, rec report.Record, out, human io.Writer) error {
	var err error
	if len(c.dataDirs) > 0 {
		if cp, ok := d.(compacter); ok {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			err := cp.Compact(cctx)
			cancel()
			if err != nil {
				return err
			}
		}
		if rec.DiskBytes, err = measure.DiskUsage(c.dataDirs); err != nil {
			return err
		}
		rec.DiskDirs = len(c.dataDirs)
	}
	fmt.Fprintln(human, humanLine(rec))
	return json.NewEncoder(out).Encode(rec)
}

// record turns a load.Result into the cell's record (client-side figures).
func record(c cellConfig, res load.Result, start time.Time) report.Record {
	all := load.Summarize(res.All())
	rec := report.Record{
		Time: start.Format(time.RFC3339), System: c.system, Workload: string(c.load.Workload),
		Clients: c.load.Clients, Rate: c.load.Rate, Run: c.run, Keys: c.load.Keys, ValueSize: c.load.ValueSize,
		Seed: c.load.Seed, Endpoints: c.endpoints,
		DurationS: res.Elapsed.Seconds(), Ops: int64(all.Ops), OpsPerSec: float64(all.Ops) / res.Elapsed.Seconds(),
		Errors: res.Errors,
		P50:    load.Millis(all.P50), P99: load.Millis(all.P99), P999: load.Millis(all.P999),
		Scheduled: res.Scheduled, Dropped: res.Dropped, Late: res.Late, MaxSendLagMs: load.Millis(res.MaxSendLag),
	}
	if res.FirstError != nil {
		rec.FirstError = res.FirstError.Error()
	}
	if len(res.Latencies) > 1 {
		rec.ByOp = map[string]report.Latency{}
		for k, l := range res.Latencies {
			s := load.Summarize(l)
			rec.ByOp[k.String()] = report.Latency{Ops: int64(s.Ops), P50: load.Millis(s.P50), P99: load.Millis(s.P99), P999: load.Millis(s.P999)}
		}
	}
	return rec
}

func setServer(rec *report.Record, procs int, u measure.Usage) {
	const mb = 1 << 20
	rec.ServerProcs = procs
	rec.ServerCPUS = u.CPU.Seconds()
	rec.WriteBytes = u.WriteBytes
	rec.CancelledBytes = u.CancelledBytes
	rec.PeakRSSMax = float64(u.PeakRSSMax) / mb
	rec.PeakRSSSum = float64(u.PeakRSSSum) / mb
	if rec.Ops > 0 {
		rec.CPUMsPerOp = rec.ServerCPUS * 1000 / float64(rec.Ops)
		rec.BytesPerOp = float64(u.Written()) / float64(rec.Ops)
	}
}

func humanLine(r report.Record) string {
	load := fmt.Sprintf("%d clients", r.Clients)
	if r.Rate > 0 {
		load = fmt.Sprintf("%d clients @ %.0f/s", r.Clients, r.Rate)
	}
	s := fmt.Sprintf("%-5s %-9s %-18s %5.1fs %9d ops %9.0f ops/s %5d errors", r.System, r.Workload, load, r.DurationS, r.Ops, r.OpsPerSec, r.Errors)
	if r.Workload != report.LoadCell { // a load has no latencies
		s += fmt.Sprintf("  p50 %7.2f  p99 %7.2f  p99.9 %7.2f ms", r.P50, r.P99, r.P999)
	}
	if r.Rate > 0 {
		s += fmt.Sprintf("  (%d scheduled, %d dropped, %d late, max lag %.1f ms)", r.Scheduled, r.Dropped, r.Late, r.MaxSendLagMs)
	}
	if r.ServerProcs > 0 {
		s += fmt.Sprintf("  | server %.3f ms CPU/op, peak RSS %.0f MB (max node), %.0f B written/op", r.CPUMsPerOp, r.PeakRSSMax, r.BytesPerOp)
	}
	if r.SettleS > 0 {
		s += fmt.Sprintf("; %.0f s later RSS %.0f MB (max node: %.0f anon, %.0f file)", r.SettleS, r.RSSMax, r.RSSAnon, r.RSSFile)
	}
	if r.DiskDirs > 0 {
		s += fmt.Sprintf(", %.1f MB on disk", float64(r.DiskBytes)/1e6)
	}
	if r.FirstError != "" {
		s += "\n  first error: " + r.FirstError
	}
	return s
}

// selfCPU is this process's user+system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
