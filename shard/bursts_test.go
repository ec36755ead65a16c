package shard

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// dirBytes sums the sizes of the files under dir (as allocated files, not
// disk blocks: a preallocated segment counts whole).
func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		n += info.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRaftLogBoundedAfterBursts: bursts of writes over the same keys,
// each followed by a snapshot on every replica, leave each replica's raft
// directory (log and snapshots) no larger after the fourth burst than after
// the first two, give or take two segments, where a log that kept what
// snapshots compacted away would grow by a burst's 11.7 MiB each time (as
// bbolt's file did under Consul, hashicorp/consul#5181). The first
// bursts set the level.
func TestRaftLogBoundedAfterBursts(t *testing.T) {
	// Segments of 4 MiB (the node log's in tests) rotate several times a
	// burst.
	defer func(size int) { walSegmentSize = size }(walSegmentSize)
	walSegmentSize = 4 << 20
	for _, format := range []LogStore{LogStoreWAL, LogStoreNode} {
		t.Run(string(format), func(t *testing.T) { raftLogBoundedAfterBursts(t, format, 4<<20) })
	}
}

func raftLogBoundedAfterBursts(t *testing.T, format LogStore, segment int64) {
	const (
		bursts  = 4
		puts    = 3000
		keys    = 500
		writers = 32
	)
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.LogStore = format
		// Group commit packs about 17 puts in an entry here, so the log
		// keeps about 1 MiB after a snapshot.
		cfg.TrailingLogs = 16
		cfg.SnapshotThreshold = 64
	})
	c.bootstrap(3)
	ctx := t.Context()
	value := strings.Repeat("v", 4<<10)
	var settled int64
	for b := range bursts {
		leader := c.leader(10 * time.Second).shard
		var mu sync.Mutex
		// propose sends cmd to the leader, following a change of leader
		// (elections happen when the machine is busy; a put is repeated
		// harmlessly, the test only weighs the log).
		propose := func(key string) error {
			for attempt := 0; ; attempt++ {
				mu.Lock()
				l := leader
				mu.Unlock()
				_, err := l.Propose(ctx, putCmd(key, value))
				if err == nil || attempt == 100 || !(errors.Is(err, ErrNotLeader) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrOutcomeUnknown)) {
					return err
				}
				time.Sleep(20 * time.Millisecond) // an election takes a few hundred ms
				for _, r := range c.replicas {
					if sh := c.shardOf(r); sh != nil && sh.Status().Role == "leader" {
						mu.Lock()
						leader = sh
						mu.Unlock()
					}
				}
			}
		}
		start := time.Now()
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := w; i < puts; i += writers {
					if err := propose(fmt.Sprintf("k%03d", (b*puts+i)%keys)); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		took := time.Since(start)
		c.waitConverged(30 * time.Second)
		var largest int64
		for _, r := range c.replicas {
			if err := r.shard.Snapshot(); err != nil {
				t.Fatal(err)
			}
			largest = max(largest, dirBytes(t, filepath.Join(r.dir, "raft")))
		}
		t.Logf("burst %d: %d puts of 4 KiB in %v; largest raft directory %.1f MiB", b+1, puts, took.Round(time.Millisecond), float64(largest)/(1<<20))
		switch {
		case b <= 1:
			settled = max(settled, largest)
		case b > 1 && largest > settled+2*segment+1<<20:
			t.Fatalf("after burst %d the largest raft directory holds %.1f MiB, after the first two at most %.1f MiB",
				b+1, float64(largest)/(1<<20), float64(settled)/(1<<20))
		}
	}
}
