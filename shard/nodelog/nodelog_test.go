package nodelog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// entry is the content every test writes for (shard, index, term), so a
// read can be checked without remembering what was written.
func entry(shard, index, term uint64) *raft.Log {
	data := bytes.Repeat([]byte(fmt.Sprintf("s%d-i%d-t%d;", shard, index, term)), 1+int(index%7))
	l := &raft.Log{Index: index, Term: term, Type: raft.LogCommand, Data: data}
	if index%3 == 0 {
		l.Extensions = []byte(fmt.Sprintf("ext-%d", index))
	}
	if index%2 == 0 {
		l.AppendedAt = time.Unix(1_700_000_000, int64(index)).UTC()
	}
	if index%11 == 0 {
		l.Type = raft.LogNoop
		l.Data = nil
	}
	return l
}

func entries(shard, from, to, term uint64) []*raft.Log {
	var ls []*raft.Log
	for i := from; i <= to; i++ {
		ls = append(ls, entry(shard, i, term))
	}
	return ls
}

// model is what a shard's log must hold.
type model struct {
	first, last uint64
	terms       map[uint64]uint64
	stable      map[string][]byte
}

func newModel() *model { return &model{terms: map[uint64]uint64{}, stable: map[string][]byte{}} }

func (m *model) store(logs []*raft.Log) {
	first := logs[0].Index
	switch {
	case m.last == 0:
		m.first = first
	case first == m.last+1:
	case first > m.last+1 || first <= m.first:
		m.terms = map[uint64]uint64{}
		m.first = first
	default:
		for i := first; i <= m.last; i++ {
			delete(m.terms, i)
		}
	}
	for _, l := range logs {
		m.terms[l.Index] = l.Term
		m.last = l.Index
	}
}

func (m *model) deleteRange(lo, hi uint64) {
	if m.last == 0 || hi < m.first || lo > m.last {
		return
	}
	for i := max(lo, m.first); i <= min(hi, m.last); i++ {
		delete(m.terms, i)
	}
	switch {
	case lo <= m.first && hi >= m.last:
		m.first, m.last = 0, 0
	case lo <= m.first:
		m.first = hi + 1
	default:
		m.last = lo - 1
	}
}

// check compares shard id of l with m entry by entry.
func check(t *testing.T, l *Log, id uint64, m *model) {
	t.Helper()
	s := l.Shard(id)
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	if first != m.first || last != m.last {
		t.Fatalf("shard %d holds %d-%d, want %d-%d", id, first, last, m.first, m.last)
	}
	for i := m.first; m.last != 0 && i <= m.last; i++ {
		var got raft.Log
		if err := s.GetLog(i, &got); err != nil {
			t.Fatalf("shard %d entry %d: %v", id, i, err)
		}
		want := entry(id, i, m.terms[i])
		if got.Index != want.Index || got.Term != want.Term || got.Type != want.Type ||
			!bytes.Equal(got.Data, want.Data) || !bytes.Equal(got.Extensions, want.Extensions) || !got.AppendedAt.Equal(want.AppendedAt) {
			t.Fatalf("shard %d entry %d: got %+v, want %+v", id, i, got, *want)
		}
	}
	for _, i := range []uint64{m.first - 1, m.last + 1} {
		if i == 0 {
			continue
		}
		var got raft.Log
		if err := s.GetLog(i, &got); !errors.Is(err, raft.ErrLogNotFound) {
			t.Fatalf("shard %d entry %d outside %d-%d: got %v, want ErrLogNotFound", id, i, m.first, m.last, err)
		}
	}
	for k, v := range m.stable {
		got, err := s.Get([]byte(k))
		if err != nil || !bytes.Equal(got, v) {
			t.Fatalf("shard %d stable %q: got %q, %v; want %q", id, k, got, err, v)
		}
	}
	if _, err := s.Get([]byte("never-set")); err == nil || err.Error() != "not found" {
		t.Fatalf("shard %d: unset stable key: got %v, want an error reading \"not found\" (raft compares the text)", id, err)
	}
}

func open(t *testing.T, dir string, segSize int64) *Log {
	t.Helper()
	l, err := Open(dir, Options{SegmentSize: segSize})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestAppendReadAndReopen(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, 0)
	models := map[uint64]*model{}
	for id := uint64(0); id < 3; id++ {
		m := newModel()
		models[id] = m
		s := l.Shard(id)
		logs := entries(id, 1, 40+id, 1)
		must(t, s.StoreLogs(logs[:10]))
		must(t, s.StoreLogs(logs[10:]))
		m.store(logs)
		must(t, s.SetUint64([]byte("CurrentTerm"), 7+id))
		must(t, s.Set([]byte("LastVoteCand"), []byte(fmt.Sprintf("n%d", id))))
		m.stable["CurrentTerm"] = binary.BigEndian.AppendUint64(nil, 7+id)
		m.stable["LastVoteCand"] = []byte(fmt.Sprintf("n%d", id))
	}
	for id, m := range models {
		check(t, l, id, m)
	}
	must(t, l.Close())
	l = open(t, dir, 0)
	defer l.Close()
	for id, m := range models {
		check(t, l, id, m)
	}
	if v, err := l.Shard(2).GetUint64([]byte("CurrentTerm")); err != nil || v != 9 {
		t.Fatalf("GetUint64 after reopen: %d, %v; want 9", v, err)
	}
	if got := l.Shards(); !slices.Equal(got, []uint64{0, 1, 2}) {
		t.Fatalf("shards %v, want [0 1 2]", got)
	}
}

func TestTruncateCompactAndStartOver(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, 0)
	s, m := l.Shard(5), newModel()
	step := func(what string, f func() error, mf func()) {
		t.Helper()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		mf()
		check(t, l, 5, m)
	}
	logs := entries(5, 1, 50, 1)
	step("append 1-50", func() error { return s.StoreLogs(logs) }, func() { m.store(logs) })
	step("delete tail 41-50", func() error { return s.DeleteRange(41, 50) }, func() { m.deleteRange(41, 50) })
	logs = entries(5, 41, 60, 2)
	step("append 41-60 in term 2", func() error { return s.StoreLogs(logs) }, func() { m.store(logs) })
	step("compact 1-20", func() error { return s.DeleteRange(1, 20) }, func() { m.deleteRange(1, 20) })
	logs = entries(5, 55, 58, 3)
	step("overwrite 55-58 in term 3 (raft would delete first)", func() error { return s.StoreLogs(logs) }, func() { m.store(logs) })
	if err := s.DeleteRange(30, 40); err == nil || !strings.Contains(err.Error(), "middle") {
		t.Fatalf("deleting from the middle: got %v, want an error", err)
	}
	check(t, l, 5, m)
	logs = entries(5, 100, 110, 4)
	step("append past the end (after a snapshot install)", func() error { return s.StoreLogs(logs) }, func() { m.store(logs) })
	step("delete everything", func() error { return s.DeleteRange(1, 200) }, func() { m.deleteRange(1, 200) })
	logs = entries(5, 300, 305, 5)
	step("append to an empty log", func() error { return s.StoreLogs(logs) }, func() { m.store(logs) })
	if err := s.StoreLogs([]*raft.Log{entry(5, 306, 5), entry(5, 308, 5)}); err == nil {
		t.Fatal("appending entries with a gap between them: want an error")
	}
	check(t, l, 5, m)
	must(t, l.Close())
	l = open(t, dir, 0)
	defer l.Close()
	check(t, l, 5, m)
}

// TestRandomOperationsAgainstModel drives several shards with random
// appends, truncations, compactions, stable writes and drops through small
// segments (so segments rotate, die and have entries moved out of them),
// reopening now and then, and compares every shard with a model.
//
// The first seed is fixed: with it, restarts left seven segments closed
// early, each a whole reservation on disk holding a few live entries that
// filled more than a quarter of what it had written, so none was tidied.
// The second is new on every run ($NODELOG_SEED replays one).
func TestRandomOperationsAgainstModel(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("NODELOG_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("NODELOG_SEED: %v", err)
		}
	}
	for _, seed := range []uint64{1795837335392042074, seed} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { randomOperationsAgainstModel(t, seed) })
	}
}

func randomOperationsAgainstModel(t *testing.T, seed uint64) {
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	dir := t.TempDir()
	const segSize = 16 << 10
	l := open(t, dir, segSize)
	defer func() { l.Close() }()
	models := map[uint64]*model{}
	term := uint64(1)
	maxSegs := 0
	for step := 0; step < 3000; step++ {
		id := uint64(rng.IntN(4))
		m := models[id]
		if m == nil {
			m = newModel()
			models[id] = m
		}
		s := l.Shard(id)
		switch k := rng.IntN(100); {
		case k < 60: // append at the end, mostly; shard 3 writes rarely
			if id == 3 && rng.IntN(10) != 0 {
				continue
			}
			from := m.last + 1
			switch rng.IntN(20) {
			case 0:
				from = m.last + 2 + uint64(rng.IntN(50)) // past the end
			case 1:
				if m.last > m.first {
					from = m.first + uint64(rng.IntN(int(m.last-m.first))) + 1 // overwrite
					term++
				}
			}
			logs := entries(id, from, from+uint64(rng.IntN(8)), term)
			must(t, s.StoreLogs(logs))
			m.store(logs)
		case k < 75: // compact the head, keeping a tail as raft does
			if m.last > m.first+4 {
				to := m.first + uint64(rng.IntN(int(m.last-m.first-3)))
				must(t, s.DeleteRange(m.first, to))
				m.deleteRange(m.first, to)
			}
		case k < 82: // truncate the tail
			if m.last > m.first {
				from := m.first + 1 + uint64(rng.IntN(int(m.last-m.first)))
				must(t, s.DeleteRange(from, m.last))
				m.deleteRange(from, m.last)
			}
		case k < 95:
			key := fmt.Sprintf("k%d", rng.IntN(3))
			val := []byte(fmt.Sprintf("v%d", step))
			must(t, s.Set([]byte(key), val))
			m.stable[key] = val
		case k < 97:
			must(t, l.Drop(id))
			delete(models, id)
		default:
			must(t, l.Close())
			l = open(t, dir, segSize)
		}
		maxSegs = max(maxSegs, l.Segments())
		if step%100 == 0 {
			for id, m := range models {
				check(t, l, id, m)
			}
		}
	}
	must(t, l.Close())
	l = open(t, dir, segSize)
	for id, m := range models {
		check(t, l, id, m)
	}
	for _, id := range l.Shards() {
		if models[id] == nil {
			t.Fatalf("dropped shard %d is back after reopening", id)
		}
	}
	// Live data stays under a few segments' worth; shard 3's rare entries
	// must not keep old segments alive.
	var live int64
	for id, m := range models {
		for i := m.first; m.last != 0 && i <= m.last; i++ {
			live += int64(len(entry(id, i, 0).Data)) + 64
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"+segExt))
	limit := int(live/segSize) + 6
	t.Logf("%d segment files at the end (at most %d at once), live entries about %d bytes", len(files), maxSegs, live)
	if len(files) > limit {
		t.Fatalf("%d segment files for about %d live bytes (limit %d): dead segments are not reclaimed", len(files), live, limit)
	}
}

func TestDropForgetsShardAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, 0)
	s := l.Shard(9)
	must(t, s.StoreLogs(entries(9, 1, 10, 1)))
	must(t, s.SetUint64([]byte("CurrentTerm"), 3))
	must(t, l.Shard(1).StoreLogs(entries(1, 1, 3, 1)))
	must(t, l.Drop(9))
	must(t, l.Close())
	l = open(t, dir, 0)
	defer l.Close()
	check(t, l, 9, newModel())
	if _, err := l.Shard(9).GetUint64([]byte("CurrentTerm")); err == nil {
		t.Fatal("term of a dropped shard survived")
	}
	m := newModel()
	m.store(entries(1, 1, 3, 1))
	check(t, l, 1, m)
}

// lastSegment returns the path of the newest segment and where its records
// end.
func lastSegment(t *testing.T, l *Log) (string, int64) {
	t.Helper()
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.segPath(l.active.seq), l.active.size
}

// TestTornTailIsCutAndNeverResumed: a crash mid-write leaves the last
// record incomplete and may leave a later record of the same write whole.
// Recovery must stop at the incomplete one, and a later restart must not
// read the whole one back after new records.
func TestTornTailIsCutAndNeverResumed(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, 1<<20)
	s := l.Shard(1)
	m := newModel()
	logs := entries(1, 1, 20, 1)
	must(t, s.StoreLogs(logs))
	m.store(logs)
	// The next write: two entries, as one commit.
	path, end := lastSegment(t, l)
	must(t, s.StoreLogs(entries(1, 21, 22, 1)))
	_, end2 := lastSegment(t, l)
	must(t, l.Close())
	seg, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rec21 := entrySize(entry(1, 21, 1))
	if end2-end != rec21+entrySize(entry(1, 22, 1)) {
		t.Fatalf("the write took %d bytes, want two records of %d and %d", end2-end, rec21, entrySize(entry(1, 22, 1)))
	}
	// Tear the first record of the write: its second half never reached
	// the disk, the second record did.
	clear(seg[end+rec21/2 : end+rec21])
	must(t, os.WriteFile(path, seg, 0o640))
	l = open(t, dir, 1<<20)
	check(t, l, 1, m)
	// New records of the same sizes after the restart, then another.
	logs = entries(1, 21, 21, 1)
	must(t, l.Shard(1).StoreLogs(logs))
	m.store(logs)
	must(t, l.Close())
	l = open(t, dir, 1<<20)
	defer l.Close()
	check(t, l, 1, m)
}

func entrySize(e *raft.Log) int64 { return int64(len(appendEntry(nil, recAppend, 0, e))) }

// TestLostEntryFailsRecovery: a live entry that cannot be read back (here a
// flipped bit in an older segment) makes Open fail instead of serving a log
// with a hole.
func TestLostEntryFailsRecovery(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, 4<<10)
	s := l.Shard(1)
	must(t, s.StoreLogs(entries(1, 1, 10, 1)))
	path, _ := lastSegment(t, l)
	for i := uint64(11); i < 200; i += 10 {
		must(t, s.StoreLogs(entries(1, i, i+9, 1)))
	}
	must(t, l.Close())
	seg, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	seg[headerSize+200] ^= 0x10
	must(t, os.WriteFile(path, seg, 0o640))
	_, err = Open(dir, Options{SegmentSize: 4 << 10})
	if err == nil || !strings.Contains(err.Error(), "in no segment") {
		t.Fatalf("Open with a damaged live entry: got %v, want an error naming the missing entry", err)
	}
}

// TestConcurrentShardsShareSyncs: appends of many shards at once are
// committed together, fewer syncs than appends, and all of them land.
func TestConcurrentShardsShareSyncs(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, 1<<20)
	const shards, rounds = 8, 50
	before := l.Stats().Syncs
	var wg sync.WaitGroup
	errs := make(chan error, shards)
	for id := uint64(1); id <= shards; id++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := l.Shard(id)
			for i := uint64(1); i <= rounds; i++ {
				if err := s.StoreLogs([]*raft.Log{entry(id, i, 1)}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	syncs := l.Stats().Syncs - before
	t.Logf("%d appends in %d syncs", shards*rounds, syncs)
	if syncs >= shards*rounds {
		t.Fatalf("%d syncs for %d appends: concurrent appends were not committed together", syncs, shards*rounds)
	}
	must(t, l.Close())
	l = open(t, dir, 1<<20)
	defer l.Close()
	for id := uint64(1); id <= shards; id++ {
		m := newModel()
		m.store(entries(id, 1, rounds, 1))
		check(t, l, id, m)
	}
}

func segExists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Stat(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// churn appends entries to shard id and compacts them away until the
// active segment is no longer the one at path, then once more so the
// segments in between hold nothing live.
func churn(t *testing.T, l *Log, id uint64, path string) {
	t.Helper()
	s := l.Shard(id)
	next, _ := s.LastIndex()
	next++
	for range 2 {
		for cur, _ := lastSegment(t, l); cur == path; cur, _ = lastSegment(t, l) {
			must(t, s.StoreLogs(entries(id, next, next+4, 1)))
			next += 5
		}
		path, _ = lastSegment(t, l)
	}
	must(t, s.DeleteRange(1, next-2))
}

// TestCheckpointsOutliveDeletedSegments: a drop or a truncation recorded in
// a segment that is later deleted must still hold after a restart, although
// the entries it removed sit in an older segment that is kept.
func TestCheckpointsOutliveDeletedSegments(t *testing.T) {
	dir := t.TempDir()
	const segSize = 8 << 10
	l := open(t, dir, segSize)
	old, _ := lastSegment(t, l)
	// The old segment: shard 1's entries keep it alive (well over a quarter
	// of it), next to shard 7's and shard 8's.
	keep := newModel()
	logs := entries(1, 1, 30, 1)
	must(t, l.Shard(1).StoreLogs(logs))
	keep.store(logs)
	must(t, l.Shard(7).StoreLogs(entries(7, 1, 10, 1)))
	trunc := newModel()
	logs = entries(8, 1, 10, 1)
	must(t, l.Shard(8).StoreLogs(logs))
	trunc.store(logs)
	if cur, _ := lastSegment(t, l); cur != old {
		t.Fatalf("the first writes already filled a segment; make them smaller")
	}
	// Fill the old segment so the drop and the truncation land in the next.
	churn(t, l, 2, old)
	mid, _ := lastSegment(t, l)
	must(t, l.Drop(7))
	must(t, l.Shard(8).DeleteRange(6, 10))
	trunc.deleteRange(6, 10)
	churn(t, l, 2, mid)
	must(t, l.Close()) // the writer has deleted what died
	if !segExists(t, old) || segExists(t, mid) {
		t.Fatalf("setup: want the old segment kept (kept: %v) and the one with the drop deleted (kept: %v)", segExists(t, old), segExists(t, mid))
	}
	l = open(t, dir, segSize)
	defer l.Close()
	check(t, l, 1, keep)
	check(t, l, 7, newModel())
	check(t, l, 8, trunc)
	if slices.Contains(l.Shards(), 7) {
		t.Fatalf("dropped shard 7 is back: shards %v", l.Shards())
	}
}

// TestIdleShardDoesNotPinSegments: a shard that writes an entry now and
// then and never compacts (as a meta group between snapshots) must not keep
// every segment it wrote to alive; its entries move forward and stay
// readable.
func TestIdleShardDoesNotPinSegments(t *testing.T) {
	dir := t.TempDir()
	const segSize = 8 << 10
	l := open(t, dir, segSize)
	idle := newModel()
	busy := l.Shard(1)
	var next uint64 = 1
	for round := range 600 {
		if round%20 == 0 {
			i := idle.last + 1
			logs := entries(0, i, i, 1)
			must(t, l.Shard(0).StoreLogs(logs))
			idle.store(logs)
		}
		must(t, busy.StoreLogs(entries(1, next, next+4, 1)))
		next += 5
		if next > 40 {
			must(t, busy.DeleteRange(1, next-30))
		}
	}
	// 3,000 entries of about 100 bytes went through 8 KiB segments; the
	// idle shard wrote to about 30 of them.
	if n := l.Segments(); n > 5 {
		t.Fatalf("%d segments alive with a few KiB live: the idle shard pins them", n)
	}
	check(t, l, 0, idle)
	must(t, l.Close())
	l = open(t, dir, segSize)
	defer l.Close()
	check(t, l, 0, idle)
}
