package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// demoConfig is what `kvnode demo` runs: three kvnode processes on
// loopback forming one cluster.
type demoConfig struct {
	exe      string // the kvnode binary
	dir      string
	basePort int
	shards   int
}

// demoNode is one process of the demo cluster.
type demoNode struct {
	name               string
	http, raft, gossip string
	dataDir, log       string
	args               []string
	cmd                *exec.Cmd
	exited             chan error
}

func runDemo(args []string, out io.Writer) error {
	var dc demoConfig
	fs := flag.NewFlagSet("kvnode demo", flag.ContinueOnError)
	fs.StringVar(&dc.dir, "dir", "./kvnode-demo", "directory for the nodes' data and logs (kept between runs)")
	fs.IntVar(&dc.basePort, "base-port", 7070, "node i uses ports base+10(i-1) (HTTP), +1 (raft), +2 (gossip)")
	fs.IntVar(&dc.shards, "shards", 4, "data shards")
	if err := fs.Parse(args); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	dc.exe = exe
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	nodes, err := startDemo(ctx, dc, out)
	if err != nil {
		return err
	}
	printDemo(out, nodes)
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(out, "\nstopping the demo cluster")
			return stopDemo(nodes, 15*time.Second)
		case <-time.After(200 * time.Millisecond): // watch the children
		}
		for _, nd := range nodes {
			select {
			case err := <-nd.exited:
				fmt.Fprintf(out, "%s (pid %d) exited: %v\n  restart it with: %s %s\n", nd.name, nd.cmd.Process.Pid, err, dc.exe, strings.Join(nd.args, " "))
				nd.exited = nil
			default:
			}
		}
	}
}

// startDemo starts the three processes and waits until each serves.
func startDemo(ctx context.Context, dc demoConfig, out io.Writer) ([]*demoNode, error) {
	var nodes []*demoNode
	var seeds []string
	for i := range 3 {
		p := dc.basePort + 10*i
		nd := &demoNode{
			name:   fmt.Sprintf("n%d", i+1),
			http:   "127.0.0.1:" + strconv.Itoa(p),
			raft:   "127.0.0.1:" + strconv.Itoa(p+1),
			gossip: "127.0.0.1:" + strconv.Itoa(p+2),
		}
		nd.dataDir = filepath.Join(dc.dir, nd.name)
		nd.log = filepath.Join(dc.dir, nd.name+".log")
		nodes = append(nodes, nd)
		seeds = append(seeds, nd.gossip)
	}
	if err := os.MkdirAll(dc.dir, 0o750); err != nil {
		return nil, err
	}
	for _, nd := range nodes {
		nd.args = []string{
			"--name=" + nd.name, "--data-dir=" + nd.dataDir,
			"--http-addr=" + nd.http, "--raft-addr=" + nd.raft, "--gossip-addr=" + nd.gossip,
			"--join=" + strings.Join(seeds, ","), "--bootstrap-expect=3",
			"--shards=" + strconv.Itoa(dc.shards), "--gossip-local",
		}
		logf, err := os.OpenFile(nd.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
		if err != nil {
			stopDemo(nodes, time.Second)
			return nil, err
		}
		nd.cmd = exec.Command(dc.exe, nd.args...)
		nd.cmd.Stdout, nd.cmd.Stderr = logf, logf
		if err := nd.cmd.Start(); err != nil {
			logf.Close()
			stopDemo(nodes, time.Second)
			return nil, fmt.Errorf("start %s: %w", nd.name, err)
		}
		nd.exited = make(chan error, 1)
		go func() { nd.exited <- nd.cmd.Wait(); logf.Close() }()
	}
	fmt.Fprintf(out, "starting 3 nodes (data and logs in %s) ", dc.dir)
	deadline := time.Now().Add(90 * time.Second)
	for _, nd := range nodes {
		for !ready(nd.http) {
			select {
			case err := <-nd.exited:
				stopDemo(nodes, 5*time.Second)
				return nil, fmt.Errorf("%s exited while starting: %v (see %s)", nd.name, err, nd.log)
			case <-ctx.Done():
				stopDemo(nodes, 5*time.Second)
				return nil, ctx.Err()
			case <-time.After(200 * time.Millisecond): // poll readiness
				fmt.Fprint(out, ".")
			}
			if time.Now().After(deadline) {
				stopDemo(nodes, 5*time.Second)
				return nil, fmt.Errorf("%s not ready after 90s (see %s)", nd.name, nd.log)
			}
		}
	}
	fmt.Fprintln(out, " ready")
	return nodes, nil
}

func ready(addr string) bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func printDemo(out io.Writer, nodes []*demoNode) {
	fmt.Fprintln(out, "\nCairn demo cluster: 3 nodes, every shard on all three")
	fmt.Fprintf(out, "  %-4s %-7s %-22s %-18s %s\n", "NODE", "PID", "HTTP API", "GOSSIP", "LOG")
	for _, nd := range nodes {
		fmt.Fprintf(out, "  %-4s %-7d http://%-15s %-18s %s\n", nd.name, nd.cmd.Process.Pid, nd.http, nd.gossip, nd.log)
	}
	a, b := nodes[0].http, nodes[1].http
	fmt.Fprintf(out, `
Try:
  curl -X PUT -d hello http://%s/v1/kv/greeting     # write through n1
  curl http://%s/v1/kv/greeting                     # read through n2 (linearizable)
  curl http://%s/v1/cluster                         # nodes, shards, leaders
  go run ./cmd/kvnode status --addr %s
  go run ./cmd/kvnode bench --addr %s --clients 16 --duration 10s
  kill -9 %d                                             # crash n1; the others take over
Ctrl-C stops all three (each hands its leaderships away first).
`, a, b, a, a, a, nodes[0].cmd.Process.Pid)
}

// stopDemo sends SIGTERM to every node still running and waits, then kills
// what is left.
func stopDemo(nodes []*demoNode, timeout time.Duration) error {
	for _, nd := range nodes {
		if nd.cmd != nil && nd.cmd.Process != nil && nd.exited != nil {
			_ = nd.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	var errs []error
	deadline := time.After(timeout)
	for _, nd := range nodes {
		if nd.exited == nil {
			continue
		}
		select {
		case err := <-nd.exited:
			var ee *exec.ExitError
			if err != nil && !errors.As(err, &ee) {
				errs = append(errs, err)
			}
		case <-deadline:
			_ = nd.cmd.Process.Kill()
			errs = append(errs, fmt.Errorf("%s did not stop within %v; killed", nd.name, timeout))
		}
	}
	return errors.Join(errs...)
}
