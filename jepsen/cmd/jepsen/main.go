// Command jepsen runs one fault-injection test against a kvnode cluster
// built from the working tree, prints a summary and exits non-zero when a
// checker found a violation (1) or the run could not be carried out (2).
//
//	go run ./jepsen/cmd/jepsen --workload register --nemesis partition,kill,pause --time 60s
//
// Run it as root for network namespaces (partitions, netem); otherwise the
// nodes run on loopback and only kill and pause are available.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cairndb/cairn/jepsen"
	"github.com/cairndb/cairn/jepsen/cluster"
)

func main() {
	o := jepsen.DefaultOptions()
	fs := flag.NewFlagSet("jepsen", flag.ExitOnError)
	workloads := fs.String("workload", "register", "comma-separated workloads: register, set, bank, append")
	nemeses := fs.String("nemesis", "", "comma-separated faults: partition, kill, pause, netem, transfer, move (5 nodes), disk, or all (default none)")
	fs.IntVar(&o.Nodes, "nodes", o.Nodes, "cluster size: 3 or 5")
	fs.DurationVar(&o.Duration, "time", o.Duration, "how long clients run")
	fs.Float64Var(&o.Rate, "rate", o.Rate, "client operations per second, all clients together")
	fs.IntVar(&o.Clients, "clients", o.Clients, "concurrent clients (half pinned to a node, half floating)")
	fs.Int64Var(&o.Seed, "seed", o.Seed, "seed of the fault schedule and the clients' choices (printed; pass it again to replay)")
	fs.DurationVar(&o.Interval, "interval", o.Interval, "how long each fault lasts, and the healthy time between faults")
	fs.DurationVar(&o.OpTimeout, "op-timeout", o.OpTimeout, "timeout of one client operation")
	fs.DurationVar(&o.Recovery, "recovery", o.Recovery, "time allowed after healing for final reads and convergence")
	fs.StringVar(&o.Dir, "dir", o.Dir, "where run folders go")
	fs.StringVar(&o.Binary, "kvnode", "", "kvnode binary to test (default: build from the working tree)")
	fs.StringVar(&o.Bug, "bug", "", "build kvnode with a planted bug the checkers must find: local-reads, txn-no-validate")
	fs.BoolVar(&o.Race, "race", false, "build kvnode with the race detector")
	fs.StringVar(&o.Mode, "mode", o.Mode, "auto (network namespaces when root), netns or loopback")
	fs.IntVar(&o.Shards, "shards", 0, "data shards (default: kvnode's)")
	cleanup := fs.Bool("cleanup", false, "remove processes, network namespaces, rules and disk mounts left by killed harness runs, then exit")
	fs.Parse(os.Args[1:])

	if *cleanup {
		cluster.Cleanup()
		return
	}
	o.Workloads = split(*workloads)
	o.Nemeses = split(*nemeses)
	if len(o.Nemeses) == 1 && o.Nemeses[0] == "all" {
		o.Nemeses = jepsen.AllNemeses
	}
	lg := log.New(os.Stderr, "", log.Ltime)
	o.Logf = lg.Printf

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := jepsen.Run(ctx, o)
	if rep != nil {
		fmt.Print(rep.String())
	}
	if err != nil {
		lg.Printf("run failed: %v", err)
		os.Exit(2)
	}
	if !rep.Valid {
		os.Exit(1)
	}
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" && p != "none" {
			out = append(out, p)
		}
	}
	return out
}
