package main

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// The release decision: only on a look with no collection since the one
// before, and only when the live heap of the last collection is at least
// releaseMinGain, and half, above the live heap after the last release.
func TestMemoryReleaseDecision(t *testing.T) {
	const mib = 1 << 20
	var r memoryReleaser
	steps := []struct {
		name     string
		sample   memSample
		want     bool
		released bool // the sample is the one taken after a release
	}{
		{name: "first look: collections ran before it", sample: memSample{cycles: 7, live: 300 * mib}},
		{name: "quiet, with a large live heap and no release yet", sample: memSample{cycles: 7, live: 300 * mib}, want: true},
		{name: "the release found 90 MiB live", sample: memSample{cycles: 8, live: 90 * mib}, released: true},
		{name: "quiet, the heap as the release left it", sample: memSample{cycles: 8, live: 90 * mib}},
		{name: "a collection ran since the last look", sample: memSample{cycles: 9, live: 400 * mib}},
		{name: "quiet again after it, far above the floor", sample: memSample{cycles: 9, live: 400 * mib}, want: true},
		{name: "the release found 200 MiB live", sample: memSample{cycles: 10, live: 200 * mib}, released: true},
		{name: "busy: collections between looks", sample: memSample{cycles: 11, live: 500 * mib}},
		{name: "busy", sample: memSample{cycles: 12, live: 500 * mib}},
		// 200 MiB floor: the gain must be at least 100 MiB (half), not 64.
		{name: "quiet, 99 MiB above the floor", sample: memSample{cycles: 12, live: 299 * mib}},
		{name: "quiet, 100 MiB above the floor", sample: memSample{cycles: 12, live: 300 * mib}, want: true},
		{name: "the release found 10 MiB live", sample: memSample{cycles: 13, live: 10 * mib}, released: true},
		// 10 MiB floor: the gain must be at least releaseMinGain.
		{name: "quiet, 63 MiB above the floor", sample: memSample{cycles: 13, live: 73 * mib}},
		{name: "quiet, 64 MiB above the floor", sample: memSample{cycles: 13, live: 74 * mib}, want: true},
	}
	for _, s := range steps {
		if s.released {
			r.released(s.sample)
			continue
		}
		if got := r.due(s.sample); got != s.want {
			t.Fatalf("%s: due = %v, want %v", s.name, got, s.want)
		}
	}
}

// A heap that a burst grew, then left as garbage, is collected and returned
// once no collection has run for an interval, and then left alone: what
// stays live (96 MiB here, above releaseMinGain) is the new floor, not a
// reason to release again at every quiet look. Automatic collection is off
// for the test, so only the releaser can find the garbage.
func TestReleaseIdleMemoryReturnsGarbage(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	buf := newMemSamples()
	alloc := func(mib int) [][]byte {
		bs := make([][]byte, 0, mib)
		for range mib {
			b := make([]byte, 1<<20)
			b[0] = 1
			bs = append(bs, b)
		}
		return bs
	}
	kept, burst := alloc(96), alloc(192)
	runtime.GC() // the burst is live at this collection
	before := readMemSample(buf)
	if before.live < (96+192)<<20 {
		t.Fatalf("live heap %d after allocating 288 MiB", before.live)
	}
	runtime.KeepAlive(burst)

	// The test makes every look: a send on the unbuffered tick channel
	// returns once the releaser has finished the look before it.
	ticks := make(chan time.Time)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan int)
	go func() { done <- releaseIdleMemory(ctx, ticks, slog.New(slog.DiscardHandler)) }()
	looks := 0
	for ; readMemSample(buf).live > before.live-128<<20; looks++ {
		if looks == 100 {
			t.Fatalf("live heap still %d (was %d) after %d looks", readMemSample(buf).live, before.live, looks)
		}
		ticks <- time.Now()
	}
	// Ten more quiet looks at the kept heap; returning from cancel's
	// wait below means the last of them has finished.
	for range 10 {
		ticks <- time.Now()
	}
	cancel()
	if n := <-done; n != 1 {
		t.Fatalf("%d releases, want 1: one for the burst, none for the %d bytes kept live", n, readMemSample(buf).live)
	}
	runtime.KeepAlive(kept)
}

func TestGoMemoryLimit(t *testing.T) {
	cgroup := func(l uint64, err error) func() (uint64, error) {
		return func() (uint64, error) { return l, err }
	}
	auto := serverOpts{memoryLimitAuto: true}
	for _, c := range []struct {
		name     string
		o        serverOpts
		cgroup   func() (uint64, error)
		want     int64
		inSource string
	}{
		{"auto, cgroup limit 500MiB", auto, cgroup(500<<20, nil), 400 << 20, "500 MiB"},
		{"auto, cgroup limit 4GiB", auto, cgroup(4<<30, nil), 4 << 30 / 5 * 4, "4.0 GiB"},
		{"auto, no cgroup limit", auto, cgroup(0, memlimit.ErrNoLimit), 256 << 20, "no cgroup memory limit"},
		{"auto, a limit of 0", auto, cgroup(0, nil), 256 << 20, "no cgroup memory limit"},
		{"auto, not in a cgroup", auto, cgroup(0, memlimit.ErrNoCgroup), 256 << 20, "no cgroup memory limit"},
		{"auto, no cgroups (not Linux)", auto, cgroup(0, memlimit.ErrCgroupsNotSupported), 256 << 20, "no cgroup memory limit"},
		{"auto, cgroups unreadable", auto, cgroup(0, errors.New("permission denied")), 256 << 20, "permission denied"},
		{"1GiB given, cgroup limit 500MiB", serverOpts{memoryLimit: 1 << 30}, cgroup(500<<20, nil), 1 << 30, "--memory-limit"},
		{"0 given, cgroup limit 500MiB", serverOpts{}, cgroup(500<<20, nil), 0, "--memory-limit"},
	} {
		got, source := goMemoryLimit(c.o, c.cgroup)
		if got != c.want || !strings.Contains(source, c.inSource) {
			t.Errorf("%s: %d (%s), want %d (%q in the source)", c.name, got, source, c.want, c.inSource)
		}
	}
}
