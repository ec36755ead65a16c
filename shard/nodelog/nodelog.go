// Package nodelog is one raft log for all the shard replicas of a node.
//
// Every replica's raft group appends to the same segment files, and one
// writer goroutine commits whatever the groups have queued with one write
// and one fdatasync. Under load a node's shards then share each sync instead
// of syncing their own logs one after another: on a 2-core machine the syncs
// were a third of a node's CPU per put (docs/benchmarks.md).
//
// # Files
//
// The log is a directory of segment files named by a growing sequence
// number. A segment starts with a magic header and a checkpoint: for every
// shard the log holds, the range of indexes it holds and its stable values
// (term and vote). Then come records, each [crc32c][length][body]:
// appends, moves of an entry to a newer segment, truncations of a shard's
// tail, compactions of its head and drops of a whole shard. A segment is
// read up to its first record that is incomplete or fails its checksum;
// writes after a restart go to a new segment, so a torn tail is never
// followed by valid data.
//
// # Recovery
//
// Records are replayed in file order. An append at or below a shard's last
// index replaces the entries from there; an append past the end starts the
// shard's log over (raft appends past its end only after installing a
// snapshot). A checkpoint restricts each shard to the range it held when
// its segment was opened and forgets shards that are not in it.
//
// # Space
//
// A segment is deleted once none of its entries is live. A segment whose
// live entries take less than a quarter of it (say, the few entries of a
// shard that rarely writes, which would otherwise keep every segment
// alive) has them moved to the newest segment, and is then deleted.
package nodelog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"golang.org/x/sys/unix"
)

// DefaultSegmentSize is the space a new segment reserves.
const DefaultSegmentSize = 64 << 20

const (
	magic      = "CAIRNLG1"
	headerSize = int64(len(magic))
	recHeader  = 8 // crc32c, body length
	// maxBody bounds one record; a length beyond it is a torn header.
	maxBody = 1 << 30
	// maxEntries bounds the entries a checkpoint may say a shard holds
	// (raft compacts its log long before).
	maxEntries = 1 << 28
	segExt     = ".seg"
)

const (
	recAppend     byte = 1 // [index][term][type][appended at][data][extensions]
	recMove       byte = 2 // an entry copied from an older segment, same payload
	recTruncate   byte = 3 // [from]: entries from this index on are removed
	recCompact    byte = 4 // [to]: entries up to this index are removed
	recDrop       byte = 5 // the shard is forgotten: entries and stable values
	recStable     byte = 6 // [key length u16][key][value]
	recCheckpoint byte = 7 // [first][last] of the shard when the segment opened
	recCheckEnd   byte = 8 // ends a segment's checkpoint (shard 0)
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrNotFound is returned for stable keys never set. Raft compares the
// message, so it must read "not found".
var ErrNotFound = errors.New("not found")

// Options configure a Log.
type Options struct {
	// SegmentSize: bytes a segment may hold before the next one opens
	// (default DefaultSegmentSize).
	SegmentSize int64
	// Logger: default discard.
	Logger *slog.Logger
}

// loc is where an entry's record lives. seg 0 marks an entry recovery has
// not found (yet).
type loc struct {
	seg uint64
	off int64
	n   uint32 // the whole record, header included
}

type shardState struct {
	first, last uint64 // 0, 0: no entries
	locs        []loc  // locs[i] holds index first+i
	stable      map[string][]byte
}

func (s *shardState) empty() bool { return s.last == 0 }

type segment struct {
	seq       uint64
	f         *os.File
	size      int64 // bytes written (valid records end here)
	start     int64 // where the records after the checkpoint start
	live      int   // live entries
	liveBytes int64
}

// Log is a node's shared raft log. Its methods are safe for concurrent use.
type Log struct {
	dir     string
	segSize int64
	logger  *slog.Logger

	mu     sync.RWMutex // guards shards, segs and the segments' counters
	shards map[uint64]*shardState
	segs   map[uint64]*segment
	active *segment // written only by the writer goroutine

	reqs     chan *request
	quit     chan struct{}
	done     chan struct{}
	closeMu  sync.Mutex
	closed   bool
	brokenMu sync.Mutex
	broken   error // a failed write or sync: the log refuses everything after it

	buf []byte // the writer's batch buffer
	// tidyDue: entries were released or a segment opened since the last
	// tidy (the writer's, like buf).
	tidyDue bool
	syncs   atomic.Uint64 // batches written and synced
	entries atomic.Uint64 // entries appended (moves not counted)
	written atomic.Uint64 // bytes written to segments
}

// Stats are counters of a Log since it was opened.
type Stats struct {
	Syncs    uint64 // batches written with one write and one sync each
	Entries  uint64 // raft entries appended
	Bytes    uint64 // bytes written to segment files, checkpoints included
	Segments int    // segment files held now
}

// Stats returns the log's counters.
func (l *Log) Stats() Stats {
	return Stats{Syncs: l.syncs.Load(), Entries: l.entries.Load(), Bytes: l.written.Load(), Segments: l.Segments()}
}

// Open opens (or creates) the log in dir and recovers its state.
func Open(dir string, o Options) (*Log, error) {
	if o.SegmentSize <= 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	l := &Log{
		dir:     dir,
		segSize: o.SegmentSize,
		logger:  o.Logger,
		shards:  map[uint64]*shardState{},
		segs:    map[uint64]*segment{},
		reqs:    make(chan *request, 1024),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if err := l.recover(); err != nil {
		l.closeFiles()
		return nil, fmt.Errorf("nodelog: recover %s: %w", dir, err)
	}
	if err := l.rotate(); err != nil {
		l.closeFiles()
		return nil, fmt.Errorf("nodelog: open segment: %w", err)
	}
	l.collect()
	go l.run()
	return l, nil
}

// Close stops the writer and closes the files. Shards must not be used
// afterwards.
func (l *Log) Close() error {
	l.closeMu.Lock()
	if l.closed {
		l.closeMu.Unlock()
		return nil
	}
	l.closed = true
	close(l.quit)
	l.closeMu.Unlock()
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closeFiles()
}

func (l *Log) closeFiles() error {
	var errs []error
	for _, s := range l.segs {
		errs = append(errs, s.f.Close())
	}
	return errors.Join(errs...)
}

// Shard returns the log of one shard replica. Many calls for the same id
// return logs of the same state.
func (l *Log) Shard(id uint64) *Shard { return &Shard{l: l, id: id} }

// Drop forgets a shard: its entries and stable values. It returns once the
// drop is durable, so a replica created afterwards under the same id starts
// empty even across a crash.
func (l *Log) Drop(id uint64) error {
	return l.submit(&request{shard: id, op: opDrop})
}

// Shards returns the ids of the shards the log holds anything for.
func (l *Log) Shards() []uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	ids := make([]uint64, 0, len(l.shards))
	for id := range l.shards {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Segments returns how many segment files the log holds.
func (l *Log) Segments() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.segs)
}

// ---- requests and the writer ----

type opKind int

const (
	opAppend opKind = iota
	opDeleteRange
	opStable
	opDrop
)

type request struct {
	shard    uint64
	op       opKind
	logs     []*raft.Log
	min, max uint64
	key      []byte
	val      []byte
	err      error
	done     chan struct{}
	// set while planning: the state changes this request makes, with
	// offsets relative to the batch buffer.
	effects []effect
}

type effect struct {
	kind  byte
	index uint64 // append/move: the entry; truncate: from; compact: to
	off   int64  // append/move: record offset in the batch
	n     uint32
	key   string
	val   []byte
}

func (l *Log) submit(r *request) error {
	r.done = make(chan struct{})
	if err := l.brokenErr(); err != nil {
		return err
	}
	select {
	case l.reqs <- r:
	case <-l.quit:
		return errors.New("nodelog: closed")
	}
	select {
	case <-r.done:
		return r.err
	case <-l.done:
		// The writer stopped; it answers every request it took.
		select {
		case <-r.done:
			return r.err
		default:
			return errors.New("nodelog: closed")
		}
	}
}

func (l *Log) brokenErr() error {
	l.brokenMu.Lock()
	defer l.brokenMu.Unlock()
	return l.broken
}

func (l *Log) run() {
	defer close(l.done)
	for {
		var batch []*request
		select {
		case r := <-l.reqs:
			batch = append(batch, r)
		case <-l.quit:
			l.failQueued()
			return
		}
	drain:
		for len(batch) < 4096 {
			select {
			case r := <-l.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		l.commit(batch)
		l.tidy()
	}
}

func (l *Log) failQueued() {
	for {
		select {
		case r := <-l.reqs:
			r.err = errors.New("nodelog: closed")
			close(r.done)
		default:
			return
		}
	}
}

// rng is a shard's range as the batch being planned leaves it.
type rng struct{ first, last uint64 }

// commit plans, writes, syncs and applies a batch of requests.
func (l *Log) commit(batch []*request) {
	if err := l.brokenErr(); err != nil {
		for _, r := range batch {
			r.err = err
			close(r.done)
		}
		return
	}
	buf := l.buf[:0]
	ranges := map[uint64]rng{}
	l.mu.RLock()
	for _, r := range batch {
		if _, ok := ranges[r.shard]; !ok {
			if s := l.shards[r.shard]; s != nil {
				ranges[r.shard] = rng{s.first, s.last}
			} else {
				ranges[r.shard] = rng{}
			}
		}
	}
	l.mu.RUnlock()
	for _, r := range batch {
		start := len(buf)
		cur := ranges[r.shard]
		var err error
		buf, cur, err = plan(buf, r, cur)
		if err != nil {
			buf = buf[:start]
			r.err = err
			r.effects = nil
			continue
		}
		ranges[r.shard] = cur
	}
	l.keep(buf)
	if len(buf) == 0 {
		for _, r := range batch {
			close(r.done)
		}
		return
	}
	err := l.write(buf)
	if err != nil {
		l.fail(err)
		for _, r := range batch {
			if r.err == nil {
				r.err = err
			}
			close(r.done)
		}
		return
	}
	base := l.active.size - int64(len(buf))
	l.mu.Lock()
	for _, r := range batch {
		if r.err == nil {
			l.apply(r.shard, r.effects, l.active.seq, base)
			if r.op == opAppend {
				l.entries.Add(uint64(len(r.logs)))
			}
		}
	}
	l.mu.Unlock()
	for _, r := range batch {
		close(r.done)
	}
}

// keep retains the batch buffer for the next batch unless it grew large.
func (l *Log) keep(buf []byte) {
	if cap(buf) > 4<<20 {
		buf = nil
	}
	l.buf = buf[:0]
}

func (l *Log) fail(err error) {
	l.brokenMu.Lock()
	if l.broken == nil {
		l.broken = fmt.Errorf("nodelog: refusing writes after a failed write: %w", err)
	}
	l.brokenMu.Unlock()
	l.logger.Error("raft log write failed; the node must restart", "error", err)
}

// write appends buf to the active segment (opening a new one first when it
// is full) and syncs it.
func (l *Log) write(buf []byte) error {
	if l.active.size > l.active.start && l.active.size+int64(len(buf)) > l.segSize {
		if err := l.rotate(); err != nil {
			return err
		}
	}
	a := l.active
	if _, err := a.f.WriteAt(buf, a.size); err != nil {
		return err
	}
	if err := fdatasync(a.f); err != nil {
		return err
	}
	l.syncs.Add(1)
	l.written.Add(uint64(len(buf)))
	l.mu.Lock()
	a.size += int64(len(buf))
	l.mu.Unlock()
	return nil
}

func fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}

// plan encodes r's records after buf against the shard's range cur and
// returns the range they leave. Nothing is applied.
func plan(buf []byte, r *request, cur rng) ([]byte, rng, error) {
	r.effects = r.effects[:0]
	switch r.op {
	case opAppend:
		if len(r.logs) == 0 {
			return buf, cur, nil
		}
		for i := 1; i < len(r.logs); i++ {
			if r.logs[i].Index != r.logs[i-1].Index+1 {
				return buf, cur, fmt.Errorf("nodelog: shard %d: entries %d and %d are not consecutive", r.shard, r.logs[i-1].Index, r.logs[i].Index)
			}
		}
		first := r.logs[0].Index
		if first == 0 {
			return buf, cur, fmt.Errorf("nodelog: shard %d: entry index 0", r.shard)
		}
		switch {
		case cur.last == 0:
		case first == cur.last+1:
		case first > cur.last+1 || first <= cur.first:
			// Past the end (after a snapshot install) or replacing the
			// whole log: start over.
			buf, r.effects = addCut(buf, r, recTruncate, cur.first)
			cur = rng{}
		default:
			buf, r.effects = addCut(buf, r, recTruncate, first)
			cur.last = first - 1
		}
		for _, e := range r.logs {
			off := int64(len(buf))
			buf = appendEntry(buf, recAppend, r.shard, e)
			r.effects = append(r.effects, effect{kind: recAppend, index: e.Index, off: off, n: uint32(int64(len(buf)) - off)})
			if cur.last == 0 {
				cur.first = e.Index
			}
			cur.last = e.Index
		}
		return buf, cur, nil
	case opDeleteRange:
		if r.min > r.max || cur.last == 0 || r.max < cur.first || r.min > cur.last {
			return buf, cur, nil // nothing held in the range
		}
		switch {
		case r.min <= cur.first && r.max >= cur.last:
			buf, r.effects = addCut(buf, r, recTruncate, cur.first)
			return buf, rng{}, nil
		case r.min <= cur.first:
			buf, r.effects = addCut(buf, r, recCompact, r.max)
			cur.first = r.max + 1
			return buf, cur, nil
		case r.max >= cur.last:
			buf, r.effects = addCut(buf, r, recTruncate, r.min)
			cur.last = r.min - 1
			return buf, cur, nil
		}
		return buf, cur, fmt.Errorf("nodelog: shard %d: cannot delete %d-%d from the middle of %d-%d", r.shard, r.min, r.max, cur.first, cur.last)
	case opStable:
		if len(r.key) > 0xffff {
			return buf, cur, fmt.Errorf("nodelog: stable key of %d bytes", len(r.key))
		}
		buf = appendStable(buf, r.shard, r.key, r.val)
		r.effects = append(r.effects, effect{kind: recStable, key: string(r.key), val: slices.Clone(r.val)})
		return buf, cur, nil
	case opDrop:
		buf = appendRecord(buf, recDrop, r.shard, nil)
		r.effects = append(r.effects, effect{kind: recDrop})
		return buf, rng{}, nil
	}
	return buf, cur, fmt.Errorf("nodelog: unknown request %d", r.op)
}

func addCut(buf []byte, r *request, kind byte, index uint64) ([]byte, []effect) {
	buf = appendRecord(buf, kind, r.shard, binary.BigEndian.AppendUint64(nil, index))
	return buf, append(r.effects, effect{kind: kind, index: index})
}

// ---- state changes (l.mu held for writing, or during recovery) ----

func (l *Log) state(id uint64) *shardState {
	s := l.shards[id]
	if s == nil {
		s = &shardState{stable: map[string][]byte{}}
		l.shards[id] = s
	}
	return s
}

// apply makes effects of one request on shard id visible; their records
// start at base in segment seq.
func (l *Log) apply(id uint64, effects []effect, seq uint64, base int64) {
	for _, e := range effects {
		switch e.kind {
		case recAppend, recMove:
			l.place(id, e.index, loc{seg: seq, off: base + e.off, n: e.n}, e.kind == recMove)
		case recTruncate:
			l.truncate(id, e.index)
		case recCompact:
			l.compact(id, e.index)
		case recStable:
			l.state(id).stable[e.key] = e.val
		case recDrop:
			l.drop(id)
		}
	}
}

// place records where entry index lives. An append replaces the entries
// from index on (or the whole log when index is past its end); a move only
// relocates an entry the shard still holds.
func (l *Log) place(id, index uint64, at loc, move bool) {
	s := l.state(id)
	if move {
		if s.empty() || index < s.first || index > s.last {
			return
		}
		l.release(s.locs[index-s.first])
		s.locs[index-s.first] = at
		l.hold(at)
		return
	}
	switch {
	case s.empty():
		s.first = index
	case index == s.last+1:
	case index > s.last+1 || index <= s.first:
		l.truncate(id, s.first)
		s.first = index
	default:
		l.truncate(id, index)
	}
	s.locs = append(s.locs, at)
	s.last = index
	l.hold(at)
}

func (l *Log) truncate(id, from uint64) {
	s := l.shards[id]
	if s == nil || s.empty() || from > s.last {
		return
	}
	if from <= s.first {
		for _, lc := range s.locs {
			l.release(lc)
		}
		s.first, s.last, s.locs = 0, 0, s.locs[:0]
		return
	}
	for _, lc := range s.locs[from-s.first:] {
		l.release(lc)
	}
	s.locs = s.locs[:from-s.first]
	s.last = from - 1
}

func (l *Log) compact(id, to uint64) {
	s := l.shards[id]
	if s == nil || s.empty() || to < s.first {
		return
	}
	if to >= s.last {
		l.truncate(id, s.first)
		return
	}
	n := to - s.first + 1
	for _, lc := range s.locs[:n] {
		l.release(lc)
	}
	rest := s.locs[n:]
	if cap(rest) < len(rest)*2 {
		s.locs = rest
	} else {
		s.locs = append(make([]loc, 0, len(rest)+len(rest)/2), rest...)
	}
	s.first = to + 1
}

func (l *Log) drop(id uint64) {
	l.truncate(id, 0)
	delete(l.shards, id)
}

func (l *Log) hold(lc loc) {
	if s := l.segs[lc.seg]; s != nil {
		s.live++
		s.liveBytes += int64(lc.n)
	}
}

func (l *Log) release(lc loc) {
	if s := l.segs[lc.seg]; s != nil {
		s.live--
		s.liveBytes -= int64(lc.n)
		l.tidyDue = true
	}
}
