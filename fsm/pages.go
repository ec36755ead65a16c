package fsm

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Badger writes every table through a shared memory mapping of its file
// (and values at or above the value threshold through a mapping of the value
// log), so each page it writes stays resident in the node until the kernel
// runs short of memory. After a bulk load almost all of a node's memory is
// such pages: tables of every shard replica the node holds, most of which no
// read will touch (followers serve no reads, and compaction deletes most
// tables soon after writing them). A raft snapshot of a shard reads all of
// its tables once, which leaves them resident too.
//
// The page releaser hands those pages back to the kernel:
//
//   - Every TableRelease, it reads the process's mappings and releases each
//     table file the pass before also found, once, and again two passes later
//     (in case the first release caught the table still being written), and
//     each value-log file likewise once a newer one takes the appends.
//     Releasing is MADV_PAGEOUT over the mapping, which unmaps the pages and
//     frees the clean ones, and then POSIX_FADV_DONTNEED over the file, which
//     drops from the page cache what the first could not free at once. So
//     the pages leave the page cache, not only the process
//     (docs/benchmarks.md measures both).
//   - A snapshot, and deleting a prefix, release the pages that were not
//     mapped when they started and are when they end (releaseSince), so the
//     pages that reads had brought in stay.
//
// A read that needs a released page faults it back in from disk: what stays
// resident is what reads use. The advice never changes data: at worst (a file
// unmapped, and its range reused, between reading the mappings and the call)
// it is a hint about the pages of another mapping, which the kernel may follow
// or not.

// mapping is one line of /proc/self/maps that names a file of the store.
type mapping struct {
	start, end uintptr
	path       string
}

// pageReleaser decides which mappings to release. pass and due are for the
// store's release loop alone; mapped and releaseSince may be called from any
// goroutine.
type pageReleaser struct {
	dir  string               // the store directory, absolute, ending in "/"
	seen map[string]fileState // files mapped at the last pass

	files, bytes atomic.Uint64 // released so far, for metrics
}

// fileState counts the passes that found a file mapped, up to releasedAgain.
type fileState uint8

const (
	firstRelease  fileState = 2 // the pass that releases a file
	releasedAgain fileState = 4 // the pass that releases it once more
)

func newPageReleaser(dir string) *pageReleaser {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real // /proc/self/maps names files by their resolved paths
	}
	return &pageReleaser{dir: filepath.Clean(dir) + "/", seen: make(map[string]fileState)}
}

// storeMappings returns the mappings of maps (the text of /proc/self/maps)
// that name table or value-log files directly inside the store directory.
// Files already deleted (" (deleted)") are left out: they go away on their own.
func (r *pageReleaser) storeMappings(maps []byte) []mapping {
	var out []mapping
	sc := bufio.NewScanner(bytes.NewReader(maps))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// address perms offset dev inode path
		f := strings.Fields(sc.Text())
		if len(f) != 6 {
			continue // anonymous, or a path with spaces (never Badger's)
		}
		path := f[5]
		if !strings.HasPrefix(path, r.dir) || strings.Contains(path[len(r.dir):], "/") {
			continue
		}
		if !strings.HasSuffix(path, ".sst") && !strings.HasSuffix(path, ".vlog") {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		out = append(out, mapping{start: uintptr(start), end: uintptr(end), path: path})
	}
	return out
}

// due returns the mappings to release now, given the current mappings, and
// updates what has been seen. A table file is released on the second pass
// that finds it mapped (Badger maps a new table before it copies the table
// in, and a copy takes milliseconds, so by then the file is written and
// synced) and once more on the fourth, for a table whose copy was held up
// past the second. A value-log file is released likewise once a newer one
// exists (the newest is the one Badger appends to). Files no longer mapped
// are forgotten.
func (r *pageReleaser) due(ms []mapping) []mapping {
	newestLog := ""
	for _, m := range ms {
		// Value-log files are named by a zero-padded, increasing number.
		if strings.HasSuffix(m.path, ".vlog") && m.path > newestLog {
			newestLog = m.path
		}
	}
	next := make(map[string]fileState, len(ms)) // what this pass leaves seen
	var out []mapping
	for _, m := range ms {
		// Decide by the state before this pass, so that every range of a
		// file with several is treated alike.
		if m.path == newestLog {
			continue
		}
		prev := r.seen[m.path]
		n := min(prev+1, releasedAgain)
		next[m.path] = n
		if n != prev && (n == firstRelease || n == releasedAgain) {
			out = append(out, m)
		}
	}
	r.seen = next // files no longer mapped are forgotten
	return out
}

// pass reads the mappings once and releases what is due. It returns the
// first error from the kernel, if any.
func (r *pageReleaser) pass() error {
	maps, err := readMappings()
	if err != nil {
		return err
	}
	due := r.due(r.storeMappings(maps))
	var first error
	files := map[string]struct{}{}
	for _, m := range due {
		if err := pageOut(m.start, m.end-m.start); err != nil {
			if first == nil && !isUnmapped(err) {
				first = err
			}
			continue
		}
		files[m.path] = struct{}{}
		r.bytes.Add(uint64(m.end - m.start))
	}
	// Unmapping can leave pages in the page cache (ones the kernel could not
	// free at once, or read around a fault but never mapped): drop the
	// file's clean cached pages too. A file deleted meanwhile is gone anyway.
	for path := range files {
		_ = dropCached(path)
	}
	r.files.Add(uint64(len(files)))
	return first
}

// pageSet records, for each store mapping, which of its pages were mapped in
// the process (bit 0 of each byte).
type pageSet map[mapping][]byte

// mapped reads the store's mappings and which of their pages are mapped.
// It returns nil if the mappings cannot be read.
func (r *pageReleaser) mapped() pageSet {
	maps, err := readMappings()
	if err != nil {
		return nil
	}
	set := pageSet{}
	for _, m := range r.storeMappings(maps) {
		if vec, err := mappedPages(m.start, m.end-m.start); err == nil {
			set[m] = vec
		}
	}
	return set
}

// releaseSince hands back the pages that are mapped now and were not in
// before, in mappings that existed then. A snapshot of a shard reads every
// table of it once; releaseSince around it leaves the memory as the snapshot
// found it, keeping the pages that reads had brought in. Safe for concurrent
// use with the release loop and with other calls.
func (r *pageReleaser) releaseSince(before pageSet) {
	if before == nil {
		return
	}
	page := uintptr(os.Getpagesize())
	for m, now := range r.mapped() {
		then, ok := before[m]
		if !ok || len(then) != len(now) {
			continue // a file mapped since: the release loop's to hand back
		}
		for i := 0; i < len(now); {
			if now[i]&1 == 0 || then[i]&1 == 1 {
				i++
				continue
			}
			j := i
			for j < len(now) && now[j]&1 == 1 && then[j]&1 == 0 {
				j++
			}
			start, n := m.start+uintptr(i)*page, uintptr(j-i)*page
			if err := pageOut(start, n); err == nil {
				r.bytes.Add(uint64(n))
			}
			i = j
		}
	}
}

// releaseLoop runs pass every interval until ctx ends. If the kernel refuses
// the advice (a kernel before Linux 5.4) it logs that once and stops: the
// store works as before, with written pages resident.
func (s *Store) releaseLoop(ctx context.Context, r *pageReleaser, interval time.Duration) {
	defer close(s.releaseDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := r.pass(); err != nil {
			s.logger.Warn("page release stopped: the kernel refused it; tables Badger writes stay resident", "error", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
