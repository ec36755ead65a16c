// Command sidebyside is the load generator of the Cairn / etcd side-by-side
// benchmark: the same keys, values, workloads and percentile rule against
// either system, one cell (system × workload × clients) per invocation.
//
//	sidebyside --system cairn --addrs 127.0.0.1:47070,127.0.0.1:47080,127.0.0.1:47090 \
//	    --workload get --clients 64 --duration 10s --preload
//	sidebyside wait --system etcd --addrs 127.0.0.1:42379,...   # until the cluster serves
//	sidebyside leader --system etcd --addrs ...                 # print the leading member
//
// A cell prints one JSON line (report.Record) on stdout and a human line on
// stderr. Given --pids it also measures the server processes over the timed
// run (CPU, peak RSS, bytes written), and given --data-dirs the data on disk
// afterwards (etcd's after a compaction and defragmentation). With
// --preload --duration 0 --settle D the preload itself is the cell (workload
// "load"), and the servers' resident memory is sampled D after it.
// bench/run.sh drives it; bench/README.md explains the figures.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cairndb/cairn/bench/driver/cairn"
	"github.com/cairndb/cairn/bench/driver/etcd"
	"github.com/cairndb/cairn/bench/load"
)

// driver is what sidebyside needs of a system's driver.
type driver interface {
	load.Driver
	Ready(ctx context.Context) error
	// Prepare creates what workload w needs (Cairn: the document indexes).
	Prepare(ctx context.Context, w load.Workload) error
	Close() error
}

// compacter is a driver whose system must compact before its disk usage
// means anything (etcd keeps every revision until compacted).
type compacter interface {
	Compact(ctx context.Context) error
}

// options are the flags shared by every subcommand.
type options struct {
	system    string
	addrs     []string
	etcdConns int
	routing   bool
	batch     int
}

func (o *options) register(fs *flag.FlagSet) {
	fs.StringVar(&o.system, "system", "cairn", "cairn or etcd")
	fs.Func("addrs", "comma-separated addresses: Cairn nodes' HTTP addresses or etcd client endpoints (clients are spread over them)", func(s string) error {
		o.addrs = splitList(s)
		return nil
	})
	fs.BoolVar(&o.routing, "cairn-routing", false, "cairn: clients send each key to its shard's leader (client.WithRouting)")
	fs.IntVar(&o.batch, "cairn-batch", 0, "cairn: at most this many get requests in flight per node and client; the gets waiting beyond them go together in one POST /v1/batch (client.WithBatching; 0: off)")
	fs.IntVar(&o.etcdConns, "etcd-conns", 0, "etcd: gRPC connections in all, connection j to endpoint j mod len(addrs) (0: two per endpoint)")
}

func (o *options) driver(clients int) (driver, error) {
	if len(o.addrs) == 0 {
		return nil, errors.New("sidebyside: --addrs is required")
	}
	switch o.system {
	case "cairn":
		return cairn.New(o.addrs, clients, o.routing, o.batch)
	case "etcd":
		conns := o.etcdConns
		if conns <= 0 {
			conns = 2 * len(o.addrs)
		}
		return etcd.New(o.addrs, conns)
	}
	return nil, fmt.Errorf("sidebyside: unknown system %q (want cairn or etcd)", o.system)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "sidebyside:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "wait":
			return runWait(ctx, args[1:])
		case "leader":
			return runLeader(ctx, args[1:])
		}
	}
	return runCell(ctx, args)
}

func runCell(ctx context.Context, args []string) error {
	var o options
	var c cellConfig
	c.load = load.DefaultConfig()
	fs := flag.NewFlagSet("sidebyside", flag.ContinueOnError)
	o.register(fs)
	workload := fs.String("workload", string(c.load.Workload), "put, get, stale-get, mix (90% get / 10% put) or scan (100 keys)")
	fs.IntVar(&c.load.Clients, "clients", c.load.Clients, "closed loop: concurrent clients; open loop: most operations in flight")
	fs.DurationVar(&c.load.Duration, "duration", c.load.Duration, "length of the timed run (0 with --preload: only preload)")
	fs.IntVar(&c.load.Keys, "keys", c.load.Keys, "distinct keys, chosen uniformly")
	fs.IntVar(&c.load.ValueSize, "value-size", c.load.ValueSize, "bytes per value")
	fs.Uint64Var(&c.load.Seed, "seed", c.load.Seed, "seed of every key, value and operation choice")
	fs.Float64Var(&c.load.Rate, "rate", 0, "open loop: operations per second in total, latency measured from each one's due time (0: closed loop)")
	fs.BoolVar(&c.preload, "preload", false, "write every key once before the timed run (not measured)")
	fs.DurationVar(&c.settle, "settle", 0, "with --preload --duration 0: measure the preload as the cell (workload \"load\") and the servers' resident memory this long after it")
	fs.IntVar(&c.run, "run", 1, "run number recorded with the result")
	pids := fs.String("pids", "", "comma-separated PIDs of the server processes to measure over the timed run")
	fs.Func("data-dirs", "comma-separated data directories whose disk usage is measured after the run", func(s string) error {
		c.dataDirs = splitList(s)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if c.load.Workload, err = load.ParseWorkload(*workload); err != nil {
		return err
	}
	// Each invocation inserts documents under IDs of its own: the cells of
	// one cluster run one after the other with the same seed.
	c.load.DocSalt = strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	for _, p := range splitList(*pids) {
		pid, err := strconv.Atoi(p)
		if err != nil {
			return fmt.Errorf("--pids: %w", err)
		}
		c.pids = append(c.pids, pid)
	}
	if c.load.Duration == 0 && !c.preload {
		return errors.New("--duration must be positive (0 only with --preload)")
	}
	if c.settle < 0 || c.settle > 0 && (!c.preload || c.load.Duration != 0) {
		return errors.New("--settle must be positive and comes with --preload --duration 0")
	}
	if c.load.Duration > 0 {
		if err := c.load.Validate(); err != nil {
			return err
		}
	}
	c.system = o.system
	c.endpoints = len(o.addrs)
	d, err := o.driver(c.load.Clients)
	if err != nil {
		return err
	}
	defer d.Close()
	return runOne(ctx, d, c, os.Stdout, os.Stderr)
}

// runWait polls the cluster until it serves.
func runWait(ctx context.Context, args []string) error {
	var o options
	fs := flag.NewFlagSet("sidebyside wait", flag.ContinueOnError)
	o.register(fs)
	timeout := fs.Duration("timeout", 90*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	d, err := o.driver(1)
	if err != nil {
		return err
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, 2*time.Second)
		err := d.Ready(attempt)
		cancelAttempt()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return ctx.Err() // interrupted
			}
			return fmt.Errorf("%s not ready after %v: %w", o.system, *timeout, err)
		case <-tick.C: // poll again
		}
	}
}

// runLeader prints the etcd member that leads.
func runLeader(ctx context.Context, args []string) error {
	var o options
	fs := flag.NewFlagSet("sidebyside leader", flag.ContinueOnError)
	o.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.system != "etcd" {
		return errors.New("leader: only for --system etcd (a Cairn node leads some shards, not the cluster)")
	}
	d, err := etcd.New(o.addrs, 1)
	if err != nil {
		return err
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ep, err := d.Leader(ctx)
	if err != nil {
		return err
	}
	fmt.Println(ep)
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
