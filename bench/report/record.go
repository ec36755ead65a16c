// Package report holds the side-by-side benchmark's result record (one JSON
// line per cell and run) and turns a file of them into a Markdown table and
// PNG plots.
//
// A cell is (workload, clients, rate, system); every figure of a table row
// is the median over the runs of that cell, taken figure by figure (so the
// median ops/s and the median p99 may come from different runs). With an
// even number of runs the median is the mean of the middle two.
package report

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Systems, as Record.System names them, in the order reports show them.
const (
	Cairn = "cairn"
	Etcd  = "etcd"
)

// Latency is the latency summary of one set of operations, in ms.
type Latency struct {
	Ops  int64   `json:"ops"`
	P50  float64 `json:"p50_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
}

// Record is one run of one cell, as sidebyside prints it.
type Record struct {
	Time      string  `json:"time"`   // start of the timed run, RFC 3339, UTC
	System    string  `json:"system"` // Cairn or Etcd
	Workload  string  `json:"workload"`
	Clients   int     `json:"clients"`
	Rate      float64 `json:"rate,omitempty"` // open loop: target ops/s; 0: closed loop
	Run       int     `json:"run"`
	Keys      int     `json:"keys"`
	ValueSize int     `json:"value_size"`
	Seed      uint64  `json:"seed"`
	Endpoints int     `json:"endpoints"` // nodes or members the clients were spread over

	DurationS  float64            `json:"duration_s"` // measured length of the timed run
	Ops        int64              `json:"ops"`        // successful operations
	OpsPerSec  float64            `json:"ops_per_sec"`
	Errors     int64              `json:"errors"`
	FirstError string             `json:"first_error,omitempty"`
	P50        float64            `json:"p50_ms"` // over every successful operation
	P99        float64            `json:"p99_ms"`
	P999       float64            `json:"p999_ms"`
	ByOp       map[string]Latency `json:"by_op,omitempty"` // per kind, when the workload mixes kinds

	// Open loop only.
	Scheduled    int64   `json:"scheduled,omitempty"`
	Dropped      int64   `json:"dropped,omitempty"`
	Late         int64   `json:"late,omitempty"`
	MaxSendLagMs float64 `json:"max_send_lag_ms,omitempty"`

	ClientCPUS float64 `json:"client_cpu_s"` // the load generator's own CPU time

	// Server side, over ServerProcs processes (0: not measured).
	ServerProcs int     `json:"server_procs"`
	ServerCPUS  float64 `json:"server_cpu_s,omitempty"`    // utime+stime summed
	CPUMsPerOp  float64 `json:"cpu_ms_per_op,omitempty"`   // ServerCPUS / Ops, in ms
	PeakRSSMax  float64 `json:"peak_rss_max_mb,omitempty"` // largest VmHWM of one process during the run, MB
	PeakRSSSum  float64 `json:"peak_rss_sum_mb,omitempty"` // VmHWM summed, MB
	WriteBytes  int64   `json:"write_bytes,omitempty"`     // /proc/<pid>/io write_bytes, summed
	// CancelledBytes: cancelled_write_bytes, summed: pages counted in
	// WriteBytes that were dropped unwritten because their file was
	// deleted or truncated first. Results from before
	// bench/results/2026-11-27-written lack it, and their bytes per op
	// count those pages as written.
	CancelledBytes int64   `json:"cancelled_write_bytes,omitempty"`
	BytesPerOp     float64 `json:"bytes_per_op,omitempty"` // (WriteBytes - CancelledBytes) / Ops

	// Disk after the run, over DiskDirs data directories (0: not measured);
	// etcd's after a compaction and defragmentation.
	DiskDirs  int   `json:"disk_dirs"`
	DiskBytes int64 `json:"disk_bytes,omitempty"`

	// A load cell (Workload LoadCell) measures the preload itself: Ops are
	// the keys written and the server figures above cover the load. Then,
	// SettleS seconds after it, the servers' resident memory (MB): the
	// largest VmRSS of one process, that process's anonymous and
	// file-backed parts, and VmRSS summed.
	SettleS float64 `json:"settle_s,omitempty"`
	RSSMax  float64 `json:"rss_max_mb,omitempty"`
	RSSAnon float64 `json:"rss_anon_mb,omitempty"`
	RSSFile float64 `json:"rss_file_mb,omitempty"`
	RSSSum  float64 `json:"rss_sum_mb,omitempty"`
}

// LoadCell is the workload name of a load cell's records: memory after
// loading Keys keys (sidebyside --preload --duration 0 --settle D).
const LoadCell = "load"

// Read parses a JSON-lines file of records; blank lines are skipped.
func Read(r io.Reader) ([]Record, error) {
	var out []Record
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var rec Record
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			return nil, fmt.Errorf("report: line %d: %w", n, err)
		}
		out = append(out, rec)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	return out, nil
}
