package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/node"
	"github.com/cairndb/cairn/ring"
)

// Process-level tests: real kvnode processes (built with the race
// detector) on loopback, stopped with real signals.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// kvnodeBinary builds kvnode once per test run.
func kvnodeBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kvnode-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "kvnode")
		out, err := exec.Command("go", "build", "-race", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// freeAddr returns a loopback address whose port is free for TCP and UDP,
// below the ephemeral range (32768 and up on Linux): a port the kernel
// handed out could be taken by an outgoing connection before the node
// binds it, which once kept a CI run's cluster from forming.
func freeAddr(t *testing.T) string {
	t.Helper()
	for range 500 {
		port := 20000 + rand.IntN(12000)
		if _, taken := handedOut.LoadOrStore(port, true); taken {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err != nil {
			continue
		}
		pc.Close()
		return addr
	}
	t.Fatal("no port free for TCP and UDP below the ephemeral range")
	return ""
}

// handedOut holds the ports freeAddr returned in this process, so that no
// two nodes get the same one.
var handedOut sync.Map

// proc is one kvnode process.
type proc struct {
	t                  *testing.T
	name               string
	http, raft, gossip string
	dir, log           string
	args               []string
	cmd                *exec.Cmd
	exited             chan error
	client             *client.Client
}

// procCluster is k kvnode processes that form one cluster.
type procCluster struct {
	t     *testing.T
	bin   string
	procs map[string]*proc
	names []string
}

func startProcCluster(t *testing.T, k, shards int) *procCluster {
	t.Helper()
	pc := &procCluster{t: t, bin: kvnodeBinary(t), procs: map[string]*proc{}}
	var seeds []string
	root := t.TempDir()
	for i := 1; i <= k; i++ {
		p := &proc{t: t, name: fmt.Sprintf("n%d", i), http: freeAddr(t), raft: freeAddr(t), gossip: freeAddr(t)}
		p.dir = filepath.Join(root, p.name)
		p.log = filepath.Join(root, p.name+".log")
		p.client = client.New(p.http, client.WithRetries(0, 0))
		seeds = append(seeds, p.gossip)
		pc.procs[p.name] = p
		pc.names = append(pc.names, p.name)
	}
	for _, p := range pc.procs {
		p.args = []string{
			"--name=" + p.name, "--data-dir=" + p.dir,
			"--http-addr=" + p.http, "--raft-addr=" + p.raft, "--gossip-addr=" + p.gossip,
			"--join=" + strings.Join(seeds, ","), "--bootstrap-expect=" + strconv.Itoa(k),
			"--shards=" + strconv.Itoa(shards), "--gossip-local", "--log-level=debug",
		}
		p.start()
	}
	t.Cleanup(func() {
		for _, p := range pc.procs {
			p.kill()
		}
		for _, p := range pc.procs {
			if b, err := os.ReadFile(p.log); err == nil && bytes.Contains(b, []byte("WARNING: DATA RACE")) {
				t.Errorf("%s: the race detector reported a data race (log %s)", p.name, p.log)
			}
		}
		if t.Failed() {
			for _, p := range pc.procs {
				b, _ := os.ReadFile(p.log)
				if len(b) > 6000 {
					b = b[len(b)-6000:]
				}
				t.Logf("--- tail of %s ---\n%s", p.log, b)
			}
		}
	})
	pc.waitReady(90 * time.Second)
	return pc
}

func (p *proc) start() {
	p.t.Helper()
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		p.t.Fatal(err)
	}
	p.cmd = exec.Command(binPathOrFail(p.t), p.args...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.exited = make(chan error, 1)
	go func() { p.exited <- p.cmd.Wait(); logf.Close() }()
}

func binPathOrFail(t *testing.T) string { return kvnodeBinary(t) }

// kill sends SIGKILL and waits for the process to end.
func (p *proc) kill() {
	if p.cmd == nil || p.exited == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	p.exited = nil
}

// stop sends SIGTERM and returns the process's exit error.
func (p *proc) stop(timeout time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.exited = nil
		return err
	case <-time.After(timeout):
		_ = p.cmd.Process.Signal(syscall.SIGQUIT) // goroutine dump into the log
		time.Sleep(time.Second)
		p.kill()
		return fmt.Errorf("%s did not stop within %v", p.name, timeout)
	}
}

func (pc *procCluster) waitReady(timeout time.Duration) {
	pc.t.Helper()
	deadline := time.Now().Add(timeout)
	for _, name := range pc.names {
		p := pc.procs[name]
		for !ready(p.http) {
			if time.Now().After(deadline) {
				pc.t.Fatalf("%s not ready after %v", name, timeout)
			}
			select {
			case err := <-p.exited:
				pc.t.Fatalf("%s exited: %v", name, err)
			case <-time.After(100 * time.Millisecond): // poll readiness
			}
		}
	}
}

func (pc *procCluster) status(name string) node.ClusterStatus {
	pc.t.Helper()
	ctx, cancel := context.WithTimeout(pc.t.Context(), 5*time.Second)
	defer cancel()
	raw, err := pc.procs[name].client.Cluster(ctx)
	if err != nil {
		pc.t.Fatalf("status of %s: %v", name, err)
	}
	var st node.ClusterStatus
	if err := json.Unmarshal(raw, &st); err != nil {
		pc.t.Fatal(err)
	}
	return st
}

// shardOf maps keys to shards the way a cluster with these shards does.
func shardOf(t *testing.T, shards int) func(string) fsm.ShardID {
	ids := make([]fsm.ShardID, shards)
	for i := range ids {
		ids[i] = fsm.ShardID(i + 1)
	}
	r, err := ring.New(1, ring.DefaultVNodes, ids)
	if err != nil {
		t.Fatal(err)
	}
	return func(k string) fsm.ShardID { return r.Locate([]byte(k)) }
}

// writeLog is what concurrent writers observed.
type writeLog struct {
	mu      sync.Mutex
	acked   map[string]uint64 // key → version
	unknown map[string]bool
	okTimes map[fsm.ShardID][]time.Time // when writes to each shard were acknowledged
	failed  int
}

// writers write unique keys through the nodes that alive names (n writers
// spread over the shards), until ctx
// ends. A write whose outcome is unknown is recorded as such (it may or may
// not have applied), never as failed.
func (pc *procCluster) writers(ctx context.Context, n, shards int, locate func(string) fsm.ShardID, alive func() []string, wl *writeLog) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each writer keeps to one shard, so that a shard without a
			// leader stalls only its own writers.
			mine := fsm.ShardID(w%shards + 1)
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for seq := 0; ctx.Err() == nil; seq++ {
				key := fmt.Sprintf("w%d-%06d", w, seq)
				if locate(key) != mine {
					continue
				}
				names := alive()
				p := pc.procs[names[rng.IntN(len(names))]]
				wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				ver, err := p.client.Put(wctx, key, []byte("v-"+key))
				cancel()
				wl.mu.Lock()
				switch {
				case err == nil:
					wl.acked[key] = ver
					wl.okTimes[mine] = append(wl.okTimes[mine], time.Now())
				case errors.Is(err, client.ErrOutcomeUnknown), ctx.Err() != nil:
					wl.unknown[key] = true
				default:
					wl.failed++
				}
				wl.mu.Unlock()
			}
		}()
	}
	return &wg
}

// mostLeader returns the node that leads the most shards, per n1's view.
func (pc *procCluster) mostLeader(from string) (string, int) {
	counts := map[string]int{}
	for _, sh := range pc.status(from).Shards {
		counts[sh.Leader]++
	}
	best := ""
	for _, name := range pc.names {
		if best == "" || counts[name] > counts[best] {
			best = name
		}
	}
	return best, counts[best]
}

// resumeTime waits until every shard took a write after t0 and returns the
// slowest shard's delay.
func resumeTime(t *testing.T, wl *writeLog, shards int, t0 time.Time, limit time.Duration) time.Duration {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		var delays []time.Duration
		wl.mu.Lock()
		for id := 1; id <= shards; id++ {
			times := wl.okTimes[fsm.ShardID(id)]
			i, _ := slices.BinarySearchFunc(times, t0, time.Time.Compare)
			if i < len(times) {
				delays = append(delays, times[i].Sub(t0))
			}
		}
		wl.mu.Unlock()
		if len(delays) == shards {
			t.Logf("writes resumed per shard after %v", delays)
			return slices.Max(delays)
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d shards took a write within %v", len(delays), shards, limit)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}

// electionBound is how long a shard may go without a leader after its
// leader's process is killed: a follower notices after one to two heartbeat
// timeouts (500ms default, randomised), campaigns for one to two election
// timeouts (1s), and the winner applies its barrier; 5s leaves room for a
// split vote and for the race detector's slowdown on two cores.
const electionBound = 5 * time.Second

func TestProcessClusterSurvivesLeaderKillAndHandsOffOnSIGTERM(t *testing.T) {
	const shards = 4
	pc := startProcCluster(t, 3, shards)
	locate := shardOf(t, shards)
	st := pc.status("n1")
	for _, sh := range st.Shards[1:] {
		if len(sh.Replicas) != 3 {
			t.Fatalf("shard %d placed on %v, want all 3 nodes", sh.Shard, sh.Replicas)
		}
	}

	var aliveMu sync.Mutex
	down := map[string]bool{}
	alive := func() []string {
		aliveMu.Lock()
		defer aliveMu.Unlock()
		var out []string
		for _, n := range pc.names {
			if !down[n] {
				out = append(out, n)
			}
		}
		return out
	}
	wl := &writeLog{acked: map[string]uint64{}, unknown: map[string]bool{}, okTimes: map[fsm.ShardID][]time.Time{}}
	ctx, stopWriters := context.WithCancel(t.Context())
	wg := pc.writers(ctx, 2*shards, shards, locate, alive, wl)
	resumeTime(t, wl, shards, time.Now(), 30*time.Second) // writes flowing to every shard

	// SIGKILL the node leading the most shards.
	victim, led := pc.mostLeader("n1")
	aliveMu.Lock()
	down[victim] = true
	aliveMu.Unlock()
	t0 := time.Now()
	pc.procs[victim].kill()
	took := resumeTime(t, wl, shards, t0, 30*time.Second)
	t.Logf("SIGKILL of %s (leader of %d shards): every shard took writes again after %v", victim, led, took)
	if took > electionBound {
		t.Errorf("writes resumed after %v, beyond the election bound %v", took, electionBound)
	}

	// It restarts and catches up.
	pc.procs[victim].start()
	pc.waitReady(60 * time.Second)
	aliveMu.Lock()
	down[victim] = false
	aliveMu.Unlock()
	resumeTime(t, wl, shards, time.Now(), 30*time.Second)

	// A planned stop (SIGTERM) hands leadership away first: writes pause far
	// less than an election would take.
	victim, led = pc.mostLeader("n1")
	aliveMu.Lock()
	down[victim] = true
	aliveMu.Unlock()
	t0 = time.Now()
	if err := pc.procs[victim].stop(20 * time.Second); err != nil {
		t.Fatalf("SIGTERM of %s: %v", victim, err)
	}
	took = resumeTime(t, wl, shards, t0, 30*time.Second)
	t.Logf("SIGTERM of %s (leader of %d shards): every shard took writes again after %v", victim, led, took)
	// An election cannot finish before a heartbeat timeout (500ms) has
	// passed and usually takes twice that; a handover takes a round trip.
	if took > time.Second {
		t.Errorf("writes resumed %v after a planned stop; the leaderships were not handed over", took)
	}
	if b, _ := os.ReadFile(pc.procs[victim].log); !bytes.Contains(b, []byte(`"stopped"`)) {
		t.Fatalf("%s did not log a clean stop", victim)
	}
	pc.procs[victim].start()
	pc.waitReady(60 * time.Second)
	aliveMu.Lock()
	down[victim] = false
	aliveMu.Unlock()

	stopWriters()
	wg.Wait()
	wl.mu.Lock()
	defer wl.mu.Unlock()
	t.Logf("%d writes acknowledged, %d with unknown outcome, %d failed (nothing proposed)", len(wl.acked), len(wl.unknown), wl.failed)
	if len(wl.acked) < 100 {
		t.Fatalf("only %d writes acknowledged", len(wl.acked))
	}
	// Every acknowledged write reads back, linearizably, from every node.
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range wl.acked {
			if !yield(k) {
				return
			}
		}
	})
	for _, name := range pc.names {
		c := pc.procs[name].client
		for _, key := range keys {
			rctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			v, ver, err := c.Get(rctx, key)
			cancel()
			if err != nil || ver != wl.acked[key] || string(v) != "v-"+key {
				t.Fatalf("%s reads %s: %q@%d %v, want @%d", name, key, v, ver, err, wl.acked[key])
			}
		}
	}
	// A write with an unknown outcome either applied whole or not at all.
	for key := range wl.unknown {
		v, _, err := pc.procs["n1"].client.Get(t.Context(), key)
		if err == nil && string(v) != "v-"+key {
			t.Fatalf("%s holds %q", key, v)
		}
		if err != nil && !errors.Is(err, client.ErrNotFound) {
			t.Fatalf("read %s: %v", key, err)
		}
	}
}

// Five nodes place every shard on three of them, evenly, and the raft
// groups match the placement. Then two of them are killed: gossip marks
// them dead, and for as long as the test watches (several reconcile
// passes), no placement, voter set or raft configuration changes.
func TestProcessFiveNodesPlaceShardsEvenly(t *testing.T) {
	const shards = 5
	pc := startProcCluster(t, 5, shards)
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := placementRealized(pc, shards)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // polling interval
	}

	before := pc.status("n1")
	placed := map[uint64][]string{}
	for _, sh := range before.Shards {
		placed[sh.Shard] = sh.Replicas
	}
	pc.procs["n4"].kill()
	pc.procs["n5"].kill()
	survivors := []string{"n1", "n2", "n3"}
	// unchanged checks what a survivor sees against what was placed.
	unchanged := func(name string) error {
		st := pc.status(name)
		if st.PlacementEpoch != before.PlacementEpoch {
			return fmt.Errorf("%s: placement epoch %d, was %d", name, st.PlacementEpoch, before.PlacementEpoch)
		}
		for _, sh := range st.Shards {
			if !slices.Equal(sh.Replicas, placed[sh.Shard]) {
				return fmt.Errorf("%s: shard %d placed on %v, was %v", name, sh.Shard, sh.Replicas, placed[sh.Shard])
			}
			if sh.Local == nil {
				continue
			}
			var members []string
			for _, r := range sh.Local.Replicas {
				if !r.Voter {
					return fmt.Errorf("%s: shard %d has non-voter %s", name, sh.Shard, r.ID)
				}
				members = append(members, r.ID)
			}
			slices.Sort(members)
			if want := slices.Sorted(slices.Values(placed[sh.Shard])); !slices.Equal(members, want) {
				return fmt.Errorf("%s: shard %d's raft configuration %v, placed on %v", name, sh.Shard, members, want)
			}
		}
		return nil
	}
	deadline = time.Now().Add(30 * time.Second)
	for dead := false; !dead; {
		dead = true
		for _, nd := range pc.status("n1").Nodes {
			if (nd.Name == "n4" || nd.Name == "n5") && nd.Alive {
				dead = false
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("gossip still sees n4 or n5 alive")
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
	// Watch for five reconcile intervals (1 s each) and some gossip rounds:
	// nothing may change in that time.
	for end := time.Now().Add(6 * time.Second); time.Now().Before(end); {
		for _, name := range survivors {
			if err := unchanged(name); err != nil {
				t.Fatalf("with n4 and n5 dead: %v", err)
			}
		}
		time.Sleep(250 * time.Millisecond) // observation interval
	}
}

func placementRealized(pc *procCluster, shards int) error {
	st := pc.status("n1")
	if len(st.Shards) != shards+1 {
		return fmt.Errorf("%d shards in the status, want meta + %d", len(st.Shards), shards)
	}
	load := map[string]int{}
	placed := map[uint64][]string{}
	for _, sh := range st.Shards[1:] {
		if len(sh.Replicas) != 3 {
			return fmt.Errorf("shard %d placed on %v, want 3 nodes", sh.Shard, sh.Replicas)
		}
		placed[sh.Shard] = sh.Replicas
		for _, r := range sh.Replicas {
			load[r]++
		}
	}
	for _, name := range pc.names {
		if load[name] != 3 { // 15 replicas over 5 nodes
			return fmt.Errorf("loads %v, want 3 replicas per node", load)
		}
	}
	// Each node holds exactly its placed replicas; each group's leader has
	// exactly the placed voters.
	checked := map[uint64]bool{}
	for _, name := range pc.names {
		for _, sh := range pc.status(name).Shards[1:] {
			has := sh.Local != nil
			if has != slices.Contains(placed[sh.Shard], name) {
				return fmt.Errorf("%s holds a replica of shard %d: %v; placed on %v", name, sh.Shard, has, placed[sh.Shard])
			}
			if has && sh.Local.Role == "leader" {
				var voters []string
				for _, r := range sh.Local.Replicas {
					if r.Voter {
						voters = append(voters, r.ID)
					}
				}
				slices.Sort(voters)
				if !slices.Equal(voters, placed[sh.Shard]) {
					return fmt.Errorf("shard %d voters %v, placed on %v", sh.Shard, voters, placed[sh.Shard])
				}
				checked[sh.Shard] = true
			}
		}
	}
	if len(checked) != shards {
		return fmt.Errorf("found the leaders of %d of %d shards", len(checked), shards)
	}
	return nil
}
