package jepsen

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Workload names.
const (
	Register = "register"
	Set      = "set"
	Bank     = "bank"
	Append   = "append"
	// DocSet is the set workload on documents; Unique inserts one value
	// concurrently into a unique index.
	DocSet = "docset"
	Unique = "unique"
)

// AllWorkloads lists every workload.
var AllWorkloads = []string{Register, Set, Bank, Append, DocSet, Unique}

// Nemesis names.
const (
	NemesisPartition = "partition"
	NemesisKill      = "kill"
	NemesisPause     = "pause"
	NemesisNetem     = "netem"
	NemesisTransfer  = "transfer"
	NemesisMove      = "move"
	NemesisDisk      = "disk"
)

// AllNemeses lists every nemesis in a stable order.
var AllNemeses = []string{NemesisPartition, NemesisKill, NemesisPause, NemesisNetem, NemesisTransfer, NemesisMove, NemesisDisk}

// The disk nemesis: every node's data directory is a tmpfs of diskSize
// bytes, nodes keep diskMinFree free (--min-free-disk), and a fault leaves
// diskLeave free on one node.
const (
	diskSize    = 1 << 30
	diskMinFree = 256 << 20
	diskLeave   = 128 << 20
)

// Options describe one run.
type Options struct {
	Workloads []string      `json:"workloads"`   // any of AllWorkloads, several at once
	Nemeses   []string      `json:"nemeses"`     // any of AllNemeses; empty: no faults
	Nodes     int           `json:"nodes"`       // 3 or 5
	Duration  time.Duration `json:"duration_ns"` // how long clients run (faults included)
	Rate      float64       `json:"rate"`        // client operations per second, all clients together
	Clients   int           `json:"clients"`     // concurrent client workers
	Seed      int64         `json:"seed"`        // seeds the fault schedule and the clients' choices
	// Interval is how long each fault lasts, and how long the cluster runs
	// healthy between faults.
	Interval time.Duration `json:"interval_ns"`
	// OpTimeout bounds each client operation.
	OpTimeout time.Duration `json:"op_timeout_ns"`
	// Recovery bounds how long after healing the cluster may take to serve
	// final reads and converge.
	Recovery time.Duration `json:"recovery_ns"`

	Dir    string `json:"dir"`    // parent of the run folder
	Binary string `json:"binary"` // kvnode binary; empty: build one from the working tree
	// Bug builds kvnode with a planted bug (a build tag); "local-reads"
	// serves linearizable reads without the read index.
	Bug    string `json:"bug"`
	Race   bool   `json:"race"`   // build kvnode with the race detector
	Mode   string `json:"mode"`   // auto, netns, loopback
	Shards int    `json:"shards"` // data shards (0: kvnode's default)

	Logf func(format string, args ...any) `json:"-"` // progress lines; nil: none
}

// Bugs maps the planted bugs a run can build in to their build tags.
var Bugs = map[string]string{"local-reads": "cairn_bug_local_reads", "txn-no-validate": "cairn_bug_txn_no_validate"}

// DefaultOptions returns a short run: 3 nodes, register, no faults.
func DefaultOptions() Options {
	return Options{
		Workloads: []string{Register},
		Nodes:     3,
		Duration:  60 * time.Second,
		Rate:      200,
		Clients:   10,
		Seed:      time.Now().UnixNano() % 1e6,
		Interval:  8 * time.Second,
		OpTimeout: 2 * time.Second,
		Recovery:  60 * time.Second,
		Dir:       "jepsen-runs",
		Mode:      "auto",
	}
}

func (o *Options) validate() error {
	var errs []error
	if len(o.Workloads) == 0 {
		errs = append(errs, errors.New("no workload"))
	}
	for _, w := range o.Workloads {
		if !slices.Contains(AllWorkloads, w) {
			errs = append(errs, fmt.Errorf("unknown workload %q (%s)", w, strings.Join(AllWorkloads, ", ")))
		}
	}
	for _, n := range o.Nemeses {
		if !slices.Contains(AllNemeses, n) {
			errs = append(errs, fmt.Errorf("unknown nemesis %q (%s)", n, strings.Join(AllNemeses, ", ")))
		}
	}
	if o.Nodes != 3 && o.Nodes != 5 {
		errs = append(errs, fmt.Errorf("nodes must be 3 or 5, not %d", o.Nodes))
	}
	if o.Duration <= 0 || o.Rate <= 0 || o.Clients <= 0 || o.Interval <= 0 || o.OpTimeout <= 0 || o.Recovery <= 0 {
		errs = append(errs, errors.New("duration, rate, clients, interval, op timeout and recovery must be positive"))
	}
	if o.Clients < 2*o.Nodes && len(o.Workloads) > 0 {
		errs = append(errs, fmt.Errorf("need at least %d clients (two per node: one pinned, one floating)", 2*o.Nodes))
	}
	if slices.Contains(o.Nemeses, NemesisMove) && o.Nodes < 5 {
		errs = append(errs, errors.New("the move nemesis needs 5 nodes: with 3, a removed node's replicas have nowhere to go"))
	}
	if _, ok := Bugs[o.Bug]; o.Bug != "" && !ok {
		errs = append(errs, fmt.Errorf("unknown bug %q (local-reads, txn-no-validate)", o.Bug))
	}
	switch o.Mode {
	case "auto", "netns", "loopback":
	default:
		errs = append(errs, fmt.Errorf("mode must be auto, netns or loopback, not %q", o.Mode))
	}
	return errors.Join(errs...)
}
