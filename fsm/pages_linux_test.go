package fsm_test

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairndb/cairn/fsm"
)

// tableMemory sums, over this process's mappings of .sst files in dir, the
// bytes mapped and the bytes resident (RSS), as /proc/self/smaps reports them.
func tableMemory(t *testing.T, dir string) (mapped, resident int64) {
	t.Helper()
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if strings.Contains(fields[0], "-") && len(fields) >= 5 {
			in = len(fields) == 6 && filepath.Dir(fields[5]) == real && strings.HasSuffix(fields[5], ".sst")
			continue
		}
		if !in || len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "Size:":
			mapped += kb << 10
		case "Rss:":
			resident += kb << 10
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return mapped, resident
}

// fillTables writes n keys of 1000 random (incompressible) bytes, below the
// value threshold so they go into tables, and waits until the memtables
// holding them have become at least minTables bytes of tables.
func fillTables(t *testing.T, f *fsm.FSM, dir string, n int, minTables int64) map[string][]byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	want := make(map[string][]byte, n)
	var ops []fsm.Op
	for i := range n {
		k := fmt.Sprintf("key-%06d", i)
		v := make([]byte, 1000)
		for j := range v {
			v[j] = byte(rng.Uint32())
		}
		want[k] = v
		ops = append(ops, fsm.Put([]byte(k), v))
		if len(ops) == 500 {
			apply(t, f, fsm.Command{Ops: ops})
			ops = nil
		}
	}
	if len(ops) > 0 {
		apply(t, f, fsm.Command{Ops: ops})
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if mapped, _ := tableMemory(t, dir); mapped >= minTables {
			break
		}
		if time.Now().After(deadline) {
			mapped, _ := tableMemory(t, dir)
			t.Fatalf("tables of %d bytes after 20 s, want at least %d", mapped, minTables)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Flushes and compactions that the fill set going write and map new
	// tables, whose pages the tests would count; on a machine whose disk
	// is busy they run for seconds. Wait until the tables stay the same.
	var last string
	for stable, deadline := 0, time.Now().Add(60*time.Second); stable < 3; {
		if time.Now().After(deadline) {
			t.Fatalf("the tables still changed after 60 s: %s", last)
		}
		time.Sleep(200 * time.Millisecond)
		now := tableFiles(t, dir)
		if now == last {
			stable++
		} else {
			last, stable = now, 0
		}
	}
	return want
}

// tableFiles names dir's tables with their sizes.
func tableFiles(t *testing.T, dir string) string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			continue // deleted meanwhile: the next look differs
		}
		fmt.Fprintf(&b, "%s:%d ", filepath.Base(p), st.Size())
	}
	return b.String()
}

func openReleasing(t *testing.T, dir string, every time.Duration) *fsm.FSM {
	t.Helper()
	o := testOptions(dir)
	o.TableRelease = every
	s, err := fsm.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return openShard(t, s, 1)
}

const (
	fillKeys  = 40_000   // 40 MB of values
	minTables = 16 << 20 // over memtables of 8 MiB
	page      = 4096
)

// Tables Badger writes stay in memory unless released. Released, they leave
// the process and the page cache, and reads still find every value.
func TestTablePagesReleased(t *testing.T) {
	keepDir := t.TempDir()
	keep := openReleasing(t, keepDir, 0)
	fillTables(t, keep, keepDir, fillKeys, minTables)
	mapped, resident := tableMemory(t, keepDir)
	cached := int64(keep.Store().CachedTablePages()) * page
	t.Logf("without release: %d of %d table bytes resident, %d cached", resident, mapped, cached)
	if resident < mapped/2 || cached < mapped/2 {
		t.Fatalf("without release: %d of %d table bytes resident, %d cached; want most (Badger writes through the mapping)", resident, mapped, cached)
	}

	dir := t.TempDir()
	f := openReleasing(t, dir, time.Second)
	want := fillTables(t, f, dir, fillKeys, minTables)
	deadline := time.Now().Add(20 * time.Second)
	for {
		// A table is released by the second pass that finds it, so within
		// two intervals of its writing; each keeps a few pages opening it
		// read, and some tables are written after the fill returns.
		mapped, resident = tableMemory(t, dir)
		cached = int64(f.Store().CachedTablePages()) * page
		if resident <= mapped/20 && cached <= mapped/20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with release every second: %d of %d table bytes still resident, %d cached, after 20 s", resident, mapped, cached)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("with release: %d of %d table bytes resident, %d cached", resident, mapped, cached)

	got := storeMetrics(t, f.Store())
	tables, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	if got["cairn_store_page_release_files_total"] < float64(len(tables)) || got["cairn_store_page_release_bytes_total"] < float64(mapped) {
		t.Fatalf("release counters %v, want at least the %d tables and %d bytes now released", got, len(tables), mapped)
	}

	for k, v := range want {
		it, err := f.Get([]byte(k))
		if err != nil || string(it.Value) != string(v) {
			t.Fatalf("get %s after release: %d bytes, %v; want the %d written", k, len(it.Value), err, len(v))
		}
	}
}

// A snapshot reads every table of its shard; the pages it brings in are
// released when it ends, and the pages reads had brought in before it stay.
func TestSnapshotLeavesTablePagesAsFound(t *testing.T) {
	dir := t.TempDir()
	f := openReleasing(t, dir, 0)
	want := fillTables(t, f, dir, fillKeys, minTables)
	// Pages just written are only unmapped, not freed, by a release in the
	// first moments after their writing: release until they are gone.
	var mapped, resident int64
	for deadline := time.Now().Add(10 * time.Second); ; {
		f.Store().ReleaseTablesNow()
		mapped, resident = tableMemory(t, dir)
		cached := int64(f.Store().CachedTablePages()) * page
		if resident <= mapped/20 && cached <= mapped/20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d table bytes resident, %d cached, after releasing them all for 10 s", resident, mapped, cached)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Reads bring in a working set: every key of a range.
	for i := range 4000 {
		if it, err := f.Get(fmt.Appendf(nil, "key-%06d", i)); err != nil || len(it.Value) != 1000 {
			t.Fatalf("get: %d bytes, %v", len(it.Value), err)
		}
	}
	_, before := tableMemory(t, dir)
	if before < resident+(2<<20) {
		t.Fatalf("reads of 4 MB of values took resident table bytes from %d to %d, want them faulted in", resident, before)
	}

	snap := snapshotBytes(t, f)
	if len(snap) < len(want)*1000 {
		t.Fatalf("snapshot of %d bytes, want every value", len(snap))
	}
	_, after := tableMemory(t, dir)
	t.Logf("resident table bytes: %d before the snapshot, %d after, of %d", before, after, mapped)
	if after > before+(256<<10) {
		t.Fatalf("after the snapshot %d table bytes resident, %d before: the pages it read were kept", after, before)
	}
	if after < before-(256<<10) {
		t.Fatalf("after the snapshot %d table bytes resident, %d before: the reads' pages were released too", after, before)
	}
}
