package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/dustin/go-humanize"
)

// defaultMemoryLimit is the Go heap's soft limit (--memory-limit auto) on a
// node whose cgroup sets no memory limit. Without a limit the heap grows to
// its collection target, and the runtime keeps what it grew to.
const defaultMemoryLimit = 256 << 20

// goMemoryLimit resolves --memory-limit to the Go runtime's soft memory
// limit in bytes (0: none) and says where it came from. With auto and a
// cgroup memory limit (a container's), the heap gets four fifths of it: the
// cgroup also charges the node for the page cache of its files (Badger's
// mapped tables, the raft logs), which the kernel drops when the cgroup is
// full but which serve reads while they stay; a fifth of the limit keeps
// room for them. cgroupLimit is memlimit.FromCgroup outside tests.
func goMemoryLimit(o serverOpts, cgroupLimit func() (uint64, error)) (int64, string) {
	if !o.memoryLimitAuto {
		return o.memoryLimit, "--memory-limit"
	}
	l, err := cgroupLimit()
	switch {
	case err == nil && l > 0:
		return int64(min(l/5*4, math.MaxInt64)), "four fifths of the cgroup's memory limit of " + humanize.IBytes(l)
	case err == nil, errors.Is(err, memlimit.ErrNoLimit), errors.Is(err, memlimit.ErrNoCgroup), errors.Is(err, memlimit.ErrCgroupsNotSupported):
		return defaultMemoryLimit, "default (no cgroup memory limit)"
	default:
		return defaultMemoryLimit, fmt.Sprintf("default (cgroup memory limit unreadable: %v)", err)
	}
}

// After a burst of work (a bulk load, the compactions that follow it) a
// node's heap still holds what the burst left behind: the garbage is only
// found by the next collection, a node that has gone quiet allocates too
// little to start one soon (the runtime forces one every two minutes), and
// what a collection frees goes back to the operating system only
// gradually. So the node looks every few seconds. When no collection has
// completed since its last look, and the live heap the last collection
// found is well above the live heap after the node last released memory,
// it collects and returns the freed pages to the operating system. Under
// load collections run every second or so and it never acts; on a quiet
// node whose heap has not grown it never acts either.

// releaseMinGain is how far (and at least half of the floor) the live heap
// of the last collection must be above the floor before a release.
const releaseMinGain = 64 << 20

// memSample is what the release decision reads from the runtime.
type memSample struct {
	cycles uint64 // collections completed
	live   uint64 // bytes the last collection found live
}

// memoryReleaser decides when to release memory.
type memoryReleaser struct {
	cycles uint64 // collections completed at the last look
	floor  uint64 // live heap after the last release (0: none yet)
}

// due reports whether to release now, given a new sample.
func (r *memoryReleaser) due(s memSample) bool {
	quiet := s.cycles == r.cycles
	r.cycles = s.cycles
	return quiet && s.live >= r.floor+max(releaseMinGain, r.floor/2)
}

// released records the sample taken after a release.
func (r *memoryReleaser) released(s memSample) {
	r.cycles, r.floor = s.cycles, s.live
}

func readMemSample(buf []metrics.Sample) memSample {
	metrics.Read(buf)
	return memSample{cycles: buf[0].Value.Uint64(), live: buf[1].Value.Uint64()}
}

func newMemSamples() []metrics.Sample {
	return []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/gc/heap/live:bytes"}}
}

// releaseIdleMemory looks once per tick until ctx ends, releasing memory
// when due; it returns how many releases it made.
func releaseIdleMemory(ctx context.Context, ticks <-chan time.Time, logger *slog.Logger) int {
	buf := newMemSamples()
	r := memoryReleaser{cycles: readMemSample(buf).cycles}
	n := 0
	for {
		select {
		case <-ctx.Done():
			return n
		case <-ticks:
		}
		before := readMemSample(buf)
		if !r.due(before) {
			continue
		}
		start := time.Now()
		debug.FreeOSMemory()
		after := readMemSample(buf)
		r.released(after)
		n++
		logger.Debug("released idle memory", "live_before", before.live, "live_after", after.live, "took", time.Since(start))
	}
}
