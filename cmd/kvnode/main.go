// Command kvnode runs a Cairn node.
//
//	kvnode [flags]
//
// With no flags it runs a one-node cluster on loopback: HTTP API on
// 127.0.0.1:7070, raft port on 127.0.0.1:7071, data in ./kvnode-data.
// SIGINT or SIGTERM stops it cleanly. The subcommands get, put, delete, scan
// and status talk to a running node (--addr, default 127.0.0.1:7070).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cairndb/cairn/node"
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
		if args[0] == "bench" {
			return runBench(args[1:], os.Stdout)
		}
		if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
			fmt.Fprintln(os.Stderr, cliUsage)
			return nil
		}
	}
	cfg := node.DefaultConfig()
	fs := flag.NewFlagSet("kvnode", flag.ContinueOnError)
	fs.StringVar(&cfg.Name, "name", cfg.Name, "node name (raft server ID)")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "data directory")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "HTTP API address")
	fs.StringVar(&cfg.RaftAddr, "raft-addr", cfg.RaftAddr, "raft and peer RPC address")
	fs.StringVar(&cfg.GossipAddr, "gossip-addr", cfg.GossipAddr, "gossip address (multi-node clusters: not implemented yet)")
	join := fs.String("join", "", "comma-separated gossip addresses to join (not implemented yet)")
	fs.IntVar(&cfg.BootstrapExpect, "bootstrap-expect", cfg.BootstrapExpect, "nodes that form the first cluster (only 1 is implemented)")
	fs.IntVar(&cfg.Shards, "shards", cfg.Shards, "data shards created at bootstrap")
	fs.IntVar(&cfg.Replicas, "replicas", cfg.Replicas, "replicas per shard")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unknown subcommand %q\n%s", fs.Arg(0), cliUsage)
	}
	if *join != "" {
		cfg.Join = strings.Split(*join, ",")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Registry = reg

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	n, err := node.Start(startCtx, cfg)
	cancel()
	if err != nil {
		return err
	}
	defer n.Close()

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
	}
	srv := node.NewServer(cfg.HTTPAddr, n.Handler(reg))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	cfg.Logger.Info("kvnode ready", "http_addr", ln.Addr().String(), "raft_addr", n.RaftAddr(), "data_dir", cfg.DataDir)
	fmt.Fprintf(os.Stderr, "kvnode %s: HTTP API on http://%s (try: curl -X PUT -d hello http://%s/v1/kv/greeting)\n", cfg.Name, ln.Addr(), ln.Addr())

	select {
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	case <-ctx.Done():
		cfg.Logger.Info("shutting down")
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		cfg.Logger.Warn("http shutdown", "error", err)
	}
	return n.Close()
}
