package shard

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/shard/nodelog"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// TestCrashDurability: a replica running in a child process is SIGKILLed in
// the middle of writes and restarted: every acknowledged write is there,
// nothing is applied twice.
//
// The test binary re-executes itself as the child (CAIRN_CRASH_CHILD=1). The
// child opens a single-replica shard on CAIRN_CRASH_DIR, bootstraps it if it
// is fresh, and runs crashWriters sequential writers of unique keys, each
// command with its own request ID. It prints "ACK <key> <version>" once a
// write is acknowledged. Snapshot settings are small, so snapshots and log
// compaction happen while it writes and every restart replays a log tail over
// a compacted log (NoSnapshotRestoreOnStart).
//
// The parent kills the child after a seeded random number of ACKs, keeps the
// ACKs already printed, and starts the next round on the same directory.
// Finally it opens the replica itself and checks:
//   - every acknowledged key holds exactly the acknowledged version;
//   - per writer the keys present are a prefix of its sequence with at most
//     one unacknowledged write (the one in flight at the kill), and their
//     versions increase; every round's versions exceed the previous round's;
//   - nothing applied twice: the FSM's applied-command count equals the number
//     of keys present (each command writes one fresh key; a command applied
//     again, or replayed into a dedupe hit, would count twice);
//   - request IDs stay exactly-once across the crashes: retrying the last
//     acknowledged and the in-flight write of every writer returns the first
//     outcome (or applies the in-flight write once if it never made it).
//
// CAIRN_CRASH_SEED replays the kill schedule.
func TestCrashDurability(t *testing.T) {
	if os.Getenv(crashChildEnv) == "1" {
		runCrashChild()
		return
	}
	if testing.Short() {
		t.Skip("spawns processes; skipped in -short")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(crashSeedEnv); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", crashSeedEnv, err)
		}
		seed = v
	}
	t.Logf("seed %d (replay the kill schedule with %s=%d)", seed, crashSeedEnv, seed)
	for _, format := range []LogStore{LogStoreWAL, LogStoreBolt, LogStoreNode} {
		t.Run(string(format), func(t *testing.T) { crashDurability(t, format, seed) })
	}
}

// crashDurability runs the rounds on a replica whose raft log has the given
// format, then checks what survived.
func crashDurability(t *testing.T, format LogStore, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x6372617368))
	dir := t.TempDir()
	h := &crashHistory{acked: map[string]uint64{}, acks: map[crashWriter]int{}}
	start := time.Now()
	for round := range crashRounds {
		killAfter := 200 + rng.IntN(1801)
		if round == crashKillAtBootRound {
			killAfter = 0
		}
		runCrashRound(t, dir, format, round, killAfter, h)
	}
	t.Logf("%d rounds, %d acknowledged writes, children ran %v", crashRounds, len(h.acked), time.Since(start).Round(time.Millisecond))

	// The raft log must have been compacted behind a snapshot, or the
	// restarts never exercised the replay of a tail over a compacted log.
	snapIndex, firstIndex, lastIndex := crashLogState(t, dir)
	partial, _ := filepath.Glob(filepath.Join(dir, "raft", "1", "snapshots", "*.tmp"))
	t.Logf("before final open: latest snapshot index %d, raft log [%d, %d]", snapIndex, firstIndex, lastIndex)
	if snapIndex == 0 || firstIndex <= 1 {
		t.Fatalf("no snapshot/log compaction happened (snapshot index %d, first log index %d): the test does not exercise what it should", snapIndex, firstIndex)
	}

	n, err := openCrashNode(dir, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.close)
	// The reopened replica may be writing a snapshot of its own by now;
	// those left by the kills must be gone.
	for _, p := range partial {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Open left a half-written snapshot behind: %s (%v)", p, err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	// Ready means this leader's barrier applied, i.e. the whole replayed
	// tail is in the FSM. The FSM's applied index never reaches the commit
	// index here (the leader's no-op and barrier entries are not handed to
	// the FSM), so a linearizable read barrier is the wait that terminates.
	info, err := n.shard.ReadBarrier(ctx, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f := n.shard.FSM()
	applied := f.Applied()
	st := n.shard.Status()
	t.Logf("after final open: applied index %d (read index %d), commit index %d, snapshots installed %d", applied, info.Index, st.CommitIndex, st.Snapshots)
	if st.Snapshots != 0 || n.shard.bootRestored {
		t.Errorf("a restart restored a snapshot (%d installs, restored at boot: %v): the durable FSM state fell behind the compacted log", st.Snapshots, n.shard.bootRestored)
	}

	present := crashCheckState(t, f, h, applied)
	commands := f.AppliedCommands()
	t.Logf("%d keys present (%d acknowledged), %d commands applied", len(present), len(h.acked), commands)
	if commands != uint64(len(present)) {
		t.Fatalf("FSM counts %d applied commands for %d keys written by one command each: %d command(s) applied twice", commands, len(present), int64(commands)-int64(len(present)))
	}

	// Exactly-once retries across the crashes.
	retries, fresh := 0, 0
	for w, a := range h.acksByWriter() {
		var keys []int
		if a > 0 {
			keys = append(keys, a-1) // the last acknowledged write
		}
		keys = append(keys, a) // in flight at the kill, or never sent
		for _, seq := range keys {
			key := crashKey(w.round, w.writer, seq)
			before, was := present[key]
			res, err := n.shard.Propose(ctx, crashCommand(key))
			if err != nil {
				t.Fatalf("retry %s: %v", key, err)
			}
			retries++
			if res.Code != fsm.OK || len(res.Ops) != 1 {
				t.Fatalf("retry %s: %+v", key, res)
			}
			switch {
			case was && (!res.Duplicate || res.Ops[0].Version != before):
				t.Errorf("retry of applied %s: duplicate=%v version %d, want the first outcome (version %d)", key, res.Duplicate, res.Ops[0].Version, before)
			case !was && res.Duplicate:
				t.Errorf("retry of %s (never applied) reported as a duplicate of version %d", key, res.Ops[0].Version)
			case !was:
				fresh++
			}
			if v, ok := h.acked[key]; ok && res.Ops[0].Version != v {
				t.Errorf("retry of acknowledged %s: version %d, acknowledged %d", key, res.Ops[0].Version, v)
			}
		}
	}
	after, err := f.Scan(fsm.ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := f.AppliedCommands(), commands+uint64(retries); got != want {
		t.Errorf("after %d retries: %d commands applied, want %d", retries, got, want)
	}
	if got, want := len(after.Items), len(present)+fresh; got != want {
		t.Errorf("after %d retries (%d fresh): %d keys, want %d", retries, fresh, got, want)
	}
	for _, it := range after.Items {
		if v, ok := present[string(it.Key)]; ok && it.Version != v {
			t.Errorf("retry changed %s from version %d to %d", it.Key, v, it.Version)
		}
	}
}

const (
	crashChildEnv = "CAIRN_CRASH_CHILD"
	crashDirEnv   = "CAIRN_CRASH_DIR"
	crashRoundEnv = "CAIRN_CRASH_ROUND"
	crashSeedEnv  = "CAIRN_CRASH_SEED"
	// crashLogStoreEnv: the raft log format the child creates its replica
	// with (an existing replica keeps its own).
	crashLogStoreEnv = "CAIRN_CRASH_LOG_STORE"

	crashRounds  = 5
	crashWriters = 8
	// crashKillAtBootRound's child is killed as soon as it is ready, right
	// after its boot-time snapshot: the next boot finds a latest snapshot
	// whose raft index is a no-op/barrier entry the FSM never saw, so raft's
	// snapshot index is above the FSM's applied index while the FSM is not
	// behind. The boot check must not take that for lost state.
	crashKillAtBootRound = 2
)

// crashConfig is testConfig with snapshots small and frequent enough to
// happen, and compact the log, during every round.
func crashConfig() Config {
	c := testConfig()
	c.SnapshotThreshold = 64
	c.SnapshotInterval = 50 * time.Millisecond
	c.TrailingLogs = 32
	return c
}

func crashKey(round, writer, seq int) string {
	return fmt.Sprintf("r%d-w%d-%06d", round, writer, seq)
}

func parseCrashKey(key string) (w crashWriter, seq int, err error) {
	_, err = fmt.Sscanf(key, "r%d-w%d-%d", &w.round, &w.writer, &seq)
	if err == nil && crashKey(w.round, w.writer, seq) != key {
		err = fmt.Errorf("not canonical")
	}
	if err != nil {
		err = fmt.Errorf("bad key %q: %w", key, err)
	}
	return w, seq, err
}

func crashValue(key string) []byte {
	return []byte("value of " + key + " " + strings.Repeat(key[len(key)-1:], 40))
}

// crashCommand is the one command that ever writes key; its request ID is
// derived from the key, so IDs never repeat across rounds and a retry reuses
// the original's.
func crashCommand(key string) fsm.Command {
	return fsm.Command{RequestID: "req-" + key, Ops: []fsm.Op{fsm.Put([]byte(key), crashValue(key))}}
}

type crashWriter struct{ round, writer int }

// crashHistory is what the children acknowledged.
type crashHistory struct {
	acked map[string]uint64   // key -> acknowledged version
	acks  map[crashWriter]int // acknowledged writes per writer: seqs [0, n)
}

// acksByWriter returns the ack count of every writer of every round that
// started, including writers with none.
func (h *crashHistory) acksByWriter() map[crashWriter]int {
	out := map[crashWriter]int{}
	for round := range crashRounds {
		for w := range crashWriters {
			out[crashWriter{round, w}] = h.acks[crashWriter{round, w}]
		}
	}
	return out
}

// crashNode is one process's replica: store, raft port and shard 1.
type crashNode struct {
	store *fsm.Store
	mux   *Mux
	shard *Shard
	logs  *nodelog.Log
}

func (n *crashNode) close() {
	if n.shard != nil {
		n.shard.Close()
	}
	if n.logs != nil {
		n.logs.Close()
	}
	if n.mux != nil {
		n.mux.Close()
	}
	if n.store != nil {
		n.store.Close()
	}
}

// openCrashNode opens the replica in dir (the same code in the child and in
// the parent's final check), bootstraps it if fresh and waits until it leads
// and is ready. It reuses the raft address of the previous run when it can,
// as a restarted node would.
func openCrashNode(dir string, logger *slog.Logger) (*crashNode, error) {
	n := &crashNode{}
	ok := false
	defer func() {
		if !ok {
			n.close()
		}
	}()
	opts := fsm.DefaultOptions(filepath.Join(dir, "data"))
	opts.MemTableSize = 16 << 20
	opts.BlockCacheSize = 8 << 20
	opts.IndexCacheSize = 4 << 20
	opts.Logger = logger
	var err error
	if n.store, err = fsm.Open(opts); err != nil {
		return nil, err
	}
	addrFile := filepath.Join(dir, "raft-addr")
	addr := "127.0.0.1:0"
	if b, err := os.ReadFile(addrFile); err == nil {
		addr = string(b)
	}
	if n.mux, err = Listen(addr, MuxConfig{Logger: logger}); err != nil {
		logger.Warn("previous raft address taken, using a new one", "addr", addr, "error", err)
		if n.mux, err = Listen("127.0.0.1:0", MuxConfig{Logger: logger}); err != nil {
			return nil, err
		}
	}
	self := n.mux.Addr().String()
	if err := os.WriteFile(addrFile, []byte(self), 0o600); err != nil {
		return nil, err
	}
	cfg := crashConfig()
	cfg.LogStore = LogStore(os.Getenv(crashLogStoreEnv))
	cfg.ID = 1
	cfg.NodeID = "n1"
	cfg.Dir = filepath.Join(dir, "raft", "1")
	cfg.Store = n.store
	cfg.Mux = n.mux
	cfg.Logger = logger
	if n.logs, err = testNodeLog(cfg.Dir, cfg.LogStore); err != nil {
		return nil, err
	}
	cfg.NodeLog = n.logs
	if n.shard, err = Open(cfg); err != nil {
		return nil, err
	}
	if err := n.shard.Bootstrap([]Replica{{ID: "n1", Addr: self, Voter: true}}); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return nil, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for !n.shard.Status().Ready {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("replica not ready within 15s: %+v", n.shard.Status())
		}
		time.Sleep(5 * time.Millisecond) // polling interval, bounded by deadline
	}
	ok = true
	return n, nil
}

// runCrashChild is the child process: it writes until it is killed. It never
// returns normally; it exits if its parent goes away (stdin closes) or after
// a hard deadline, so that it cannot outlive a failed test.
func runCrashChild() {
	var outMu sync.Mutex
	say := func(format string, args ...any) {
		outMu.Lock()
		fmt.Fprintf(os.Stdout, format+"\n", args...) // unbuffered: one write per line
		outMu.Unlock()
	}
	die := func(format string, args ...any) {
		outMu.Lock()
		fmt.Fprintf(os.Stdout, "ERR "+format+"\n", args...)
		os.Exit(2)
	}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(3) // parent gone
	}()
	time.AfterFunc(2*time.Minute, func() { die("child ran for 2 minutes without being killed") })

	dir := os.Getenv(crashDirEnv)
	round, err := strconv.Atoi(os.Getenv(crashRoundEnv))
	if dir == "" || err != nil {
		die("bad environment: %s=%q %s=%q", crashDirEnv, dir, crashRoundEnv, os.Getenv(crashRoundEnv))
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := openCrashNode(dir, logger)
	if err != nil {
		die("open: %v", err)
	}
	// A snapshot now ends at the leader's barrier, an entry the FSM never
	// sees (see crashKillAtBootRound).
	if err := n.shard.Snapshot(); err != nil {
		die("snapshot: %v", err)
	}
	st := n.shard.Status()
	say("READY applied=%d commit=%d last=%d commands=%d boot_restored=%v", st.Applied, st.CommitIndex, st.LastIndex, n.shard.FSM().AppliedCommands(), n.shard.bootRestored)

	for w := range crashWriters {
		go func() {
			for seq := 0; ; seq++ {
				key := crashKey(round, w, seq)
				cmd := crashCommand(key)
				for attempt := 0; ; attempt++ {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					res, err := n.shard.Propose(ctx, cmd)
					cancel()
					if err == nil {
						if res.Code != fsm.OK || len(res.Ops) != 1 || res.Ops[0].Version == 0 {
							die("%s: result %+v", key, res)
						}
						say("ACK %s %d", key, res.Ops[0].Version)
						break
					}
					// Nothing proposed, or fate unknown: retry with the same
					// request ID, as a client must.
					if (IsRetryable(err) || errors.Is(err, ErrOutcomeUnknown)) && attempt < 50 {
						time.Sleep(10 * time.Millisecond)
						continue
					}
					die("%s: %v", key, err)
				}
			}
		}()
	}
	select {}
}

// runCrashRound runs one child until it has acknowledged killAfter writes
// (0: until it is ready), SIGKILLs it and records every ACK it printed before
// dying.
func runCrashRound(t *testing.T, dir string, format LogStore, round, killAfter int, h *crashHistory) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashDurability$", "-test.v=false", "-test.count=1")
	cmd.Env = append(os.Environ(),
		crashChildEnv+"=1",
		crashDirEnv+"="+dir,
		crashRoundEnv+"="+strconv.Itoa(round),
		crashLogStoreEnv+"="+string(format),
	)
	var stderr crashTail
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe() // held open: the child exits when it closes
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waited bool
	t.Cleanup(func() {
		if !waited {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	fail := func(format string, args ...any) {
		t.Helper()
		_ = cmd.Process.Kill()
		t.Fatalf("round %d: %s\nchild stderr (tail):\n%s", round, fmt.Sprintf(format, args...), stderr.String())
	}

	var acks, acksAtKill int
	var killed bool
	var other []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		switch {
		case len(fields) == 3 && fields[0] == "ACK":
			w, seq, err := parseCrashKey(fields[1])
			if err != nil {
				fail("%v", err)
			}
			v, err := strconv.ParseUint(fields[2], 10, 64)
			if err != nil {
				fail("bad ACK line %q", line)
			}
			if w.round != round || w.writer < 0 || w.writer >= crashWriters {
				fail("ACK of %s in round %d", fields[1], round)
			}
			if want := h.acks[w]; seq != want {
				fail("ACK of %s: writer %d expected seq %d next", fields[1], w.writer, want)
			}
			h.acks[w] = seq + 1
			h.acked[fields[1]] = v
			acks++
			if !killed && acks >= killAfter {
				if err := cmd.Process.Kill(); err != nil {
					fail("kill: %v", err)
				}
				killed, acksAtKill = true, acks
			}
		case len(fields) > 0 && fields[0] == "READY":
			t.Logf("round %d: child %s after %v", round, line, time.Since(started).Round(time.Millisecond))
			if strings.Contains(line, "boot_restored=true") {
				fail("the child restored the latest snapshot at boot: the durable FSM state was behind the compacted log")
			}
			if killAfter == 0 {
				if err := cmd.Process.Kill(); err != nil {
					fail("kill: %v", err)
				}
				killed = true
			}
		default:
			other = append(other, line)
		}
	}
	if err := sc.Err(); err != nil {
		fail("reading child output: %v", err)
	}
	werr := cmd.Wait()
	waited = true
	if ctx.Err() != nil {
		fail("child timed out (%d ACKs)", acks)
	}
	if !killed {
		fail("child exited by itself after %d ACKs (%v); output: %q", acks, werr, other)
	}
	if len(other) > 0 {
		fail("unexpected child output: %q", other)
	}
	if s := stderr.all(); strings.Contains(s, "DATA RACE") || strings.Contains(s, "panic:") {
		fail("child reported a race or a panic")
	}
	t.Logf("round %d: killed after %d ACKs (target %d), %d more were already printed; %v", round, acksAtKill, killAfter, acks-acksAtKill, time.Since(started).Round(time.Millisecond))
	_ = stdin.Close()
}

// crashCheckState scans the replica and checks every key against the history.
// It returns the keys present with their versions.
func crashCheckState(t *testing.T, f *fsm.FSM, h *crashHistory, applied uint64) map[string]uint64 {
	t.Helper()
	res, err := f.Scan(fsm.ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.More {
		t.Fatal("unbounded scan reported more")
	}
	present := map[string]uint64{}
	seqs := map[crashWriter]map[int]uint64{}
	for _, it := range res.Items {
		key := string(it.Key)
		w, seq, err := parseCrashKey(key)
		if err != nil {
			t.Fatalf("unexpected key in the store: %v", err)
		}
		if !bytes.Equal(it.Value, crashValue(key)) {
			t.Errorf("%s: value %q, want %q", key, it.Value, crashValue(key))
		}
		if it.Version == 0 || it.Version>>20 > applied {
			t.Errorf("%s: version %d (index %d) beyond the applied index %d", key, it.Version, it.Version>>20, applied)
		}
		present[key] = it.Version
		if seqs[w] == nil {
			seqs[w] = map[int]uint64{}
		}
		seqs[w][seq] = it.Version
	}

	lost := 0
	for key, v := range h.acked {
		got, ok := present[key]
		switch {
		case !ok:
			lost++
			if lost <= 10 {
				t.Errorf("acknowledged write lost: %s (version %d)", key, v)
			}
		case got != v:
			t.Errorf("%s: version %d, acknowledged %d", key, got, v)
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged writes lost", lost, len(h.acked))
	}

	// Per writer: a prefix of its sequence, at most one beyond its ACKs,
	// versions increasing. Per round: above every version of the round before.
	roundMin, roundMax := map[int]uint64{}, map[int]uint64{}
	for w, a := range h.acksByWriter() {
		got := seqs[w]
		delete(seqs, w)
		if len(got) != a && len(got) != a+1 {
			t.Errorf("round %d writer %d: %d keys present for %d acknowledged writes", w.round, w.writer, len(got), a)
		}
		var prev uint64
		for seq := range len(got) {
			v, ok := got[seq]
			if !ok {
				t.Errorf("round %d writer %d: seq %d missing among %d keys present (a gap)", w.round, w.writer, seq, len(got))
				break
			}
			if v <= prev {
				t.Errorf("round %d writer %d: seq %d has version %d, not above seq %d's %d", w.round, w.writer, seq, v, seq-1, prev)
			}
			prev = v
			if mn, ok := roundMin[w.round]; !ok || v < mn {
				roundMin[w.round] = v
			}
			roundMax[w.round] = max(roundMax[w.round], v)
		}
	}
	for w := range seqs {
		t.Errorf("keys of a writer that never ran: round %d writer %d", w.round, w.writer)
	}
	var below uint64 // highest version of the rounds before
	for r := range crashRounds {
		if mn, ok := roundMin[r]; ok && mn <= below {
			t.Errorf("round %d's lowest version %d is not above the earlier rounds' highest %d", r, mn, below)
		}
		below = max(below, roundMax[r])
	}
	if t.Failed() {
		t.FailNow()
	}
	return present
}

// crashLogState reads, with nothing running, the latest snapshot index and
// the raft log's bounds.
func crashLogState(t *testing.T, dir string) (snapIndex, first, last uint64) {
	t.Helper()
	raftDir := filepath.Join(dir, "raft", "1")
	snaps, err := raft.NewFileSnapshotStoreWithLogger(raftDir, 2, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	list, err := snaps.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) > 0 {
		snapIndex = list[0].Index
	}
	// Raft never removes a snapshot directory a crash left half-written;
	// shard.Open does (checked after the final open).
	if tmp, _ := filepath.Glob(filepath.Join(raftDir, "snapshots", "*.tmp")); len(tmp) > 0 {
		t.Logf("%d interrupted snapshot(s) left behind: %v", len(tmp), tmp)
	}
	logs, done, err := openTestLogStore(raftDir)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	if first, err = logs.FirstIndex(); err != nil {
		t.Fatal(err)
	}
	if last, err = logs.LastIndex(); err != nil {
		t.Fatal(err)
	}
	return snapIndex, first, last
}

// crashTail collects a child's stderr (up to 4 MiB); String returns its last
// 16 KiB for failure messages.
type crashTail struct {
	mu  sync.Mutex
	buf []byte
}

func (c *crashTail) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := 4<<20 - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(len(p), room)]...)
	}
	return len(p), nil
}

func (c *crashTail) all() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.buf)
}

func (c *crashTail) String() string {
	s := c.all()
	return s[max(0, len(s)-16<<10):]
}
