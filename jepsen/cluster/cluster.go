package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/internal/gossip"
)

// Mode is how the nodes are networked.
type Mode int

const (
	// Auto is Netns when the harness runs as root and ip is installed (and
	// the namespaces can be set up), else Loopback.
	Auto Mode = iota
	// Netns gives every node a network namespace behind a bridge: all faults.
	Netns
	// Loopback runs every node on 127.0.0.1: process faults only.
	Loopback
)

func (m Mode) String() string {
	switch m {
	case Auto:
		return "auto"
	case Netns:
		return "netns"
	case Loopback:
		return "loopback"
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// Config describes a cluster to start.
type Config struct {
	// Nodes is the number of nodes (3 or 5 for the usual fault schedules).
	Nodes int
	// Binary is the path of a built kvnode.
	Binary string
	// Dir is the run folder. Node i keeps its data in Dir/n<i>/data and
	// appends its output to Dir/n<i>/kvnode.log; Close leaves Dir alone.
	// Use a new folder for a new cluster: nodes that find data of an
	// earlier run rejoin that cluster.
	Dir string
	// Mode picks the networking (default Auto).
	Mode Mode
	// Shards and Replicas are passed as --shards and --replicas (0: kvnode's
	// default).
	Shards, Replicas int
	// ExtraArgs are appended to every node's flags.
	ExtraArgs []string
	// DiskSize, when positive, gives every node a tmpfs of that many bytes
	// as the file system of its data directory (mounted under
	// Dir/n<i>/disk, which needs root), so that FillDisk can fill it.
	DiskSize int64
	// Log receives what the harness does (nil: discarded).
	Log *slog.Logger
	// StartTimeout bounds how long Start waits for a healthy cluster, unless
	// ctx ends sooner (default 2 minutes).
	StartTimeout time.Duration
}

// Node is one member of the cluster. Indices run from 1 to Config.Nodes and
// match the node's name (n1, n2, ...), its data folder and, in Netns mode,
// the last byte of its IP.
type Node struct {
	Index int
	Name  string
	// IP is the address the node listens on.
	IP string
	// HTTPAddr, RaftAddr and GossipAddr are host:port; HTTPAddr is reachable
	// from the harness in every mode and through every fault but the node's
	// own netem loss.
	HTTPAddr, RaftAddr, GossipAddr string
	// Netns is the node's network namespace and Iface its interface there
	// (Netns mode only).
	Netns, Iface string
	// HostIface is the node's veth end on the bridge (Netns mode only).
	HostIface string
	// DataDir is the node's --data-dir and LogPath its output file.
	DataDir, LogPath string
}

// Errors of the process faults.
var (
	ErrNotRunning     = errors.New("cluster: node is not running")
	ErrAlreadyRunning = errors.New("cluster: node is already running")
	ErrClosed         = errors.New("cluster: closed")
)

// ownerEnv is set in every kvnode's environment to the harness's PID, so
// that Cleanup can find the processes of a harness that died.
const ownerEnv = "CAIRN_JEPSEN_OWNER"

// Cluster is a running kvnode cluster. Its methods are safe for concurrent
// use. Methods that take a node take its index, 1 to Config.Nodes.
type Cluster struct {
	cfg   Config
	log   *slog.Logger
	mode  Mode
	nodes []Node
	args  [][]string // kvnode flags per node (index i-1)
	hc    *http.Client

	mu     sync.Mutex // guards procs and closed
	procs  []*proc
	closed bool

	// Netns mode only.
	netMu sync.Mutex // serializes network changes
	net   *netEnv
	cuts  map[[2]int]bool // current cuts, a < b
	netem map[int]bool    // nodes with a netem qdisc
	loss  map[int]bool    // nodes with an iptables loss rule

	mounted []string // the nodes' tmpfs disks (DiskSize)

	closeOnce sync.Once
	closeErr  error
}

// proc is one run of a node's process.
type proc struct {
	cmd    *exec.Cmd
	done   chan struct{} // closed once the process is reaped
	err    error         // exit status, set before done closes
	paused bool
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Start sets up the network, starts all nodes so that they form one cluster
// (--bootstrap-expect with --join of every gossip address), and waits until
// every node is ready (GET /readyz) and sees every node alive and a leader
// for every shard. On failure everything is torn down again.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 2 * time.Minute
	}
	if cfg.Nodes < 1 || cfg.Nodes > 99 {
		return nil, fmt.Errorf("cluster: Nodes %d outside [1, 99]", cfg.Nodes)
	}
	if cfg.Dir == "" {
		return nil, errors.New("cluster: Dir is required")
	}
	if cfg.Binary == "" {
		return nil, errors.New("cluster: Binary is required")
	}
	bin, err := filepath.Abs(cfg.Binary)
	if err != nil {
		return nil, fmt.Errorf("cluster: Binary: %w", err)
	}
	if fi, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("cluster: Binary: %w", err)
	} else if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("cluster: Binary %s is not an executable file", bin)
	}
	cfg.Binary = bin
	if cfg.Dir, err = filepath.Abs(cfg.Dir); err != nil {
		return nil, fmt.Errorf("cluster: Dir: %w", err)
	}
	mode := cfg.Mode
	if mode == Auto {
		if why := netnsUnavailable(); why != "" {
			cfg.Log.Warn("cluster: using loopback mode: no network faults", "reason", why)
			mode = Loopback
		} else {
			mode = Netns
		}
	}
	c := &Cluster{
		cfg: cfg, log: cfg.Log, mode: mode,
		procs: make([]*proc, cfg.Nodes),
		cuts:  map[[2]int]bool{}, netem: map[int]bool{}, loss: map[int]bool{},
		hc: &http.Client{Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     30 * time.Second,
		}},
	}
	switch mode {
	case Netns:
		err := c.setupNetns()
		if err != nil && cfg.Mode == Auto {
			cfg.Log.Warn("cluster: network namespaces failed, using loopback mode: no network faults", "error", err)
			err = c.teardownNetns()
			c.net, c.mode = nil, Loopback
			if err == nil {
				err = c.setupLoopback()
			}
		}
		if err != nil {
			return nil, errors.Join(err, c.teardownNetns())
		}
	case Loopback:
		if err := c.setupLoopback(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("cluster: unknown mode %v", mode)
	}
	c.log.Info("cluster: starting", "mode", c.mode, "nodes", cfg.Nodes, "dir", cfg.Dir, "binary", cfg.Binary)
	if err := c.mountDisks(); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	c.buildArgs()
	for i := 1; i <= cfg.Nodes; i++ {
		n := c.nodes[i-1]
		if err := os.MkdirAll(n.DataDir, 0o755); err != nil {
			return nil, errors.Join(fmt.Errorf("cluster: %w", err), c.Close())
		}
		if err := c.startLocked(i); err != nil {
			return nil, errors.Join(err, c.Close())
		}
	}
	wctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	start := time.Now()
	if err := c.WaitHealthy(wctx); err != nil {
		return nil, errors.Join(fmt.Errorf("cluster: not healthy after %v: %w (logs in %s)", time.Since(start).Round(time.Millisecond), err, cfg.Dir), c.Close())
	}
	c.log.Info("cluster: healthy", "after", time.Since(start).Round(time.Millisecond))
	return c, nil
}

// setupLoopback lays the nodes out on 127.0.0.1 with free ports.
func (c *Cluster) setupLoopback() error {
	c.nodes = nil
	for i := 1; i <= c.cfg.Nodes; i++ {
		var addrs [3]string
		for k := range addrs {
			a, err := gossip.FreeAddr("127.0.0.1")
			if err != nil {
				return err
			}
			addrs[k] = a
		}
		c.nodes = append(c.nodes, c.node(i, "127.0.0.1", addrs[0], addrs[1], addrs[2]))
	}
	return nil
}

func (c *Cluster) node(i int, ip, httpAddr, raftAddr, gossipAddr string) Node {
	dir := filepath.Join(c.cfg.Dir, "n"+strconv.Itoa(i))
	data := filepath.Join(dir, "data")
	if c.cfg.DiskSize > 0 {
		data = filepath.Join(c.diskDir(i), "data")
	}
	return Node{
		Index: i, Name: "n" + strconv.Itoa(i), IP: ip,
		HTTPAddr: httpAddr, RaftAddr: raftAddr, GossipAddr: gossipAddr,
		DataDir: data, LogPath: filepath.Join(dir, "kvnode.log"),
	}
}

// buildArgs computes every node's kvnode flags once; restarts reuse them.
func (c *Cluster) buildArgs() {
	var seeds []string
	for _, n := range c.nodes {
		seeds = append(seeds, n.GossipAddr)
	}
	c.args = make([][]string, len(c.nodes))
	for k, n := range c.nodes {
		a := []string{
			"--name=" + n.Name,
			"--data-dir=" + n.DataDir,
			"--http-addr=" + n.HTTPAddr,
			"--raft-addr=" + n.RaftAddr,
			"--gossip-addr=" + n.GossipAddr,
			"--advertise-host=" + n.IP,
			"--gossip-local",
		}
		if len(c.nodes) > 1 {
			// A single node forms its cluster alone; with --join and
			// --bootstrap-expect 1 it would wait to join another one.
			a = append(a, "--join="+strings.Join(seeds, ","), "--bootstrap-expect="+strconv.Itoa(len(c.nodes)))
		}
		if c.cfg.Shards > 0 {
			a = append(a, "--shards="+strconv.Itoa(c.cfg.Shards))
		}
		if c.cfg.Replicas > 0 {
			a = append(a, "--replicas="+strconv.Itoa(c.cfg.Replicas))
		}
		c.args[k] = append(a, c.cfg.ExtraArgs...)
	}
}

// Nodes returns the nodes, in index order (Nodes()[0] is node 1).
func (c *Cluster) Nodes() []Node {
	out := make([]Node, len(c.nodes))
	copy(out, c.nodes)
	return out
}

// Node returns node i; it panics if there is no such node.
func (c *Cluster) Node(i int) Node {
	if err := c.check(i); err != nil {
		panic(err)
	}
	return c.nodes[i-1]
}

// Mode returns the mode the cluster runs in (never Auto).
func (c *Cluster) Mode() Mode { return c.mode }

// Dir returns the run folder.
func (c *Cluster) Dir() string { return c.cfg.Dir }

// Client returns a client for node i's HTTP API; it panics if there is no
// such node.
func (c *Cluster) Client(i int, opts ...client.Option) *client.Client {
	return client.New(c.Node(i).HTTPAddr, opts...)
}

// Supports reports whether a fault can be injected here: "kill", "stop",
// "restart" and "pause" always; "partition" (Partition, Cut, Heal) and "loss"
// (Netem with loss only) in Netns mode; "netem" and "delay" (Netem with a
// delay) in Netns mode on a kernel with the sch_netem qdisc; "disk"
// (FillDisk, FreeDisk) with Config.DiskSize.
func (c *Cluster) Supports(fault string) bool {
	switch fault {
	case "kill", "stop", "restart", "pause":
		return true
	case "partition":
		return c.net != nil && c.net.iptables
	case "loss":
		return c.net != nil && (c.net.netem || c.net.iptables)
	case "netem", "delay":
		return c.net != nil && c.net.netem
	case "disk":
		return len(c.mounted) > 0
	}
	return false
}

func (c *Cluster) check(i int) error {
	if i < 1 || i > len(c.nodes) {
		return fmt.Errorf("cluster: no node %d (nodes are 1 to %d)", i, len(c.nodes))
	}
	return nil
}

// startLocked starts node i's process; the caller holds c.mu or has not
// published c yet.
func (c *Cluster) startLocked(i int) error {
	n := c.nodes[i-1]
	if err := os.MkdirAll(filepath.Dir(n.LogPath), 0o755); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	defer logf.Close() // the child has its own descriptor
	name, argv := c.cfg.Binary, c.args[i-1]
	if c.mode == Netns {
		name, argv = c.net.ipPath, append([]string{"netns", "exec", n.Netns, c.cfg.Binary}, argv...)
	}
	fmt.Fprintf(logf, "=== %s harness (pid %d): starting %s %s\n", time.Now().Format(time.RFC3339Nano), os.Getpid(), name, strings.Join(argv, " "))
	cmd := exec.Command(name, argv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), ownerEnv+"="+strconv.Itoa(os.Getpid()))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := spawn(cmd); err != nil {
		return fmt.Errorf("cluster: start %s: %w", n.Name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	c.procs[i-1] = p
	go func() {
		err := cmd.Wait()
		c.log.Info("cluster: node exited", "node", n.Name, "pid", cmd.Process.Pid, "status", exitStatus(err))
		p.err = err
		close(p.done)
	}()
	c.log.Info("cluster: node started", "node", n.Name, "pid", cmd.Process.Pid)
	return nil
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// running returns node i's process if it has not exited.
func (c *Cluster) running(i int) (*proc, error) {
	if err := c.check(i); err != nil {
		return nil, err
	}
	if c.closed {
		return nil, ErrClosed
	}
	var p *proc
	if i <= len(c.procs) {
		p = c.procs[i-1]
	}
	if p == nil || p.exited() {
		return nil, fmt.Errorf("%w: %s", ErrNotRunning, c.nodes[i-1].Name)
	}
	return p, nil
}

// Kill sends SIGKILL to node i (paused or not) and waits until the process
// is reaped.
func (c *Cluster) Kill(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, err := c.running(i)
	if err != nil {
		return err
	}
	c.log.Info("cluster: kill", "node", c.nodes[i-1].Name, "pid", p.cmd.Process.Pid)
	return c.killProc(i, p)
}

func (c *Cluster) killProc(i int, p *proc) error {
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("cluster: kill %s: %w", c.nodes[i-1].Name, err)
	}
	select {
	case <-p.done:
		p.paused = false
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("cluster: %s (pid %d) still there 30s after SIGKILL", c.nodes[i-1].Name, p.cmd.Process.Pid)
	}
}

// Stop stops node i gracefully (SIGTERM: it hands its leaderships away
// first), and kills it if it has not exited within timeout (0: 30s).
func (c *Cluster) Stop(i int, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p, err := c.running(i)
	if err != nil {
		return err
	}
	name := c.nodes[i-1].Name
	c.log.Info("cluster: stop", "node", name, "pid", p.cmd.Process.Pid)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("cluster: stop %s: %w", name, err)
	}
	if p.paused {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		p.paused = false
	}
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("cluster: %s stopped with %w", name, p.err)
		}
		return nil
	case <-time.After(timeout):
	}
	if err := c.killProc(i, p); err != nil {
		return err
	}
	return fmt.Errorf("cluster: %s did not stop within %v after SIGTERM; killed it", name, timeout)
}

// Restart starts node i again, with the same flags and data directory,
// after Kill, Stop or a crash. It does not wait for the node to be ready
// (see WaitReady).
func (c *Cluster) Restart(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.check(i); err != nil {
		return err
	}
	if c.closed {
		return ErrClosed
	}
	if p := c.procs[i-1]; p != nil && !p.exited() {
		return fmt.Errorf("%w: %s (pid %d)", ErrAlreadyRunning, c.nodes[i-1].Name, p.cmd.Process.Pid)
	}
	return c.startLocked(i)
}

// Pause sends SIGSTOP to node i and returns once the process is stopped.
func (c *Cluster) Pause(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, err := c.running(i)
	if err != nil {
		return err
	}
	if p.paused {
		return nil
	}
	pid := p.cmd.Process.Pid
	c.log.Info("cluster: pause", "node", c.nodes[i-1].Name, "pid", pid)
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("cluster: pause %s: %w", c.nodes[i-1].Name, err)
	}
	p.paused = true
	// The signal is delivered asynchronously; a fault schedule wants the
	// node stopped when Pause returns.
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := procState(pid)
		if err != nil || st == 'T' || p.exited() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster: %s (pid %d) not stopped 5s after SIGSTOP (state %c)", c.nodes[i-1].Name, pid, st)
		}
		time.Sleep(time.Millisecond) // polling interval
	}
}

// procState returns the state letter of /proc/<pid>/stat (R, S, T, Z, ...).
func procState(pid int) (byte, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// pid (comm) state ...; comm may contain spaces and parentheses.
	k := bytes.LastIndexByte(b, ')')
	if k < 0 || k+2 >= len(b) {
		return 0, fmt.Errorf("cluster: odd /proc/%d/stat", pid)
	}
	return b[k+2], nil
}

// Resume sends SIGCONT to node i.
func (c *Cluster) Resume(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, err := c.running(i)
	if err != nil {
		return err
	}
	c.log.Info("cluster: resume", "node", c.nodes[i-1].Name, "pid", p.cmd.Process.Pid)
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		return fmt.Errorf("cluster: resume %s: %w", c.nodes[i-1].Name, err)
	}
	p.paused = false
	return nil
}

// Running reports whether node i's process exists (paused or not).
func (c *Cluster) Running(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.running(i)
	return err == nil
}

// Paused reports whether node i is paused.
func (c *Cluster) Paused(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, err := c.running(i)
	return err == nil && p.paused
}

// PID returns node i's process ID, or 0 when it is not running.
func (c *Cluster) PID(i int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, err := c.running(i)
	if err != nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// up returns the indices of the nodes that run and are not paused.
func (c *Cluster) up() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for i := 1; i <= len(c.nodes); i++ {
		if p, err := c.running(i); err == nil && !p.paused {
			out = append(out, i)
		}
	}
	return out
}

// Close resumes paused nodes, kills all of them, and removes the network
// (namespaces, veths, bridge, FORWARD rule), which takes every partition and
// netem with it. Dir is kept. Close is idempotent.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		var errs []error
		for k, p := range c.procs {
			if p == nil || p.exited() {
				continue
			}
			if p.paused {
				_ = p.cmd.Process.Signal(syscall.SIGCONT)
			}
			if err := c.killProc(k+1, p); err != nil {
				errs = append(errs, err)
			}
		}
		c.closed = true
		c.mu.Unlock()
		if c.net != nil {
			errs = append(errs, c.teardownNetns())
		}
		errs = append(errs, c.unmountDisks())
		c.hc.CloseIdleConnections()
		c.closeErr = errors.Join(errs...)
		c.log.Info("cluster: closed", "error", c.closeErr)
	})
	return c.closeErr
}
