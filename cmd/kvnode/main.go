// Command kvnode runs a Cairn node.
//
//	kvnode [flags]
//
// With no flags it runs a one-node cluster on loopback: HTTP API on
// 127.0.0.1:7070, raft port on 127.0.0.1:7071, gossip on 127.0.0.1:7072,
// data in ./kvnode-data. Nodes started with --join and --bootstrap-expect N
// form one cluster as soon as N of them see each other. SIGINT or SIGTERM
// hands this node's shard leaderships to other replicas and stops cleanly.
//
// The subcommands get, put, delete, scan and status talk to a running node
// (--addr, default 127.0.0.1:7070); bench puts load on one; demo runs a
// three-node cluster on loopback.
package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/cairndb/cairn/node"
	"github.com/cairndb/cairn/shard"
	"github.com/dustin/go-humanize"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "kvnode:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) > 0 {
		if _, ok := subcommands[args[0]]; ok {
			return runCLI(args[0], args[1:], os.Stdout)
		}
		switch args[0] {
		case "bench":
			return runBench(args[1:], os.Stdout)
		case "demo":
			return runDemo(args[1:], os.Stdout)
		case "help", "-h", "--help":
			printHelp(os.Stderr)
			return nil
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serve(ctx, args, os.Stderr)
}

// printHelp writes the subcommands, then a node's flags with their
// defaults.
func printHelp(w io.Writer) {
	fmt.Fprintln(w, cliUsage)
	fmt.Fprintln(w, "\nflags of a node (kvnode [flags]):")
	_, _, _ = parseServerFlags(w, []string{"-h"})
}

// serverFlags parses a node's flags into its configuration.
func serverFlags(args []string) (node.Config, serverOpts, error) {
	return parseServerFlags(os.Stderr, args)
}

// parseServerFlags is serverFlags writing the flag package's messages
// (usage, a bad flag) to out.
func parseServerFlags(out io.Writer, args []string) (node.Config, serverOpts, error) {
	cfg := node.DefaultConfig()
	var o serverOpts
	fs := flag.NewFlagSet("kvnode", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() { fs.PrintDefaults() }
	fs.StringVar(&cfg.Name, "name", cfg.Name, "node name (raft server ID), unique in the cluster")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "data directory")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "HTTP API address")
	fs.StringVar(&cfg.RaftAddr, "raft-addr", cfg.RaftAddr, "raft and node-to-node RPC address")
	fs.StringVar(&cfg.GossipAddr, "gossip-addr", cfg.GossipAddr, "gossip address (TCP and UDP)")
	fs.StringVar(&cfg.AdvertiseHost, "advertise-host", "", "host name or IP other nodes reach this one at (default: the listen host, or a private IP when listening on 0.0.0.0)")
	join := fs.String("join", "", "comma-separated gossip addresses of other nodes")
	fs.IntVar(&cfg.BootstrapExpect, "bootstrap-expect", cfg.BootstrapExpect, "with --join: nodes that form a new cluster together (1: only join an existing one)")
	fs.IntVar(&cfg.Shards, "shards", cfg.Shards, "data shards created at bootstrap")
	fs.IntVar(&cfg.Replicas, "replicas", cfg.Replicas, "replicas per shard")
	// The key's default is read after parsing, so that the flag listing
	// (kvnode -h, a bad flag) never prints it.
	gossipKey := fs.String("gossip-key", "", "base64 key (16, 24 or 32 bytes) that encrypts gossip (default $CAIRN_GOSSIP_KEY)")
	fs.BoolVar(&o.pprof, "pprof", false, "serve /debug/pprof/ on the HTTP address")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long each stage of a stop may take: handing leadership away and draining requests, then closing the storage (past it the node exits as after a crash)")
	fs.DurationVar(&cfg.RequestTimeout, "request-timeout", cfg.RequestTimeout, "how long a request may wait for a shard leader and quorum before it fails (503, or 504 for a write already proposed)")
	fs.DurationVar(&cfg.LeaderBalanceInterval, "leader-balance-interval", cfg.LeaderBalanceInterval, "hand a shard's leadership to a node that leads at least two data shards fewer, once the leader counts have held still this long (at most one move per node per interval; 0: never)")
	fs.BoolVar(&cfg.GossipLocal, "gossip-local", false, "gossip timings for one machine (fast failure detection; demos and tests)")
	syncLeader := fs.Bool("raft-leader-sync", cfg.Shard.SyncLeaderLog, "a leader syncs its raft log before sending new entries to the followers (hashicorp/raft's order); by default a leader's wal log writes commands ahead and syncs them while the followers do, and nothing acts on an entry before the leader's copy is synced")
	logStore := fs.String("raft-log-store", string(cfg.Shard.LogStore), "raft log format of replicas created from now on: wal (hashicorp/raft-wal, one log per replica), bolt (raft-boltdb) or node (one log for all of the node's replicas, whose appends share syncs); existing replicas keep theirs")
	memLimit := fs.String("memory-limit", "auto", "soft limit on the Go heap (GC works harder near it): a size, 0 for none, or auto: 80% of the memory limit of the node's cgroup (a container's limit) when it has one, else 256MiB; $GOMEMLIMIT, when set, takes precedence")
	tableSize := fs.String("table-size", humanize.IBytes(uint64(cfg.Store.BaseTableSize)), "size of the tables Badger's compactions write below level 0 (smaller: less memory while compacting, slower writes)")
	valueThreshold := fs.String("value-threshold", humanize.IBytes(uint64(cfg.Store.ValueThreshold)), "values at least this large are written once to Badger's value log instead of its LSM tree (smaller: fewer bytes rewritten by compaction and faster loads of new keys; overwritten values then hold disk until value-log GC)")
	minFreeDisk := fs.String("min-free-disk", humanize.IBytes(uint64(cfg.MinFreeDisk)), "free space to keep on the data disk: below it, every node refuses writes that add data (507 disk_full) until space is freed; reads and deletes still work (0: no check)")
	fs.DurationVar(&cfg.Store.TableRelease, "table-release-interval", cfg.Store.TableRelease, "how often the node hands the kernel the pages of the tables Badger wrote since (Badger writes through memory mappings, so they would stay resident; snapshots hand back what they read when they end); reads fault back in what they use (0: keep them resident; else at least 1s)")
	fs.DurationVar(&o.memoryRelease, "memory-release-interval", 5*time.Second, "how often the node checks whether it has gone quiet with a heap grown by a burst of work, which it then collects and returns to the OS (0: never)")
	fs.IntVar(&o.gcPercent, "gc-percent", 25, "how far the Go heap may grow past its live size before a collection, in percent (lower: less memory, more collections; $GOGC, when set, takes precedence)")
	if err := fs.Parse(args); err != nil {
		return cfg, o, err
	}
	if fs.NArg() > 0 {
		return cfg, o, fmt.Errorf("unknown subcommand %q\n%s", fs.Arg(0), cliUsage)
	}
	if *join != "" {
		cfg.Join = strings.Split(*join, ",")
	}
	if *gossipKey == "" {
		*gossipKey = os.Getenv("CAIRN_GOSSIP_KEY")
	}
	if *gossipKey != "" {
		k, err := base64.StdEncoding.DecodeString(*gossipKey)
		if err != nil {
			return cfg, o, fmt.Errorf("--gossip-key: %w", err)
		}
		cfg.GossipKey = k
	}
	ls, err := shard.ParseLogStore(*logStore)
	if err != nil {
		return cfg, o, fmt.Errorf("--raft-log-store: %w", err)
	}
	cfg.Shard.LogStore = ls
	cfg.Shard.SyncLeaderLog = *syncLeader
	if *memLimit == "auto" {
		o.memoryLimitAuto = true
	} else {
		limit, err := humanize.ParseBytes(*memLimit)
		if err != nil || limit > math.MaxInt64 {
			return cfg, o, fmt.Errorf("--memory-limit %q: want a size such as 256MiB, 0, or auto", *memLimit)
		}
		o.memoryLimit = int64(limit)
	}
	ts, err := humanize.ParseBytes(*tableSize)
	if err != nil || ts < 64<<10 || ts > uint64(cfg.Store.MemTableSize) {
		return cfg, o, fmt.Errorf("--table-size %q: want a size from 64KiB to the memtable's %s, such as 512KiB", *tableSize, humanize.IBytes(uint64(cfg.Store.MemTableSize)))
	}
	cfg.Store.BaseTableSize = int64(ts)
	vt, err := humanize.ParseBytes(*valueThreshold)
	if err != nil || vt < 64 || vt > 1<<20 {
		return cfg, o, fmt.Errorf("--value-threshold %q: want a size from 64B to 1MiB, such as 128B", *valueThreshold)
	}
	cfg.Store.ValueThreshold = int64(vt)
	mfd, err := humanize.ParseBytes(*minFreeDisk)
	if err != nil || mfd > math.MaxInt64 {
		return cfg, o, fmt.Errorf("--min-free-disk %q: want a size such as 1GiB, or 0", *minFreeDisk)
	}
	cfg.MinFreeDisk = int64(mfd)
	if cfg.Store.TableRelease < 0 || (cfg.Store.TableRelease > 0 && cfg.Store.TableRelease < time.Second) {
		return cfg, o, fmt.Errorf("--table-release-interval %v: want 0 or at least 1s (pages released sooner after Badger writes them may stay in the page cache)", cfg.Store.TableRelease)
	}
	if o.memoryRelease < 0 {
		return cfg, o, fmt.Errorf("--memory-release-interval %v: want a duration of 0 or more", o.memoryRelease)
	}
	if o.gcPercent < 1 {
		return cfg, o, fmt.Errorf("--gc-percent %d: want a percentage of 1 or more", o.gcPercent)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return cfg, o, fmt.Errorf("--log-level: %w", err)
	}
	o.level = level
	return cfg, o, cfg.Validate()
}

type serverOpts struct {
	memoryLimit     int64 // bytes; 0: none (unless memoryLimitAuto)
	memoryLimitAuto bool  // --memory-limit auto: from the cgroup's limit (see goMemoryLimit)
	gcPercent       int
	memoryRelease   time.Duration // 0: never
	pprof           bool
	logLevel        string
	level           slog.Level
	shutdownTimeout time.Duration
}

// serve runs a node until ctx ends, then stops it gracefully.
func serve(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, o, err := serverFlags(args)
	if err != nil {
		return err
	}
	cfg.Logger = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: o.level}))
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		limit, source := goMemoryLimit(o, memlimit.FromCgroup)
		if limit > 0 {
			debug.SetMemoryLimit(limit)
		}
		cfg.Logger.Info("go memory limit", "bytes", limit, "source", source)
	}
	if _, set := os.LookupEnv("GOGC"); !set {
		// Most of a node's live heap is Badger's memtable arenas and
		// block cache, byte slices the collector does not scan, so
		// collecting more often costs little; Go's default (100) lets
		// the heap reach twice its live size between collections.
		debug.SetGCPercent(o.gcPercent)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Registry = reg

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
	}
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	n, err := node.Start(startCtx, cfg)
	cancel()
	if err != nil {
		ln.Close()
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/", n.Handler(reg))
	if o.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	if o.memoryRelease > 0 {
		relCtx, stopRelease := context.WithCancel(ctx)
		defer stopRelease()
		ticker := time.NewTicker(o.memoryRelease)
		defer ticker.Stop()
		go releaseIdleMemory(relCtx, ticker.C, cfg.Logger)
	}
	srv := node.NewServer(cfg.HTTPAddr, mux)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	cfg.Logger.Info("kvnode serving", "http_addr", ln.Addr().String(), "raft_addr", n.RaftAddr(), "gossip_addr", n.GossipAddr(), "data_dir", cfg.DataDir)
	fmt.Fprintf(stderr, "kvnode %s: HTTP API on http://%s (try: curl -X PUT -d hello http://%s/v1/kv/greeting)\n", cfg.Name, ln.Addr(), ln.Addr())

	select {
	case err := <-errc:
		_ = closeWithin(n.Close, o.shutdownTimeout)
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	case <-ctx.Done():
	}
	cfg.Logger.Info("stopping: handing leadership away")
	stopCtx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	// Leadership goes first: requests in flight here are retried by the
	// node at the new leaders (writes keep their request IDs). Then the
	// HTTP server drains and the node closes.
	n.HandOff(stopCtx)
	if err := srv.Shutdown(stopCtx); err != nil {
		cfg.Logger.Warn("http shutdown", "error", err)
	}
	err = closeWithin(n.Close, o.shutdownTimeout)
	cfg.Logger.Info("stopped", "error", err)
	return err
}

// closeWithin runs close and waits for it at most d. A node whose data
// disk fails its writes never finishes closing (Badger retries flushing
// its memtables until they are written), and a stop must end all the same:
// past d the process exits without a clean close, as after a crash, which
// loses nothing acknowledged (the raft logs hold it, and the next start
// applies it again).
func closeWithin(close func() error, d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		return fmt.Errorf("the node did not close within %v (does its data disk fail writes? see the log); exiting without a clean close, as after a crash: the next start applies the raft logs again", d)
	}
}
