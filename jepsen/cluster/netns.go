package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Node ports inside the namespaces.
const (
	httpPort   = 7070
	raftPort   = 7071
	gossipPort = 7072
)

// Chains the harness owns inside every node's namespace.
const (
	partChain = "CAIRN-PART"
	lossChain = "CAIRN-LOSS"
)

// netEnv is the network of a Netns-mode cluster and what of it exists.
type netEnv struct {
	seq    int    // takeSeq's number, 0 once released
	prefix string // cj<pid>-<seq>: start of every name, and the FORWARD rule's tag
	bridge string
	subnet netip.Prefix
	hostIP netip.Addr

	iptables bool   // iptables and iptables-restore are installed
	netem    bool   // the kernel has sch_netem
	netemWhy string // why not
	ipPath   string

	bridgeUp  bool
	fwdRule   []string // the FORWARD rule's spec, once inserted
	namespace []string // created namespaces
	veths     []string // created host-side veths
}

// netnsUnavailable says why Netns mode cannot work here, or "".
func netnsUnavailable() string {
	if os.Geteuid() != 0 {
		return "not running as root"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "ip (iproute2) not found"
	}
	return ""
}

// run runs a network command; its error includes the command and its output.
func run(name string, args ...string) (string, error) {
	return runInput("", name, args...)
}

func runInput(stdin, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if stdin != "" {
			msg += "\ninput:\n" + stdin
		}
		return string(out), fmt.Errorf("cluster: %s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return string(out), nil
}

// Names: cj<pid>-<seq> then b (bridge), v<i> (veth on the bridge) or n<i>
// (namespace); cj<pid>-<seq> alone tags the FORWARD rule. seq is the lowest
// number no other live cluster of this process uses, so names stay short:
// with a 7-digit PID, a 1-digit seq and a 2-digit index they are 13
// characters long; IFNAMSIZ allows 15.
var nameRE = regexp.MustCompile(`^cj([0-9]+)-([0-9]+)(b|v[0-9]+|n[0-9]+)?$`)

const maxIfname = 15

var (
	seqMu   sync.Mutex
	seqUsed = map[int]bool{}
)

// takeSeq returns the lowest sequence number no live cluster of this
// process uses; releaseSeq gives it back.
func takeSeq() int {
	seqMu.Lock()
	defer seqMu.Unlock()
	for k := 1; ; k++ {
		if !seqUsed[k] {
			seqUsed[k] = true
			return k
		}
	}
}

func releaseSeq(k int) {
	seqMu.Lock()
	defer seqMu.Unlock()
	delete(seqUsed, k)
}

// setupNetns creates the bridge, the namespaces and veths, and the FORWARD
// rule, and lays the nodes out on the subnet. What it created is recorded in
// c.net for teardownNetns, also when it fails halfway.
func (c *Cluster) setupNetns() error {
	if why := netnsUnavailable(); why != "" {
		return fmt.Errorf("cluster: netns mode: %s: %w", why, errors.ErrUnsupported)
	}
	seq := takeSeq()
	ne := &netEnv{seq: seq, prefix: fmt.Sprintf("cj%d-%d", os.Getpid(), seq)}
	c.net = ne
	ne.bridge = ne.prefix + "b"
	if l := len(ne.prefix + "v" + strconv.Itoa(c.cfg.Nodes)); l > maxIfname {
		return fmt.Errorf("cluster: interface name %sv%d is %d characters, more than %d", ne.prefix, c.cfg.Nodes, l, maxIfname)
	}
	ne.ipPath, _ = exec.LookPath("ip")
	_, err1 := exec.LookPath("iptables")
	_, err2 := exec.LookPath("iptables-restore")
	ne.iptables = err1 == nil && err2 == nil
	if !ne.iptables {
		c.log.Warn("cluster: iptables or iptables-restore not found: no partitions, and bridged traffic may be dropped by the host's FORWARD policy")
	}

	// The subnet is chosen and claimed (by the bridge's address) under a
	// lock, so that concurrent harnesses pick different ones.
	lockDir := "/run"
	if _, err := os.Stat(lockDir); err != nil {
		lockDir = os.TempDir()
	}
	unlock, err := lockFile(filepath.Join(lockDir, "cairn-jepsen-net.lock"))
	if err != nil {
		return err
	}
	err = c.createBridge(ne)
	unlock()
	if err != nil {
		return err
	}
	if ne.iptables {
		// Docker sets the FORWARD policy to DROP; with br_netfilter, packets
		// between two ports of the bridge pass through FORWARD.
		spec := []string{"FORWARD", "-i", ne.bridge, "-o", ne.bridge, "-m", "comment", "--comment", ne.prefix, "-j", "ACCEPT"}
		if _, err := run("iptables", append([]string{"-w", "-I", spec[0], "1"}, spec[1:]...)...); err != nil {
			return err
		}
		ne.fwdRule = spec
	}

	c.nodes = nil
	base := ne.subnet.Addr().As4()
	for i := 1; i <= c.cfg.Nodes; i++ {
		ip := netip.AddrFrom4([4]byte{base[0], base[1], base[2], byte(i)}).String()
		n := c.node(i, ip,
			fmt.Sprintf("%s:%d", ip, httpPort), fmt.Sprintf("%s:%d", ip, raftPort), fmt.Sprintf("%s:%d", ip, gossipPort))
		n.Netns, n.Iface, n.HostIface = ne.prefix+"n"+strconv.Itoa(i), "eth0", ne.prefix+"v"+strconv.Itoa(i)
		c.nodes = append(c.nodes, n)
		if err := c.createNodeNet(ne, n); err != nil {
			return err
		}
	}
	c.probeNetem(ne)
	c.log.Info("cluster: network ready", "bridge", ne.bridge, "subnet", ne.subnet, "harness", ne.hostIP, "netem", ne.netem, "iptables", ne.iptables)
	return nil
}

// createBridge picks a free /24 and creates the bridge with the harness's
// address in it (.254).
func (c *Cluster) createBridge(ne *netEnv) error {
	used, err := usedPrefixes()
	if err != nil {
		return err
	}
	subnet, err := pickSubnet(used, os.Getpid())
	if err != nil {
		return err
	}
	ne.subnet = subnet
	b := subnet.Addr().As4()
	ne.hostIP = netip.AddrFrom4([4]byte{b[0], b[1], b[2], 254})
	if _, err := run("ip", "link", "add", ne.bridge, "type", "bridge"); err != nil {
		return err
	}
	ne.bridgeUp = true
	if _, err := run("ip", "addr", "add", netip.PrefixFrom(ne.hostIP, 24).String(), "dev", ne.bridge); err != nil {
		return err
	}
	_, err = run("ip", "link", "set", ne.bridge, "up")
	return err
}

// createNodeNet creates node n's namespace, its veth pair and addresses, and
// the harness's iptables chains in it.
func (c *Cluster) createNodeNet(ne *netEnv, n Node) error {
	if _, err := run("ip", "netns", "add", n.Netns); err != nil {
		return err
	}
	ne.namespace = append(ne.namespace, n.Netns)
	if _, err := run("ip", "link", "add", n.HostIface, "type", "veth", "peer", "name", n.Iface, "netns", n.Netns); err != nil {
		return err
	}
	ne.veths = append(ne.veths, n.HostIface)
	steps := [][]string{
		{"link", "set", n.HostIface, "master", ne.bridge},
		{"link", "set", n.HostIface, "up"},
		{"-n", n.Netns, "link", "set", "lo", "up"},
		{"-n", n.Netns, "addr", "add", n.IP + "/24", "dev", n.Iface},
		{"-n", n.Netns, "link", "set", n.Iface, "up"},
	}
	for _, s := range steps {
		if _, err := run("ip", s...); err != nil {
			return err
		}
	}
	if ne.iptables {
		rules := fmt.Sprintf("*filter\n:%s - [0:0]\n:%s - [0:0]\n-A INPUT -j %s\n-A INPUT -j %s\nCOMMIT\n", partChain, lossChain, partChain, lossChain)
		if _, err := runInput(rules, "ip", "netns", "exec", n.Netns, "iptables-restore", "--noflush"); err != nil {
			return err
		}
	}
	return nil
}

// probeNetem finds out whether the kernel has the netem qdisc, on the first
// namespace's loopback interface.
func (c *Cluster) probeNetem(ne *netEnv) {
	if _, err := exec.LookPath("tc"); err != nil {
		ne.netemWhy = "tc not found"
	} else if _, err := run("tc", "-n", c.nodes[0].Netns, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"); err != nil {
		ne.netemWhy = err.Error()
	} else {
		ne.netem = true
		if _, err := run("tc", "-n", c.nodes[0].Netns, "qdisc", "del", "dev", "lo", "root"); err != nil {
			c.log.Warn("cluster: removing the netem probe", "error", err)
		}
	}
	if !ne.netem {
		c.log.Warn("cluster: no netem: packet delay unavailable, packet loss falls back to iptables", "reason", ne.netemWhy)
	}
}

// teardownNetns kills whatever still runs in the namespaces and removes
// them, the veths, the bridge and the FORWARD rule.
func (c *Cluster) teardownNetns() error {
	ne := c.net
	if ne == nil {
		return nil
	}
	var errs []error
	for _, v := range ne.veths {
		// Deleting one end removes the pair at once (deleting the namespace
		// would leave that to a kernel worker).
		if _, err := run("ip", "link", "del", v); err != nil && !linkGone(v) {
			errs = append(errs, err)
		}
	}
	ne.veths = nil
	for _, ns := range ne.namespace {
		errs = append(errs, deleteNamespace(ns))
	}
	ne.namespace = nil
	if ne.bridgeUp {
		if _, err := run("ip", "link", "del", ne.bridge); err != nil && !linkGone(ne.bridge) {
			errs = append(errs, err)
		}
		ne.bridgeUp = false
	}
	if ne.fwdRule != nil {
		if _, err := run("iptables", append([]string{"-w", "-D"}, ne.fwdRule...)...); err != nil {
			errs = append(errs, err)
		}
		ne.fwdRule = nil
	}
	c.netMu.Lock()
	clear(c.cuts)
	clear(c.netem)
	clear(c.loss)
	c.netMu.Unlock()
	err := errors.Join(errs...)
	if err == nil && ne.seq != 0 {
		// Names with this number are free again (kept reserved when
		// something could not be removed).
		releaseSeq(ne.seq)
		ne.seq = 0
	}
	return err
}

func linkGone(name string) bool {
	_, err := run("ip", "link", "show", "dev", name)
	return err != nil
}

// deleteNamespace kills the processes in ns and deletes it.
func deleteNamespace(ns string) error {
	out, err := run("ip", "netns", "pids", ns)
	if err == nil {
		var pids []int
		for _, f := range strings.Fields(out) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		// Killed processes that are not the harness's children are reaped
		// by init; wait until they are gone from the namespace.
		deadline := time.Now().Add(10 * time.Second)
		for len(pids) > 0 && time.Now().Before(deadline) {
			pids = slices.DeleteFunc(pids, func(pid int) bool {
				st, err := procState(pid)
				return err != nil || st == 'Z'
			})
			if len(pids) > 0 {
				time.Sleep(10 * time.Millisecond) // polling interval
			}
		}
	}
	if _, err := run("ip", "netns", "del", ns); err != nil {
		if _, statErr := os.Stat(filepath.Join("/run/netns", ns)); os.IsNotExist(statErr) {
			return nil
		}
		return err
	}
	return nil
}

// usedPrefixes returns the IPv4 prefixes the machine has addresses in or
// routes to (default routes excepted).
func usedPrefixes() ([]netip.Prefix, error) {
	var used []netip.Prefix
	out, err := run("ip", "-4", "-o", "addr", "show")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if k := slices.Index(f, "inet"); k >= 0 && k+1 < len(f) {
			if p, err := netip.ParsePrefix(f[k+1]); err == nil {
				used = append(used, p.Masked())
			}
		}
	}
	out, err = run("ip", "-4", "route", "show", "table", "all")
	if err != nil {
		return nil, err
	}
	routeTypes := []string{"unicast", "local", "broadcast", "multicast", "throw", "unreachable", "prohibit", "blackhole", "nat", "anycast"}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && slices.Contains(routeTypes, f[0]) {
			f = f[1:]
		}
		if len(f) == 0 || f[0] == "default" {
			continue
		}
		s := f[0]
		if !strings.Contains(s, "/") {
			s += "/32"
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			used = append(used, p.Masked())
		}
	}
	return used, nil
}

// pickSubnet returns a /24 in 10.213.0.0 to 10.222.255.0 that overlaps no
// used prefix, starting at a place that depends on seed.
func pickSubnet(used []netip.Prefix, seed int) (netip.Prefix, error) {
	const first, count = 213, 10
	total := count * 256
	for k := range total {
		n := (seed + k) % total
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(first + n/256), byte(n % 256), 0}), 24)
		if !slices.ContainsFunc(used, p.Overlaps) {
			return p, nil
		}
	}
	return netip.Prefix{}, errors.New("cluster: no free /24 in 10.213.0.0-10.222.255.255")
}

// lockFile takes an exclusive flock on path; the lock goes when the
// process does.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cluster: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("cluster: lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

func (c *Cluster) needNet(fault string) error {
	if c.net == nil {
		return fmt.Errorf("cluster: %s needs netns mode (this cluster runs in %s mode): %w", fault, c.mode, errors.ErrUnsupported)
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return nil
}

// Partition splits the nodes into groups that cannot reach each other;
// a node in no group is cut off from every other node. The harness still
// reaches every node. It replaces any earlier partition or cut.
func (c *Cluster) Partition(groups [][]int) error {
	group := map[int]int{}
	for g, members := range groups {
		for _, i := range members {
			if err := c.check(i); err != nil {
				return err
			}
			if _, dup := group[i]; dup {
				return fmt.Errorf("cluster: node %d is in two groups of %v", i, groups)
			}
			group[i] = g
		}
	}
	next := len(groups)
	for i := 1; i <= len(c.nodes); i++ {
		if _, ok := group[i]; !ok {
			group[i] = next // alone
			next++
		}
	}
	var pairs [][2]int
	for a := 1; a <= len(c.nodes); a++ {
		for b := a + 1; b <= len(c.nodes); b++ {
			if group[a] != group[b] {
				pairs = append(pairs, [2]int{a, b})
			}
		}
	}
	c.log.Info("cluster: partition", "groups", groups)
	return c.Cut(pairs)
}

// Cut drops all packets, both ways, between the two nodes of each pair (the
// general form of Partition: a ring of overlapping majorities, a bridge).
// It replaces any earlier partition or cut; Cut(nil) heals.
func (c *Cluster) Cut(pairs [][2]int) error {
	if err := c.needNet("partition"); err != nil {
		return err
	}
	if !c.net.iptables {
		return fmt.Errorf("cluster: partition needs iptables and iptables-restore: %w", errors.ErrUnsupported)
	}
	cuts := map[[2]int]bool{}
	for _, p := range pairs {
		for _, i := range p {
			if err := c.check(i); err != nil {
				return err
			}
		}
		if p[0] == p[1] {
			return fmt.Errorf("cluster: cannot cut node %d from itself", p[0])
		}
		cuts[[2]int{min(p[0], p[1]), max(p[0], p[1])}] = true
	}
	c.netMu.Lock()
	defer c.netMu.Unlock()
	// Every namespace drops what arrives from the nodes it is cut from.
	rules := make([]string, len(c.nodes))
	for k := range c.nodes {
		rules[k] = "*filter\n-F " + partChain + "\n"
	}
	for p := range cuts {
		a, b := c.nodes[p[0]-1], c.nodes[p[1]-1]
		rules[p[0]-1] += fmt.Sprintf("-A %s -s %s/32 -j DROP\n", partChain, b.IP)
		rules[p[1]-1] += fmt.Sprintf("-A %s -s %s/32 -j DROP\n", partChain, a.IP)
	}
	err := c.eachNode(func(k int) error {
		_, err := runInput(rules[k]+"COMMIT\n", "ip", "netns", "exec", c.nodes[k].Netns, "iptables-restore", "--noflush")
		return err
	})
	if err != nil {
		return err
	}
	c.cuts = cuts
	if len(pairs) > 0 {
		c.log.Info("cluster: cut", "pairs", sortedPairs(cuts))
	}
	return nil
}

func sortedPairs(m map[[2]int]bool) [][2]int {
	var out [][2]int
	for p := range m {
		out = append(out, p)
	}
	slices.SortFunc(out, func(x, y [2]int) int {
		if x[0] != y[0] {
			return x[0] - y[0]
		}
		return x[1] - y[1]
	})
	return out
}

// Cuts returns the pairs of nodes currently cut from each other.
func (c *Cluster) Cuts() [][2]int {
	c.netMu.Lock()
	defer c.netMu.Unlock()
	return sortedPairs(c.cuts)
}

// Heal removes every partition and cut.
func (c *Cluster) Heal() error {
	if err := c.needNet("partition"); err != nil {
		return err
	}
	c.log.Info("cluster: heal")
	return c.Cut(nil)
}

// eachNode runs f for every node index k (0-based) concurrently, so that a
// network change lands on all namespaces at nearly the same time.
func (c *Cluster) eachNode(f func(k int) error) error {
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for k := range c.nodes {
		wg.Go(func() { errs[k] = f(k) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Netem degrades what the given nodes send: each packet is delayed by delay
// plus or minus jitter, and lossPct percent of them are dropped. It replaces
// earlier settings of these nodes; all zero clears them. Without the kernel's
// netem qdisc, loss alone is applied with iptables (to what the nodes
// receive) and a delay fails with errors.ErrUnsupported.
func (c *Cluster) Netem(nodes []int, delay, jitter time.Duration, lossPct float64) error {
	if err := c.needNet("netem"); err != nil {
		return err
	}
	for _, i := range nodes {
		if err := c.check(i); err != nil {
			return err
		}
	}
	if delay < 0 || jitter < 0 || lossPct < 0 || lossPct > 100 {
		return fmt.Errorf("cluster: netem delay %v jitter %v loss %v%%: out of range", delay, jitter, lossPct)
	}
	ne := c.net
	c.netMu.Lock()
	defer c.netMu.Unlock()
	c.log.Info("cluster: netem", "nodes", nodes, "delay", delay, "jitter", jitter, "loss_pct", lossPct)
	if delay == 0 && jitter == 0 && lossPct == 0 {
		return c.clearNetem(nodes)
	}
	switch {
	case ne.netem:
		args := []string{"delay", fmt.Sprintf("%dus", delay.Microseconds())}
		if jitter > 0 {
			args = append(args, fmt.Sprintf("%dus", jitter.Microseconds()))
		}
		if lossPct > 0 {
			args = append(args, "loss", strconv.FormatFloat(lossPct, 'f', -1, 64)+"%")
		}
		for _, i := range nodes {
			n := c.nodes[i-1]
			if _, err := run("tc", append([]string{"-n", n.Netns, "qdisc", "replace", "dev", n.Iface, "root", "netem"}, args...)...); err != nil {
				return err
			}
			c.netem[i] = true
		}
		return nil
	case delay == 0 && jitter == 0 && ne.iptables:
		rule := fmt.Sprintf("-A %s -j DROP\n", lossChain)
		if lossPct < 100 {
			rule = fmt.Sprintf("-A %s -m statistic --mode random --probability %.6f -j DROP\n", lossChain, lossPct/100)
		}
		for _, i := range nodes {
			if _, err := runInput("*filter\n-F "+lossChain+"\n"+rule+"COMMIT\n", "ip", "netns", "exec", c.nodes[i-1].Netns, "iptables-restore", "--noflush"); err != nil {
				return err
			}
			c.loss[i] = true
		}
		return nil
	}
	return fmt.Errorf("cluster: netem delay: the kernel has no netem qdisc (%s): %w", ne.netemWhy, errors.ErrUnsupported)
}

// ClearNetem removes every node's delay and loss.
func (c *Cluster) ClearNetem() error {
	if err := c.needNet("netem"); err != nil {
		return err
	}
	c.netMu.Lock()
	defer c.netMu.Unlock()
	var all []int
	for i := 1; i <= len(c.nodes); i++ {
		all = append(all, i)
	}
	c.log.Info("cluster: clear netem")
	return c.clearNetem(all)
}

func (c *Cluster) clearNetem(nodes []int) error {
	var errs []error
	for _, i := range nodes {
		n := c.nodes[i-1]
		if c.netem[i] {
			if _, err := run("tc", "-n", n.Netns, "qdisc", "del", "dev", n.Iface, "root"); err != nil {
				errs = append(errs, err)
			} else {
				delete(c.netem, i)
			}
		}
		if c.loss[i] {
			if _, err := runInput("*filter\n-F "+lossChain+"\nCOMMIT\n", "ip", "netns", "exec", n.Netns, "iptables-restore", "--noflush"); err != nil {
				errs = append(errs, err)
			} else {
				delete(c.loss, i)
			}
		}
	}
	return errors.Join(errs...)
}

// Cleanup removes what harness processes that no longer run left behind:
// their kvnode processes, namespaces, bridges, veths and FORWARD rules. The
// owner's PID is part of every name (and of every kvnode's environment), so
// the resources of a harness that still runs, this one included, are left
// alone. Cleanup needs root for the network part.
func Cleanup() error {
	var errs []error
	dead := func(owner string) bool {
		pid, err := strconv.Atoi(owner)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			return false
		}
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	}
	// kvnode processes, found by the owner in their environment.
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		for _, kv := range strings.Split(string(env), "\x00") {
			if owner, ok := strings.CutPrefix(kv, ownerEnv+"="); ok && dead(owner) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if os.Geteuid() == 0 {
		errs = append(errs, cleanupDisks(dead))
	}
	if _, err := exec.LookPath("ip"); err != nil || os.Geteuid() != 0 {
		return errors.Join(errs...)
	}
	// Namespaces ("name" or "name (id: N)").
	if out, err := run("ip", "netns", "list"); err == nil {
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			if m := nameRE.FindStringSubmatch(f[0]); m != nil && strings.HasPrefix(m[3], "n") && dead(m[1]) {
				errs = append(errs, deleteNamespace(f[0]))
			}
		}
	} else {
		errs = append(errs, err)
	}
	// Veths first, then bridges ("3: name@peer: <...>" or "3: name: <...>").
	if out, err := run("ip", "-o", "link", "show"); err == nil {
		var veths, bridges []string
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			m := nameRE.FindStringSubmatch(name)
			if m == nil || !dead(m[1]) {
				continue
			}
			switch {
			case strings.HasPrefix(m[3], "v"):
				veths = append(veths, name)
			case m[3] == "b":
				bridges = append(bridges, name)
			}
		}
		for _, name := range append(veths, bridges...) {
			if _, err := run("ip", "link", "del", name); err != nil && !linkGone(name) {
				errs = append(errs, err)
			}
		}
	} else {
		errs = append(errs, err)
	}
	// FORWARD rules tagged with a dead owner's prefix.
	if _, err := exec.LookPath("iptables"); err == nil {
		out, err := run("iptables", "-w", "-S", "FORWARD")
		if err != nil {
			errs = append(errs, err)
		}
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) < 3 || f[0] != "-A" {
				continue
			}
			k := slices.Index(f, "--comment")
			if k < 0 || k+1 >= len(f) {
				continue
			}
			if m := nameRE.FindStringSubmatch(strings.Trim(f[k+1], `"`)); m != nil && m[3] == "" && dead(m[1]) {
				if _, err := run("iptables", append([]string{"-w", "-D"}, f[1:]...)...); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}
