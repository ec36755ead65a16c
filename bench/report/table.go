package report

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/cairndb/cairn/bench/load"
)

// Row identifies one row of the table: a workload at a load.
type Row struct {
	Workload string
	Clients  int
	Rate     float64
}

// Load is the row's clients, and its rate in open loop.
func (r Row) Load() string {
	if r.Rate > 0 {
		return fmt.Sprintf("%d @ %s/s", r.Clients, thousands(r.Rate))
	}
	return strconv.Itoa(r.Clients)
}

// Cell is the medians of one system's runs of a row.
type Cell struct {
	Runs                      int
	OpsPerSec, P50, P99, P999 float64
	Errors, Dropped           float64
	FirstError                string // of the first run that had one
	Measured                  bool   // the server-side figures below are present
	CPUMsPerOp                float64
	PeakRSSMax                float64
	BytesPerOp                float64
	// Load cells: resident memory after settling (MB), SettleS seconds
	// after the load.
	SettleS, RSSMax, RSSAnon, RSSFile float64
	Keys                              float64 // the median of the runs' key counts
}

// Summary is every row's cells, by system.
type Summary struct {
	Rows  []Row
	Cells map[Row]map[string]Cell
	// Disk is the median over runs of the data on disk after the last cell
	// of each workload's cluster (in time), by workload and system.
	Disk map[string]map[string]float64
	// Settings seen in the records, for the preamble.
	Keys, ValueSizes, Durations, Endpoints []string
	Runs                                   int
	Dates                                  []string
}

// Summarize groups records into rows and takes the medians.
func Summarize(recs []Record) Summary {
	s := Summary{Cells: map[Row]map[string]Cell{}, Disk: map[string]map[string]float64{}}
	groups := map[Row]map[string][]Record{}
	// Disk: the record that ran last on each (run, system, workload) cluster.
	type cluster struct {
		run              int
		system, workload string
	}
	last := map[cluster]Record{}
	var keys, sizes, durs, eps, dates []string
	for _, r := range recs {
		row := Row{r.Workload, r.Clients, r.Rate}
		if groups[row] == nil {
			groups[row] = map[string][]Record{}
			s.Rows = append(s.Rows, row)
		}
		groups[row][r.System] = append(groups[row][r.System], r)
		c := cluster{r.Run, r.System, r.Workload}
		if l, ok := last[c]; r.DiskDirs > 0 && (!ok || r.Time >= l.Time) {
			last[c] = r
		}
		if r.Workload != LoadCell { // the preamble describes the main table
			keys = append(keys, strconv.Itoa(r.Keys))
			durs = append(durs, strconv.FormatFloat(math.Round(r.DurationS), 'f', -1, 64)+" s")
		}
		sizes = append(sizes, strconv.Itoa(r.ValueSize))
		eps = append(eps, strconv.Itoa(r.Endpoints))
		if len(r.Time) >= 10 {
			dates = append(dates, r.Time[:10])
		}
		s.Runs = max(s.Runs, r.Run)
	}
	uniq := func(v []string) []string { slices.Sort(v); return slices.Compact(v) }
	s.Keys, s.ValueSizes, s.Durations, s.Endpoints, s.Dates = uniq(keys), uniq(sizes), uniq(durs), uniq(eps), uniq(dates)
	slices.SortStableFunc(s.Rows, func(a, b Row) int {
		return cmp.Or(cmp.Compare(workloadOrder(a.Workload), workloadOrder(b.Workload)), strings.Compare(a.Workload, b.Workload),
			cmp.Compare(a.Clients, b.Clients), cmp.Compare(a.Rate, b.Rate))
	})
	for row, bySys := range groups {
		s.Cells[row] = map[string]Cell{}
		for sys, rs := range bySys {
			s.Cells[row][sys] = median(rs)
		}
	}
	disk := map[string]map[string][]float64{}
	for c, r := range last {
		if disk[c.workload] == nil {
			disk[c.workload] = map[string][]float64{}
		}
		disk[c.workload][c.system] = append(disk[c.workload][c.system], float64(r.DiskBytes))
	}
	for w, bySys := range disk {
		s.Disk[w] = map[string]float64{}
		for sys, v := range bySys {
			s.Disk[w][sys] = med(v)
		}
	}
	return s
}

func workloadOrder(w string) int {
	i := slices.Index(load.Workloads, load.Workload(w))
	if i < 0 {
		return 99
	}
	return i
}

func median(rs []Record) Cell {
	pick := func(f func(Record) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		return med(v)
	}
	c := Cell{
		Runs:      len(rs),
		OpsPerSec: pick(func(r Record) float64 { return r.OpsPerSec }),
		P50:       pick(func(r Record) float64 { return r.P50 }),
		P99:       pick(func(r Record) float64 { return r.P99 }),
		P999:      pick(func(r Record) float64 { return r.P999 }),
		Errors:    pick(func(r Record) float64 { return float64(r.Errors) }),
		Dropped:   pick(func(r Record) float64 { return float64(r.Dropped) }),
		Keys:      pick(func(r Record) float64 { return float64(r.Keys) }),
	}
	var measured []Record
	for _, r := range rs {
		if r.ServerProcs > 0 {
			measured = append(measured, r)
		}
		if c.FirstError == "" {
			c.FirstError = r.FirstError
		}
	}
	if len(measured) > 0 {
		rs = measured
		c.Measured = true
		c.CPUMsPerOp = pick(func(r Record) float64 { return r.CPUMsPerOp })
		c.PeakRSSMax = pick(func(r Record) float64 { return r.PeakRSSMax })
		c.BytesPerOp = pick(func(r Record) float64 { return r.BytesPerOp })
		c.SettleS = pick(func(r Record) float64 { return r.SettleS })
		c.RSSMax = pick(func(r Record) float64 { return r.RSSMax })
		c.RSSAnon = pick(func(r Record) float64 { return r.RSSAnon })
		c.RSSFile = pick(func(r Record) float64 { return r.RSSFile })
	}
	return c
}

func med(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// WriteTable writes the Markdown report of recs: a preamble with the
// settings, the table of rows × both systems, the data on disk per
// workload and a note on every cell that had errors.
func WriteTable(w io.Writer, recs []Record) error {
	s := Summarize(recs)
	var b strings.Builder
	fmt.Fprintf(&b, "# Cairn against etcd, %s\n\n", strings.Join(s.Dates, ", "))
	spread := strings.Join(s.Endpoints, "/") + " nodes"
	if len(s.Endpoints) == 1 && s.Endpoints[0] == "1" {
		spread = "one node (Cairn's first, etcd's leader)"
	}
	var rows, loads []Row
	for _, row := range s.Rows {
		if row.Workload == LoadCell {
			loads = append(loads, row)
		} else {
			rows = append(rows, row)
		}
	}
	if len(rows) == 0 {
		fmt.Fprintf(&b, "%s-byte values, the clients of each system spread over %s; each figure is the median of %s.",
			strings.Join(s.ValueSizes, "/"), spread, runs(s.Runs))
	} else {
		fmt.Fprintf(&b, "%s keys, %s-byte values, %s cells, the clients of each system spread over %s; "+
			"each figure is the median of %s (fewer where a cell says so). "+
			"Latencies in ms; CPU is the servers' utime+stime (summed over the server processes) per operation; "+
			"RSS is the largest peak (VmHWM) of one server process during the cell; "+
			"bytes/op is what the servers wrote to storage per operation (write_bytes less cancelled_write_bytes, summed); ratio is Cairn ops/s / etcd ops/s.",
			strings.Join(s.Keys, "/"), strings.Join(s.ValueSizes, "/"), strings.Join(s.Durations, "/"), spread, runs(s.Runs))
	}
	for _, r := range s.Rows {
		if r.Rate > 0 {
			b.WriteString(" Clients @ rate: open loop at that many operations per second in total, latency measured from each operation's due time.")
			break
		}
	}
	b.WriteString("\n\n")
	if len(rows) > 0 {
		b.WriteString("| workload | clients | Cairn ops/s | etcd ops/s | ratio | Cairn p50 / p99 | etcd p50 / p99 | Cairn CPU ms/op | etcd CPU ms/op | Cairn RSS MB | etcd RSS MB | Cairn bytes/op | etcd bytes/op |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	}
	var notes []string
	for _, row := range rows {
		cells := s.Cells[row]
		c, cok := cells[Cairn]
		e, eok := cells[Etcd]
		ratio := "–"
		if cok && eok && e.OpsPerSec > 0 {
			ratio = fmt.Sprintf("%.2f", c.OpsPerSec/e.OpsPerSec)
		}
		ops := func(ok bool, c Cell) string {
			if !ok {
				return "–"
			}
			if c.Runs < s.Runs {
				return fmt.Sprintf("%s (%s)", thousands(c.OpsPerSec), runs(c.Runs))
			}
			return thousands(c.OpsPerSec)
		}
		lat := func(ok bool, c Cell) string {
			if !ok {
				return "–"
			}
			return sig3(c.P50) + " / " + sig3(c.P99)
		}
		srv := func(ok bool, c Cell, f func(Cell) string) string {
			if !ok || !c.Measured {
				return "–"
			}
			return f(c)
		}
		cpu := func(c Cell) string { return sig3(c.CPUMsPerOp) }
		rss := func(c Cell) string { return thousands(c.PeakRSSMax) }
		bpo := func(c Cell) string { return thousands(c.BytesPerOp) }
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", row.Workload, row.Load(),
			ops(cok, c), ops(eok, e), ratio, lat(cok, c), lat(eok, e),
			srv(cok, c, cpu), srv(eok, e, cpu), srv(cok, c, rss), srv(eok, e, rss), srv(cok, c, bpo), srv(eok, e, bpo))
		for _, sys := range []string{Cairn, Etcd} {
			if x, ok := cells[sys]; ok && (x.Errors > 0 || x.Dropped > 0) {
				notes = append(notes, fmt.Sprintf("- %s, %s: median %s errors, %s dropped sends; first error: %s",
					row.Workload+" at "+row.Load(), sys, thousands(x.Errors), thousands(x.Dropped), cmp.Or(x.FirstError, "none")))
			}
		}
	}
	if len(loads) > 0 {
		writeLoads(&b, s, loads)
	}
	if len(s.Disk) > 0 {
		b.WriteString("\nData on disk after each workload's last cell (du of the 3 data directories, MB; etcd after compaction and " +
			"defragmentation, which leave each member's two preallocated 64 MB WAL files, the live segment and the next; Cairn as is):\n\n")
		b.WriteString("| workload | Cairn MB | etcd MB |\n|---|---:|---:|\n")
		ws := make([]string, 0, len(s.Disk))
		for w := range s.Disk {
			ws = append(ws, w)
		}
		slices.SortFunc(ws, func(a, b string) int {
			return cmp.Or(cmp.Compare(workloadOrder(a), workloadOrder(b)), strings.Compare(a, b))
		})
		for _, wl := range ws {
			mb := func(sys string) string {
				v, ok := s.Disk[wl][sys]
				if !ok {
					return "–"
				}
				return thousands(v / 1e6)
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", wl, mb(Cairn), mb(Etcd))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\nErrors:\n\n" + strings.Join(notes, "\n") + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeLoads writes the table of load cells: each system loaded with the
// same keys by the same clients, then left alone to settle.
func writeLoads(b *strings.Builder, s Summary, rows []Row) {
	b.WriteString("\nMemory after the same load (workload load: the preload of every key is the cell; RSS is VmRSS of the " +
		"largest server process that many seconds after it, split into anonymous memory and mapped files; peak is its VmHWM during the load; " +
		"CPU and bytes written are per key loaded; ratio is Cairn's RSS / etcd's):\n\n")
	b.WriteString("| keys | clients | settle s | Cairn load/s | etcd load/s | Cairn RSS MB (anon + file) | etcd RSS MB (anon + file) | RSS ratio | " +
		"Cairn peak MB | etcd peak MB | Cairn CPU ms/key | etcd CPU ms/key | Cairn bytes/key | etcd bytes/key |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, row := range rows {
		cells := s.Cells[row]
		c, cok := cells[Cairn]
		e, eok := cells[Etcd]
		one := c // keys and settle time, the same for both systems in a run of run.sh
		if !cok {
			one = e
		}
		f := func(ok bool, x Cell, v func(Cell) string) string {
			if !ok || !x.Measured {
				return "–"
			}
			return v(x)
		}
		rate := func(ok bool, x Cell) string {
			if !ok {
				return "–"
			}
			return thousands(x.OpsPerSec)
		}
		rss := func(x Cell) string {
			return fmt.Sprintf("%s (%s + %s)", thousands(x.RSSMax), thousands(x.RSSAnon), thousands(x.RSSFile))
		}
		ratio := "–"
		if cok && eok && c.Measured && e.Measured && e.RSSMax > 0 {
			ratio = fmt.Sprintf("%.2f", c.RSSMax/e.RSSMax)
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			thousands(one.Keys), row.Load(), sig3(one.SettleS), rate(cok, c), rate(eok, e),
			f(cok, c, rss), f(eok, e, rss), ratio,
			f(cok, c, func(x Cell) string { return thousands(x.PeakRSSMax) }), f(eok, e, func(x Cell) string { return thousands(x.PeakRSSMax) }),
			f(cok, c, func(x Cell) string { return sig3(x.CPUMsPerOp) }), f(eok, e, func(x Cell) string { return sig3(x.CPUMsPerOp) }),
			f(cok, c, func(x Cell) string { return thousands(x.BytesPerOp) }), f(eok, e, func(x Cell) string { return thousands(x.BytesPerOp) }))
	}
}

func runs(n int) string {
	if n == 1 {
		return "1 run"
	}
	return strconv.Itoa(n) + " runs"
}

// sig3 formats v with three significant digits (at most two decimals).
func sig3(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return thousands(v)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// thousands rounds v to an integer and groups its digits: 12,345.
func thousands(v float64) string {
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
