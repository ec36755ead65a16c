package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairndb/cairn/client"
)

// kvnodeBin is built once by TestMain: without the race detector, to keep
// the package under its time budget on two cores (CAIRN_JEPSEN_RACE=1
// builds it with -race and fails a test whose node logs report a race).
var kvnodeBin string

func TestMain(m *testing.M) {
	if err := Cleanup(); err != nil {
		fmt.Fprintln(os.Stderr, "cleanup of earlier runs:", err)
	}
	dir, err := os.MkdirTemp("", "cairn-jepsen-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kvnodeBin = filepath.Join(dir, "kvnode")
	args := []string{"build", "-o", kvnodeBin}
	if os.Getenv("CAIRN_JEPSEN_RACE") != "" {
		args = append(args, "-race")
	}
	args = append(args, "github.com/cairndb/cairn/cmd/kvnode")
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go %s: %v\n%s", strings.Join(args, " "), err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func requireNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("netns tests need root (network namespaces, bridge, iptables)")
	}
	for _, tool := range []string{"ip", "iptables", "iptables-restore"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("netns tests need %s: %v", tool, err)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// startCluster starts n nodes with two data shards and registers a cleanup
// that closes the cluster and checks that nothing of it is left.
func startCluster(t *testing.T, mode Mode, n int) *Cluster {
	t.Helper()
	// The run folder is kept when the test fails, for the node logs.
	dir, err := os.MkdirTemp("", "cairn-jepsen-"+t.Name()+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node logs kept in %s", dir)
		} else {
			os.RemoveAll(dir)
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 75*time.Second)
	defer cancel()
	var c *Cluster
	c, err = Start(ctx, Config{
		Nodes: n, Binary: kvnodeBin, Dir: dir, Mode: mode, Shards: 2,
		Log: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		left := resourcesOf(c)
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		assertGone(t, left)
		for _, nd := range c.Nodes() {
			b, _ := os.ReadFile(nd.LogPath)
			if strings.Contains(string(b), "WARNING: DATA RACE") {
				t.Errorf("%s: the race detector reported a data race (log %s)", nd.Name, nd.LogPath)
			}
			if t.Failed() {
				t.Logf("--- end of %s ---\n%s", nd.LogPath, logTail(nd.LogPath, 4000))
			}
		}
	})
	return c
}

// resources are what a cluster owns on the machine.
type resources struct {
	pids       []int
	namespaces []string
	links      []string
	tag        string // FORWARD rule comment
}

func resourcesOf(c *Cluster) resources {
	var r resources
	for _, n := range c.Nodes() {
		if pid := c.PID(n.Index); pid != 0 {
			r.pids = append(r.pids, pid)
		}
		if n.Netns != "" {
			r.namespaces = append(r.namespaces, n.Netns)
			r.links = append(r.links, n.HostIface)
		}
	}
	if c.net != nil {
		r.links = append(r.links, c.net.bridge)
		r.tag = c.net.prefix
	}
	return r
}

// assertGone checks, by listing them, that the processes, namespaces, links
// and FORWARD rule are gone.
func assertGone(t *testing.T, r resources) {
	t.Helper()
	for _, pid := range r.pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			st, _ := procState(pid)
			t.Errorf("process %d still exists after Close (state %c, kill 0: %v)", pid, st, err)
		}
	}
	if len(r.namespaces) > 0 {
		out := mustRun(t, "ip", "netns", "list")
		for _, ns := range r.namespaces {
			if hasWord(out, ns) {
				t.Errorf("namespace %s still listed after Close:\n%s", ns, out)
			}
		}
	}
	if len(r.links) > 0 {
		out := mustRun(t, "ip", "-o", "link", "show")
		for _, l := range r.links {
			if hasWord(out, l) {
				t.Errorf("link %s still exists after Close:\n%s", l, out)
			}
		}
	}
	if r.tag != "" {
		if out := mustRun(t, "iptables", "-w", "-S", "FORWARD"); strings.Contains(out, r.tag+" ") {
			t.Errorf("FORWARD rule %s still there after Close:\n%s", r.tag, out)
		}
	}
}

// hasWord reports whether name occurs in out as a whole interface or
// namespace name ("name", "name:", "name@...").
func hasWord(out, name string) bool {
	for _, f := range strings.FieldsFunc(out, func(r rune) bool { return r == ' ' || r == '\n' || r == ':' || r == '@' }) {
		if f == name {
			return true
		}
	}
	return false
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := run(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// eventually polls f until it succeeds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %v: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
}

// cl returns a client for node i that does not retry: the test decides.
func cl(c *Cluster, i int) *client.Client {
	return c.Client(i, client.WithRetries(0, 0))
}

func put(c *Cluster, i int, timeout time.Duration, key, value string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := cl(c, i).Put(ctx, key, []byte(value))
	return err
}

func get(c *Cluster, i int, timeout time.Duration, key string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	v, _, err := cl(c, i).Get(ctx, key)
	return string(v), err
}

// readsBack checks, within timeout, that node i reads every key's value.
func readsBack(t *testing.T, c *Cluster, i int, timeout time.Duration, kv map[string]string) {
	t.Helper()
	for k, want := range kv {
		eventually(t, timeout, fmt.Sprintf("read %s through n%d", k, i), func() error {
			v, err := get(c, i, 3*time.Second, k)
			if err == nil && v != want {
				t.Fatalf("n%d reads %s = %q, want %q", i, k, v, want)
			}
			return err
		})
	}
}

// writeAll writes every key through node i, each within timeout.
func writeAll(t *testing.T, c *Cluster, i int, timeout time.Duration, kv map[string]string) {
	t.Helper()
	for k, v := range kv {
		eventually(t, timeout, fmt.Sprintf("write %s through n%d", k, i), func() error {
			return put(c, i, 3*time.Second, k, v)
		})
	}
}

func keys(prefix string, n int) map[string]string {
	kv := map[string]string{}
	for k := range n {
		kv[fmt.Sprintf("%s-%d", prefix, k)] = fmt.Sprintf("value of %s-%d", prefix, k)
	}
	return kv
}

// One three-node netns cluster runs through every fault in turn (starting
// clusters is the slow part); each subtest leaves it healthy again.
func TestNetnsCluster(t *testing.T) {
	requireNetns(t)
	t.Parallel()
	c := startCluster(t, Netns, 3)
	if c.Mode() != Netns {
		t.Fatalf("mode %v, want netns", c.Mode())
	}
	// Each subtest ends with every node ready (a leader known for every
	// shard). Not WaitHealthy: after a partition heals, gossip sees the
	// other side alive again only at its next rejoin (every 30s), although
	// raft and the data path recover at once.
	ready := func(t *testing.T) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
		defer cancel()
		if err := c.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("Topology", func(t *testing.T) {
		seen := map[string]bool{}
		for _, n := range c.Nodes() {
			if seen[n.IP] || !strings.HasPrefix(n.HTTPAddr, n.IP+":") || n.Name != "n"+strconv.Itoa(n.Index) {
				t.Fatalf("odd node %+v", n)
			}
			seen[n.IP] = true
			// The harness holds kvnode itself, in a process group of its own.
			pid := c.PID(n.Index)
			exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
			if err != nil || exe != kvnodeBin {
				t.Errorf("%s: pid %d runs %q (%v), want %s", n.Name, pid, exe, err, kvnodeBin)
			}
			if pgid, err := syscall.Getpgid(pid); err != nil || pgid != pid || pgid == syscall.Getpgrp() {
				t.Errorf("%s: process group %d (%v), want its own (%d)", n.Name, pgid, err, pid)
			}
			// And it runs in the node's namespace.
			mine, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
			st, err := os.Stat("/run/netns/" + n.Netns)
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("net:[%d]", st.Sys().(*syscall.Stat_t).Ino); mine != want {
				t.Errorf("%s: network namespace %s, want %s (%s)", n.Name, mine, want, n.Netns)
			}
		}
		st, err := c.Status(t.Context(), 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Nodes) != 3 || len(st.Shards) != 3 || st.RingEpoch == 0 {
			t.Fatalf("status of n2: %d nodes, %d shards, ring epoch %d; want 3 nodes, meta + 2 shards, an epoch", len(st.Nodes), len(st.Shards), st.RingEpoch)
		}
		leaders, err := c.ShardLeaders(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, sh := range st.Shards {
			if l, ok := leaders[sh.Shard]; !ok || c.Node(l).Name != sh.Leader {
				t.Errorf("ShardLeaders says shard %d is led by node %d; n2 says %s", sh.Shard, l, sh.Leader)
			}
		}
		t.Logf("shard leaders: %v", leaders)
	})

	t.Run("PutGet", func(t *testing.T) {
		if err := put(c, 1, 10*time.Second, "hello", "world"); err != nil {
			t.Fatal(err)
		}
		if v, err := get(c, 3, 10*time.Second, "hello"); err != nil || v != "world" {
			t.Fatalf("n3 reads hello = %q, %v", v, err)
		}
	})

	t.Run("Partition", func(t *testing.T) {
		// Isolate the node leading the most shards: it has leaderships to
		// lose.
		leaders, err := c.ShardLeaders(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		count := map[int]int{}
		x := 1
		for _, l := range leaders {
			count[l]++
			if count[l] > count[x] {
				x = l
			}
		}
		var others []int
		for i := 1; i <= 3; i++ {
			if i != x {
				others = append(others, i)
			}
		}
		t.Logf("isolating n%d (leads %d shards) from %v", x, count[x], others)
		if err := c.Partition([][]int{others}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Heal() })
		if got := c.Cuts(); len(got) != 2 {
			t.Fatalf("cuts %v, want the isolated node cut from both others", got)
		}
		// The harness still reaches the isolated node.
		if _, err := c.Status(t.Context(), x); err != nil {
			t.Fatalf("harness cannot reach isolated n%d: %v", x, err)
		}
		// A write through it cannot commit: the node answers 503 or 504
		// once its request timeout (10s) has passed. Meanwhile...
		isolated := make(chan error, 1)
		go func() {
			start := time.Now()
			err := put(c, x, 20*time.Second, "isolated", "never")
			t.Logf("put through isolated n%d answered after %v: %v", x, time.Since(start).Round(time.Millisecond), err)
			isolated <- err
		}()
		// ...the majority elects leaders where needed and takes writes.
		major := keys("majority", 8)
		start := time.Now()
		writeAll(t, c, others[0], 30*time.Second, major)
		t.Logf("majority side took %d writes after %v", len(major), time.Since(start).Round(time.Millisecond))
		// Its leaders are all on the majority side now.
		eventually(t, 20*time.Second, "leaders on the majority side", func() error {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			st, err := c.Status(ctx, others[0])
			if err != nil {
				return err
			}
			for _, sh := range st.Shards {
				if sh.Leader == "" || sh.Leader == c.Node(x).Name {
					return fmt.Errorf("n%d sees shard %d led by %q", others[0], sh.Shard, sh.Leader)
				}
			}
			return nil
		})

		var apiErr *client.APIError
		if err := <-isolated; !errors.As(err, &apiErr) || apiErr.Status != 503 && apiErr.Status != 504 {
			t.Fatalf("put through isolated n%d: %v, want a 503 or 504 answer", x, err)
		}

		if err := c.Heal(); err != nil {
			t.Fatal(err)
		}
		start = time.Now()
		writeAll(t, c, x, 30*time.Second, map[string]string{"healed": "yes"})
		t.Logf("write through n%d succeeded %v after the heal", x, time.Since(start).Round(time.Millisecond))
		readsBack(t, c, x, 20*time.Second, major)
		ready(t)
	})

	t.Run("CutRules", func(t *testing.T) {
		// Cut n1-n2 only: each drops the other's packets, n3 drops nothing.
		if err := c.Cut([][2]int{{2, 1}}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Heal() })
		rules := func(i int) string {
			return mustRun(t, "ip", "netns", "exec", c.Node(i).Netns, "iptables", "-w", "-S", partChain)
		}
		drops := func(i, from int) bool { return strings.Contains(rules(i), "-s "+c.Node(from).IP+"/32 -j DROP") }
		if !drops(1, 2) || !drops(2, 1) || drops(1, 3) || drops(2, 3) || drops(3, 1) || drops(3, 2) {
			t.Fatalf("rules after Cut(1-2):\nn1:\n%s\nn2:\n%s\nn3:\n%s", rules(1), rules(2), rules(3))
		}
		if err := c.Heal(); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 3; i++ {
			if strings.Contains(rules(i), "DROP") {
				t.Fatalf("n%d still drops after Heal:\n%s", i, rules(i))
			}
		}
		ready(t)
	})

	t.Run("KillRestart", func(t *testing.T) {
		before := keys("before-kill", 4)
		writeAll(t, c, 1, 10*time.Second, before)
		pid := c.PID(2)
		if err := c.Kill(2); err != nil {
			t.Fatal(err)
		}
		if c.Running(2) || c.PID(2) != 0 {
			t.Fatal("n2 still running after Kill")
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Fatalf("pid %d still exists after Kill: %v", pid, err)
		}
		if err := c.Kill(2); !errors.Is(err, ErrNotRunning) {
			t.Fatalf("second Kill: %v, want ErrNotRunning", err)
		}
		during := keys("while-killed", 4)
		writeAll(t, c, 1, 20*time.Second, during)
		if err := c.Restart(2); err != nil {
			t.Fatal(err)
		}
		if err := c.Restart(2); !errors.Is(err, ErrAlreadyRunning) {
			t.Fatalf("second Restart: %v, want ErrAlreadyRunning", err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
		defer cancel()
		if err := c.WaitReady(ctx, 2); err != nil {
			t.Fatal(err)
		}
		readsBack(t, c, 2, 20*time.Second, before)
		readsBack(t, c, 2, 20*time.Second, during)
		// The log is appended to across restarts.
		b, err := os.ReadFile(c.Node(2).LogPath)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(b), "harness (pid"); n != 2 {
			t.Fatalf("%s records %d starts, want 2", c.Node(2).LogPath, n)
		}
		ready(t)
	})

	t.Run("PauseResume", func(t *testing.T) {
		before := keys("before-pause", 2)
		writeAll(t, c, 1, 10*time.Second, before)
		if err := c.Pause(3); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Resume(3) })
		if st, err := procState(c.PID(3)); err != nil || st != 'T' {
			t.Fatalf("n3 state %c (%v) after Pause, want T (stopped)", st, err)
		}
		if !c.Paused(3) || !c.Running(3) {
			t.Fatal("n3 should be paused and running")
		}
		if _, err := get(c, 3, time.Second, "hello"); err == nil {
			t.Fatal("paused n3 answered a read")
		}
		during := keys("while-paused", 4)
		writeAll(t, c, 1, 20*time.Second, during)
		if err := c.Resume(3); err != nil {
			t.Fatal(err)
		}
		if c.Paused(3) {
			t.Fatal("n3 still paused after Resume")
		}
		readsBack(t, c, 3, 30*time.Second, before)
		readsBack(t, c, 3, 30*time.Second, during)
		ready(t)
	})

	t.Run("NetemDelay", func(t *testing.T) {
		if !c.Supports("delay") {
			err := c.Netem([]int{2}, 100*time.Millisecond, 0, 0)
			if !errors.Is(err, errors.ErrUnsupported) {
				t.Fatalf("Netem with a delay on a kernel without netem: %v, want ErrUnsupported", err)
			}
			t.Skipf("the kernel cannot delay packets: %v", err)
		}
		const delay = 150 * time.Millisecond
		// A read through n2 that each node can serve takes one round trip
		// from the harness to n2 at least.
		rtt := func() time.Duration {
			best := time.Hour
			for range 3 {
				start := time.Now()
				if _, err := get(c, 2, 10*time.Second, "hello"); err != nil {
					t.Fatal(err)
				}
				best = min(best, time.Since(start))
			}
			return best
		}
		base := rtt()
		if err := c.Netem([]int{2}, delay, 0, 0); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.ClearNetem() })
		slow := rtt()
		t.Logf("GET through n2: %v before netem, %v with a %v delay", base, slow, delay)
		if slow < delay {
			t.Fatalf("GET through delayed n2 took %v, less than the %v delay", slow, delay)
		}
		if err := c.ClearNetem(); err != nil {
			t.Fatal(err)
		}
		if fast := rtt(); fast >= delay {
			t.Fatalf("GET through n2 still takes %v after ClearNetem", fast)
		}
		ready(t)
	})

	t.Run("Loss", func(t *testing.T) {
		if !c.Supports("loss") {
			t.Skip("no way to drop packets here")
		}
		if err := c.Netem([]int{2}, 0, 0, 100); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.ClearNetem() })
		if _, err := get(c, 2, time.Second, "hello"); err == nil {
			t.Fatal("n2 answered with 100% packet loss")
		}
		// The others still serve.
		writeAll(t, c, 1, 20*time.Second, map[string]string{"during-loss": "x"})
		if err := c.ClearNetem(); err != nil {
			t.Fatal(err)
		}
		readsBack(t, c, 2, 30*time.Second, map[string]string{"during-loss": "x"})
		ready(t)
	})

	t.Run("CloseWithPausedNode", func(t *testing.T) {
		if err := c.Pause(1); err != nil {
			t.Fatal(err)
		}
		if err := c.Netem([]int{3}, 0, 0, 50); err != nil {
			t.Fatal(err)
		}
		if err := c.Partition([][]int{{1}, {2, 3}}); err != nil {
			t.Fatal(err)
		}
		left := resourcesOf(c)
		if len(left.pids) != 3 || len(left.namespaces) != 3 || len(left.links) != 4 {
			t.Fatalf("resources before Close: %+v", left)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		assertGone(t, left)
		if err := c.Restart(1); !errors.Is(err, ErrClosed) {
			t.Fatalf("Restart after Close: %v, want ErrClosed", err)
		}
		if err := c.Heal(); !errors.Is(err, ErrClosed) {
			t.Fatalf("Heal after Close: %v, want ErrClosed", err)
		}
	})
}

func TestLoopbackKillRestart(t *testing.T) {
	t.Parallel() // alongside the netns cluster: the two coexist
	c := startCluster(t, Loopback, 3)
	if c.Mode() != Loopback {
		t.Fatalf("mode %v, want loopback", c.Mode())
	}
	for _, f := range []string{"partition", "netem", "delay", "loss"} {
		if c.Supports(f) {
			t.Errorf("loopback claims to support %s", f)
		}
	}
	if !c.Supports("kill") || !c.Supports("pause") {
		t.Error("loopback should support kill and pause")
	}
	if err := c.Partition([][]int{{1}, {2, 3}}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Partition on loopback: %v, want ErrUnsupported", err)
	}
	if err := c.Netem([]int{1}, time.Millisecond, 0, 0); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Netem on loopback: %v, want ErrUnsupported", err)
	}
	before := keys("loop", 4)
	writeAll(t, c, 1, 10*time.Second, before)
	if err := c.Kill(1); err != nil {
		t.Fatal(err)
	}
	during := keys("loop-killed", 2)
	writeAll(t, c, 2, 20*time.Second, during)
	if err := c.Restart(1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx, 1); err != nil {
		t.Fatal(err)
	}
	readsBack(t, c, 1, 20*time.Second, before)
	readsBack(t, c, 1, 20*time.Second, during)

	// A graceful stop, and a restart after it.
	if err := c.Stop(2, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if c.Running(2) {
		t.Fatal("n2 still running after Stop")
	}
	if b, _ := os.ReadFile(c.Node(2).LogPath); !strings.Contains(string(b), `"stopped"`) {
		t.Fatal("n2 did not log a clean stop")
	}
	if err := c.Restart(2); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	readsBack(t, c, 2, 20*time.Second, during)
}

// Two clusters of one process get distinct names and subnets, and tearing
// one down leaves the other alone.
func TestNetnsNetworksDoNotCollide(t *testing.T) {
	requireNetns(t)
	mk := func() *Cluster {
		c := &Cluster{cfg: Config{Nodes: 2, Dir: t.TempDir()}, log: slog.New(slog.DiscardHandler),
			cuts: map[[2]int]bool{}, netem: map[int]bool{}, loss: map[int]bool{}}
		err := c.setupNetns()
		t.Cleanup(func() {
			left := resourcesOf(c)
			if err := c.teardownNetns(); err != nil {
				t.Error(err)
			}
			assertGone(t, left)
		})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := mk(), mk()
	if a.net.prefix == b.net.prefix || a.net.subnet.Overlaps(b.net.subnet) {
		t.Fatalf("clusters share names or subnets: %s %v, %s %v", a.net.prefix, a.net.subnet, b.net.prefix, b.net.subnet)
	}
	for _, n := range append(a.Nodes(), b.Nodes()...) {
		for _, name := range []string{n.HostIface, n.Netns} {
			if len(name) > maxIfname {
				t.Errorf("name %s longer than %d", name, maxIfname)
			}
		}
	}
	// Node 1 of a reaches node 2 of a through the bridge, but not b's
	// subnet.
	ping := func(c *Cluster, from int, to string) error {
		// A TCP connect to a closed port is refused (RST) when the path
		// works, and times out when packets are dropped.
		_, err := run("ip", "netns", "exec", c.Node(from).Netns, "timeout", "3", "bash", "-c", "exec 3<>/dev/tcp/"+to+"/1")
		if err != nil && strings.Contains(err.Error(), "refused") {
			return nil
		}
		return fmt.Errorf("no path: %v", err)
	}
	if err := ping(a, 1, a.Node(2).IP); err != nil {
		t.Fatalf("n1 -> n2 inside one cluster: %v", err)
	}
	left := resourcesOf(b)
	if err := b.teardownNetns(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, left)
	if err := ping(a, 1, a.Node(2).IP); err != nil {
		t.Fatalf("tearing b down broke a: %v", err)
	}
}

// Cleanup removes namespaces, links, FORWARD rules and processes whose
// owner is dead, and keeps those of a live owner (this process).
func TestCleanupRemovesLeftoversOfDeadHarness(t *testing.T) {
	requireNetns(t)
	// A PID that is dead: a child that has exited and been reaped.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := cmd.Process.Pid
	deadPrefix := fmt.Sprintf("cj%d-99", dead)
	livePrefix := fmt.Sprintf("cj%d-99", os.Getpid())
	ns := deadPrefix + "n1"
	mustRun(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { _ = deleteNamespace(ns) })
	mustRun(t, "ip", "link", "add", deadPrefix+"b", "type", "bridge")
	t.Cleanup(func() { _, _ = run("ip", "link", "del", deadPrefix+"b") })
	mustRun(t, "ip", "link", "add", deadPrefix+"v1", "type", "veth", "peer", "name", "eth0", "netns", ns)
	t.Cleanup(func() { _, _ = run("ip", "link", "del", deadPrefix+"v1") })
	mustRun(t, "ip", "link", "add", livePrefix+"b", "type", "bridge")
	t.Cleanup(func() { _, _ = run("ip", "link", "del", livePrefix+"b") })
	for _, p := range []string{deadPrefix, livePrefix} {
		spec := []string{"FORWARD", "-i", p + "b", "-o", p + "b", "-m", "comment", "--comment", p, "-j", "ACCEPT"}
		mustRun(t, "iptables", append([]string{"-w", "-A"}, spec...)...)
		t.Cleanup(func() { _, _ = run("iptables", append([]string{"-w", "-D"}, spec...)...) })
	}
	// A process of the dead harness, in its namespace.
	sleeper := exec.Command("ip", "netns", "exec", ns, "sleep", "600")
	sleeper.Env = append(os.Environ(), ownerEnv+"="+strconv.Itoa(dead))
	sleeper.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- sleeper.Wait() }()
	t.Cleanup(func() { _ = sleeper.Process.Kill() })

	if err := Cleanup(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("Cleanup left the dead harness's process running")
	}
	nsList := mustRun(t, "ip", "netns", "list")
	links := mustRun(t, "ip", "-o", "link", "show")
	fwd := mustRun(t, "iptables", "-w", "-S", "FORWARD")
	if hasWord(nsList, ns) {
		t.Errorf("namespace %s survived Cleanup", ns)
	}
	for _, l := range []string{deadPrefix + "b", deadPrefix + "v1"} {
		if hasWord(links, l) {
			t.Errorf("link %s survived Cleanup", l)
		}
	}
	if strings.Contains(fwd, deadPrefix+" ") {
		t.Errorf("FORWARD rule %s survived Cleanup:\n%s", deadPrefix, fwd)
	}
	if !hasWord(links, livePrefix+"b") || !strings.Contains(fwd, livePrefix+" ") {
		t.Errorf("Cleanup removed the resources of a live harness (%s)", livePrefix)
	}
}

func TestPickSubnetSkipsUsedPrefixes(t *testing.T) {
	used := []netip.Prefix{
		netip.MustParsePrefix("10.213.0.0/24"),
		netip.MustParsePrefix("10.213.1.0/25"),
		netip.MustParsePrefix("10.213.2.7/32"),
	}
	p, err := pickSubnet(used, 0)
	if err != nil || p != netip.MustParsePrefix("10.213.3.0/24") {
		t.Fatalf("pickSubnet = %v, %v; want 10.213.3.0/24", p, err)
	}
	if p, _ := pickSubnet(nil, 256*10+5); p != netip.MustParsePrefix("10.213.5.0/24") {
		t.Fatalf("pickSubnet wraps to %v", p)
	}
	if _, err := pickSubnet([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, 0); err == nil {
		t.Fatal("pickSubnet found a subnet inside a used 10.0.0.0/8")
	}
}
