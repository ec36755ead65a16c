package shard

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairndb/cairn/fsm"
)

// BenchmarkReplicatedPut measures replicated writes through a 3-replica group
// on loopback with production raft timings and the raft log fsynced (the
// raft-boltdb default): every op is one Propose of one 256-byte put of a
// distinct key on the leader, issued by a fixed number of concurrent
// proposers. Besides ns/op it reports:
//
//	ops/s       replicated writes per second (b.N / wall time)
//	p50-ms ...  per-op Propose latency percentiles
//	ops/entry   puts per raft log entry (how much group commit coalesced)
//	cpu-%       process CPU time / (wall time * cores), all three replicas
//	host-cpu-%  the whole machine's busy share: well above cpu-% means
//	            something else competed for the cores during the run
//	            (both Linux only, omitted where /proc is unreadable)
//
// All replicas share this process, its cores and one disk, so the numbers are
// a lower bound on what one replica per machine achieves. The replicas' files
// live under the test's TempDir: TMPDIR decides which filesystem (and so what
// an fsync costs); TMPDIR=/dev/shm measures everything but the fsyncs.
//
// Each run of a sub-benchmark starts a fresh cluster (untimed; about a second
// with production election timeouts), so use a fixed -benchtime=Nx of a few
// seconds' worth rather than a duration, which makes the testing package try
// several b.N. On a 2-core VM, roughly: proposers=1 2000x, 16 10000x,
// 64 20000x, 256 60000x.
//
// The group-commit knobs can be set for a sizing sweep:
//
//	CAIRN_BENCH_MAX_APPEND=64|256|1024  Config.MaxAppendEntries (default: DefaultConfig's)
//	CAIRN_BENCH_INFLIGHT=1|2|4          Config.MaxInflight      (default: DefaultConfig's)
//
// For example:
//
//	CAIRN_BENCH_INFLIGHT=4 go test -run '^$' -bench 'ReplicatedPut/proposers=64$' -benchtime=20000x ./shard/
func BenchmarkReplicatedPut(b *testing.B) {
	def := DefaultConfig()
	maxAppend := benchEnvInt(b, "CAIRN_BENCH_MAX_APPEND", def.MaxAppendEntries)
	inflight := benchEnvInt(b, "CAIRN_BENCH_INFLIGHT", def.MaxInflight)
	tune := func(c *Config) {
		// testConfig shortens the raft timings for fast failover tests; put
		// the production ones back.
		c.HeartbeatTimeout = def.HeartbeatTimeout
		c.ElectionTimeout = def.ElectionTimeout
		c.LeaderLeaseTimeout = def.LeaderLeaseTimeout
		c.CommitTimeout = def.CommitTimeout
		c.MaxAppendEntries = maxAppend
		c.MaxInflight = inflight
	}
	for _, proposers := range []int{1, 16, 64, 256} {
		logged := false
		b.Run(fmt.Sprintf("proposers=%d", proposers), func(b *testing.B) {
			if !logged { // once, not for each b.N tried
				logged = true
				b.Logf("MaxAppendEntries=%d MaxInflight=%d GOMAXPROCS=%d NumCPU=%d", maxAppend, inflight, runtime.GOMAXPROCS(0), runtime.NumCPU())
			}
			benchReplicatedPut(b, proposers, tune)
		})
	}
}

const benchValueSize = 256

func benchReplicatedPut(b *testing.B, proposers int, tune func(*Config)) {
	c := newCluster(b, 3, tune)
	c.bootstrap(3)
	l := c.leader(30 * time.Second)
	ctx := b.Context()

	// Incompressible values, so Badger's compression flatters nothing; each op
	// takes a different 256-byte window.
	slab := make([]byte, 64<<10)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range slab {
		slab[i] = byte(rng.Uint32())
	}

	// Warm up: connections, raft's pipeline, Badger's memtable.
	if _, ok := runPuts(ctx, b, l.shard, "warm", max(256, 4*proposers), proposers, slab); !ok {
		return
	}

	r := l.shard.raft
	startIndex := r.LastIndex()
	cpu0, cpuOK := processCPU()
	host0, hostOK := hostCPU()
	b.ResetTimer()
	start := time.Now()
	lat, ok := runPuts(ctx, b, l.shard, "k", b.N, proposers, slab)
	elapsed := time.Since(start)
	b.StopTimer()
	if !ok {
		return
	}
	cpu1, cpuOK1 := processCPU()
	host1, hostOK1 := hostCPU()
	entries := r.LastIndex() - startIndex
	if l.shard.Status().Role != "leader" {
		b.Fatalf("leader %s lost leadership during the run", l.id)
	}

	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "ops/s")
	b.ReportMetric(benchPercentile(lat, 0.50), "p50-ms")
	b.ReportMetric(benchPercentile(lat, 0.99), "p99-ms")
	b.ReportMetric(benchPercentile(lat, 0.999), "p99.9-ms")
	if entries > 0 {
		b.ReportMetric(float64(b.N)/float64(entries), "ops/entry")
	}
	if cpuOK && cpuOK1 {
		b.ReportMetric(100*(cpu1-cpu0).Seconds()/(elapsed.Seconds()*float64(runtime.NumCPU())), "cpu-%")
	}
	if hostOK && hostOK1 && host1.total > host0.total {
		b.ReportMetric(100*float64(host1.busy-host0.busy)/float64(host1.total-host0.total), "host-cpu-%")
	}
}

// runPuts makes n Proposes of one put each on s from the given number of
// goroutines, and returns every op's latency. ok is false if one failed (the
// benchmark is then marked failed).
func runPuts(ctx context.Context, b *testing.B, s *Shard, prefix string, n, proposers int, slab []byte) (lat []time.Duration, ok bool) {
	var (
		next   atomic.Int64
		failed atomic.Bool
		wg     sync.WaitGroup
		lats   = make([][]time.Duration, proposers)
	)
	for g := range proposers {
		lats[g] = make([]time.Duration, 0, n/proposers+1)
		wg.Go(func() {
			for !failed.Load() {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				key := strconv.AppendInt([]byte(prefix+"/"), i, 10)
				off := int(i*61) % (len(slab) - benchValueSize)
				cmd := fsm.Command{Ops: []fsm.Op{fsm.Put(key, slab[off:off+benchValueSize])}}
				t0 := time.Now()
				res, err := s.Propose(ctx, cmd)
				lats[g] = append(lats[g], time.Since(t0))
				if err == nil && res.Code != fsm.OK {
					err = res.Err()
				}
				if err != nil {
					if failed.CompareAndSwap(false, true) {
						b.Errorf("put %s %d: %v", prefix, i, err)
					}
					return
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() {
		return nil, false
	}
	lat = make([]time.Duration, 0, n)
	for _, l := range lats {
		lat = append(lat, l...)
	}
	return lat, true
}

// benchPercentile returns the nearest-rank q-quantile of sorted, in ms.
func benchPercentile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = min(max(i, 0), len(sorted)-1)
	return float64(sorted[i]) / float64(time.Millisecond)
}

func benchEnvInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// processCPU returns the user+system CPU time this process has used, from
// /proc/self/stat (Linux; USER_HZ is 100 on every Linux ABI Go supports).
func processCPU() (time.Duration, bool) {
	raw, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may hold spaces; fields after it are
	// space-separated, utime and stime being fields 14 and 15.
	s := string(raw)
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return 0, false
	}
	f := strings.Fields(s[end+1:])
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(utime+stime) * (time.Second / 100), true
}

type cpuTicks struct{ busy, total uint64 }

// hostCPU returns the machine's busy and total CPU ticks from /proc/stat.
func hostCPU() (cpuTicks, bool) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTicks{}, false
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return cpuTicks{}, false
	}
	var t cpuTicks
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return cpuTicks{}, false
		}
		if i >= 8 { // guest time is already counted in user
			break
		}
		t.total += n
		if i != 3 && i != 4 { // idle, iowait
			t.busy += n
		}
	}
	return t, true
}
