package shard

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cairndb/cairn/fsm"
)

// TestRandomFaults runs writers, a counter and readers against a 3-replica
// group while a seeded nemesis kills, restarts, isolates and heals replicas.
// It checks that every acknowledged write survives with its version, that
// a linearizable read never returns a counter value older than one already
// acknowledged before the read began, and that all replicas converge to the
// same state hash once the faults heal. CAIRN_FAULT_SEED replays a schedule.
func TestRandomFaults(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CAIRN_FAULT_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with CAIRN_FAULT_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 3))

	c := newCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotThreshold = 256
		cfg.TrailingLogs = 128
	})
	c.bootstrap(3)
	ctx := t.Context()
	c.leader(10 * time.Second)

	// propose retries a command until it is applied: with the same request
	// ID, so an unknown outcome followed by a retry applies at most once.
	propose := func(ctx context.Context, cmd fsm.Command) (fsm.Result, error) {
		for ctx.Err() == nil {
			for _, r := range c.replicas {
				sh := c.shardOf(r)
				if sh == nil || sh.Status().Role != "leader" {
					continue
				}
				pctx, cancel := context.WithTimeout(ctx, time.Second)
				res, err := sh.Propose(pctx, cmd)
				cancel()
				if err == nil {
					return res, nil
				}
				if !IsRetryable(err) && !errors.Is(err, ErrOutcomeUnknown) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ErrClosed) {
					return res, err
				}
			}
			time.Sleep(5 * time.Millisecond) // no leader reachable: back off
		}
		return fsm.Result{}, ctx.Err()
	}

	wctx, stopWork := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]uint64{}
	// Writers: unique keys.
	for g := range 3 {
		wg.Go(func() {
			for i := 0; wctx.Err() == nil; i++ {
				key := fmt.Sprintf("f%d-%05d", g, i)
				res, err := propose(wctx, fsm.Command{RequestID: key, Ops: []fsm.Op{fsm.Put([]byte(key), []byte(key))}})
				if err != nil {
					return
				}
				if res.Code != fsm.OK {
					t.Errorf("%s: %v", key, res.Err())
					return
				}
				mu.Lock()
				acked[key] = res.Ops[0].Version
				mu.Unlock()
			}
		})
	}
	// Counter: compare-and-set increments; acks record (value, time).
	type ack struct {
		value int
		at    time.Time
	}
	var ackMu sync.Mutex
	var counterAcks []ack
	wg.Go(func() {
		value, version := 0, uint64(0)
		for n := 1; wctx.Err() == nil; n++ {
			res, err := propose(wctx, fsm.Command{
				RequestID: fmt.Sprintf("ctr-%d", n),
				Ops:       []fsm.Op{fsm.Put([]byte("ctr"), []byte(strconv.Itoa(value+1))).If(version)},
			})
			if err != nil {
				return
			}
			if res.Code != fsm.OK {
				t.Errorf("counter CAS from %d@%d failed: %v (the counter has one writer)", value, version, res.Err())
				return
			}
			value, version = value+1, res.Ops[0].Version
			ackMu.Lock()
			counterAcks = append(counterAcks, ack{value, time.Now()})
			ackMu.Unlock()
		}
	})
	// Readers: linearizable reads of the counter on random replicas.
	var stale, reads, failed int
	var readMu sync.Mutex
	for g := range 3 {
		wg.Go(func() {
			rr := rand.New(rand.NewPCG(seed, uint64(g)))
			for wctx.Err() == nil {
				sh := c.shardOf(c.replicas[rr.IntN(len(c.replicas))])
				if sh == nil {
					time.Sleep(time.Millisecond) // replica down: pick another
					continue
				}
				ackMu.Lock()
				floor := 0
				if len(counterAcks) > 0 {
					floor = counterAcks[len(counterAcks)-1].value
				}
				ackMu.Unlock()
				gctx, cancel := context.WithTimeout(wctx, 500*time.Millisecond)
				it, _, err := sh.Get(gctx, []byte("ctr"), ReadOptions{})
				cancel()
				readMu.Lock()
				switch {
				case errors.Is(err, fsm.ErrNotFound):
					if floor > 0 {
						stale++
						t.Errorf("read found no counter after value %d was acknowledged", floor)
					}
					reads++
				case err != nil:
					failed++
				default:
					reads++
					if v, _ := strconv.Atoi(string(it.Value)); v < floor {
						stale++
						t.Errorf("stale read: counter %d after %d was acknowledged", v, floor)
					}
				}
				readMu.Unlock()
			}
		})
	}

	// Nemesis.
	down := map[*replica]bool{}
	isolated := false
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		pause := time.Duration(200+rng.IntN(400)) * time.Millisecond
		r := c.replicas[rng.IntN(len(c.replicas))]
		switch action := rng.IntN(4); {
		case action == 0 && !down[r] && len(down) == 0:
			t.Logf("nemesis: kill %s", r.id)
			c.stop(r)
			down[r] = true
		case action == 1 && len(down) > 0:
			for d := range down {
				t.Logf("nemesis: restart %s", d.id)
				c.restart(d)
				delete(down, d)
			}
		case action == 2 && !isolated && !down[r]:
			t.Logf("nemesis: isolate %s", r.id)
			c.net.isolate(r.addr, c.addrs())
			isolated = true
		default:
			if isolated {
				t.Logf("nemesis: heal")
				c.net.heal()
				isolated = false
			}
		}
		time.Sleep(pause) // the fault's duration, drawn from the seeded schedule
	}
	c.net.heal()
	for d := range down {
		c.restart(d)
	}
	// Let the workload run on the healed cluster until it makes progress.
	ackMu.Lock()
	before := len(counterAcks)
	ackMu.Unlock()
	eventually(t, 20*time.Second, "progress after healing", func() bool {
		ackMu.Lock()
		defer ackMu.Unlock()
		return len(counterAcks) > before+10
	})
	stopWork()
	wg.Wait()

	readMu.Lock()
	t.Logf("%d writes, %d counter increments, %d reads (%d failed during faults)", len(acked), len(counterAcks), reads, failed)
	readMu.Unlock()
	if len(acked) == 0 || len(counterAcks) == 0 || reads == 0 {
		t.Fatal("the workload made no progress")
	}
	hashes := c.waitConverged(20 * time.Second)
	for id, h := range hashes {
		if h != hashes["n1"] {
			t.Fatalf("replica %s diverged", id)
		}
	}
	l := c.leader(10 * time.Second)
	for key, version := range acked {
		it, _, err := l.shard.Get(ctx, []byte(key), ReadOptions{})
		if err != nil || it.Version != version {
			t.Fatalf("acknowledged %s@%d: got %d, %v", key, version, it.Version, err)
		}
	}
	it, _, err := l.shard.Get(ctx, []byte("ctr"), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := strconv.Atoi(string(it.Value)); v != len(counterAcks) && v != len(counterAcks)+1 {
		t.Fatalf("counter is %d after %d acknowledged increments", v, len(counterAcks))
	}
}
