package nodelog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"golang.org/x/sys/unix"
)

// ---- records ----

// appendRecord appends [crc32c][length][kind][shard][payload].
func appendRecord(buf []byte, kind byte, shard uint64, payload []byte) []byte {
	start := len(buf)
	buf = append(buf, 0, 0, 0, 0, 0, 0, 0, 0, kind)
	buf = binary.BigEndian.AppendUint64(buf, shard)
	buf = append(buf, payload...)
	return seal(buf, start)
}

// seal fills in the header of the record that starts at start and runs to
// the end of buf.
func seal(buf []byte, start int) []byte {
	body := buf[start+recHeader:]
	binary.BigEndian.PutUint32(buf[start+4:], uint32(len(body)))
	binary.BigEndian.PutUint32(buf[start:], crc32.Checksum(body, castagnoli))
	return buf
}

func appendEntry(buf []byte, kind byte, shard uint64, e *raft.Log) []byte {
	start := len(buf)
	buf = append(buf, 0, 0, 0, 0, 0, 0, 0, 0, kind)
	buf = binary.BigEndian.AppendUint64(buf, shard)
	buf = binary.BigEndian.AppendUint64(buf, e.Index)
	buf = binary.BigEndian.AppendUint64(buf, e.Term)
	buf = append(buf, byte(e.Type))
	var at int64
	if !e.AppendedAt.IsZero() {
		at = e.AppendedAt.UnixNano()
	}
	buf = binary.BigEndian.AppendUint64(buf, uint64(at))
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(e.Data)))
	buf = append(buf, e.Data...)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(e.Extensions)))
	buf = append(buf, e.Extensions...)
	return seal(buf, start)
}

func appendStable(buf []byte, shard uint64, key, val []byte) []byte {
	p := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(key)+len(val)), uint16(len(key)))
	p = append(append(p, key...), val...)
	return appendRecord(buf, recStable, shard, p)
}

var errCorrupt = errors.New("corrupt record")

// record is a decoded record body.
type record struct {
	kind    byte
	shard   uint64
	payload []byte
}

// parseBody checks a record's header against its body and splits the body.
func parseBody(header, body []byte) (record, error) {
	if len(header) != recHeader || int(binary.BigEndian.Uint32(header[4:])) != len(body) || len(body) < 9 {
		return record{}, errCorrupt
	}
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(header) {
		return record{}, errCorrupt
	}
	return record{kind: body[0], shard: binary.BigEndian.Uint64(body[1:9]), payload: body[9:]}, nil
}

// decodeEntry decodes an append or move payload. With into nil it only
// returns the index.
func decodeEntry(p []byte, into *raft.Log) (uint64, error) {
	if len(p) < 8+8+1+8+4 {
		return 0, errCorrupt
	}
	index := binary.BigEndian.Uint64(p)
	if into == nil {
		return index, nil
	}
	term := binary.BigEndian.Uint64(p[8:])
	typ := raft.LogType(p[16])
	at := int64(binary.BigEndian.Uint64(p[17:]))
	p = p[25:]
	dl := binary.BigEndian.Uint32(p)
	p = p[4:]
	if uint64(len(p)) < uint64(dl)+4 {
		return 0, errCorrupt
	}
	data := p[:dl]
	p = p[dl:]
	el := binary.BigEndian.Uint32(p)
	p = p[4:]
	if uint64(len(p)) != uint64(el) {
		return 0, errCorrupt
	}
	*into = raft.Log{Index: index, Term: term, Type: typ}
	if len(data) > 0 {
		into.Data = data
	}
	if el > 0 {
		into.Extensions = p
	}
	if at != 0 {
		into.AppendedAt = time.Unix(0, at)
	}
	return index, nil
}

func decodeU64(p []byte) (uint64, error) {
	if len(p) != 8 {
		return 0, errCorrupt
	}
	return binary.BigEndian.Uint64(p), nil
}

func decodeStable(p []byte) (string, []byte, error) {
	if len(p) < 2 {
		return "", nil, errCorrupt
	}
	kl := int(binary.BigEndian.Uint16(p))
	if len(p) < 2+kl {
		return "", nil, errCorrupt
	}
	return string(p[2 : 2+kl]), slices.Clone(p[2+kl:]), nil
}

// ---- segments ----

func segName(seq uint64) string { return fmt.Sprintf("%016x%s", seq, segExt) }

func (l *Log) segPath(seq uint64) string { return filepath.Join(l.dir, segName(seq)) }

// rotate opens the next segment and writes its checkpoint: every shard's
// range and stable values as the state holds them now. Called from Open and
// from the writer, which is the only goroutine changing the state.
func (l *Log) rotate() error {
	var seq uint64 = 1
	for s := range l.segs {
		seq = max(seq, s+1)
	}
	path := l.segPath(seq)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o640)
	if err != nil {
		return err
	}
	// A segment that could not be set up goes again, so the next attempt
	// can create it (it holds nothing yet).
	abandon := func(err error) error {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, l.segSize); err != nil && !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
		return abandon(fmt.Errorf("reserve %s: %w", segName(seq), err))
	}
	buf := []byte(magic)
	ids := make([]uint64, 0, len(l.shards))
	for id := range l.shards {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		s := l.shards[id]
		p := binary.BigEndian.AppendUint64(nil, s.first)
		p = binary.BigEndian.AppendUint64(p, s.last)
		buf = appendRecord(buf, recCheckpoint, id, p)
		keys := make([]string, 0, len(s.stable))
		for k := range s.stable {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			buf = appendStable(buf, id, []byte(k), s.stable[k])
		}
	}
	buf = appendRecord(buf, recCheckEnd, 0, nil)
	if _, err := f.WriteAt(buf, 0); err != nil {
		return abandon(err)
	}
	if err := fdatasync(f); err != nil {
		return abandon(err)
	}
	if err := syncDir(l.dir); err != nil {
		return abandon(err)
	}
	l.written.Add(uint64(len(buf)))
	seg := &segment{seq: seq, f: f, size: int64(len(buf)), start: int64(len(buf))}
	l.mu.Lock()
	l.segs[seq] = seg
	l.active = seg
	l.mu.Unlock()
	l.tidyDue = true // the segment before may be sparse already
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}

// recover replays every segment in order.
func (l *Log) recover() error {
	des, err := os.ReadDir(l.dir)
	if err != nil {
		return err
	}
	var seqs []uint64
	for _, de := range des {
		name := de.Name()
		if !strings.HasSuffix(name, segExt) {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(name, segExt), 16, 64)
		if err != nil || seq == 0 {
			return fmt.Errorf("unexpected file %s", name)
		}
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	for i, seq := range seqs {
		if err := l.replay(seq, i == len(seqs)-1); err != nil {
			return fmt.Errorf("segment %s: %w", segName(seq), err)
		}
	}
	for id, s := range l.shards {
		for i, lc := range s.locs {
			if lc.seg == 0 {
				return fmt.Errorf("shard %d: entry %d is in no segment (range %d-%d)", id, s.first+uint64(i), s.first, s.last)
			}
		}
	}
	return nil
}

// replay applies one segment's records. Only the last segment may end in
// an incomplete checkpoint (a crash while it was being opened).
func (l *Log) replay(seq uint64, last bool) error {
	f, err := os.OpenFile(l.segPath(seq), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	seg := &segment{seq: seq, f: f}
	l.segs[seq] = seg
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, 1<<62), 1<<20)
	head := make([]byte, headerSize)
	if _, err := io.ReadFull(r, head); err != nil || string(head) != magic {
		if last {
			return nil // created, not yet written: holds nothing
		}
		return errors.New("bad header")
	}
	off := headerSize
	type span struct{ first, last uint64 }
	members := map[uint64]span{}
	stables := map[uint64]map[string][]byte{}
	inCheckpoint := true
	var hdr [recHeader]byte
	var body []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			break
		}
		n := binary.BigEndian.Uint32(hdr[4:])
		if n == 0 || n > maxBody {
			break
		}
		if cap(body) < int(n) {
			body = make([]byte, n)
		}
		body = body[:n]
		if _, err := io.ReadFull(r, body); err != nil {
			break
		}
		rec, err := parseBody(hdr[:], body)
		if err != nil {
			break
		}
		size := int64(recHeader) + int64(n)
		at := loc{seg: seq, off: off, n: uint32(size)}
		off += size
		if inCheckpoint {
			switch rec.kind {
			case recCheckpoint:
				first, err1 := decodeU64(rec.payload[:min(8, len(rec.payload))])
				lastIdx, err2 := decodeU64(rec.payload[min(8, len(rec.payload)):])
				if err1 != nil || err2 != nil || (lastIdx != 0 && (first == 0 || first > lastIdx || lastIdx-first > maxEntries)) {
					return fmt.Errorf("bad checkpoint at %d", at.off)
				}
				members[rec.shard] = span{first, lastIdx}
			case recStable:
				k, v, err := decodeStable(rec.payload)
				if err != nil {
					return fmt.Errorf("bad stable value at %d", at.off)
				}
				if stables[rec.shard] == nil {
					stables[rec.shard] = map[string][]byte{}
				}
				stables[rec.shard][k] = v
			case recCheckEnd:
				for id := range l.shards {
					if _, ok := members[id]; !ok {
						l.drop(id)
					}
				}
				for id, sp := range members {
					l.restrict(id, sp.first, sp.last)
					l.state(id).stable = stables[id]
					if l.shards[id].stable == nil {
						l.shards[id].stable = map[string][]byte{}
					}
				}
				inCheckpoint = false
				seg.start = off
			default:
				return fmt.Errorf("record kind %d inside the checkpoint at %d", rec.kind, at.off)
			}
			continue
		}
		if err := l.replayRecord(rec, at); err != nil {
			return fmt.Errorf("record at %d: %w", at.off, err)
		}
	}
	if inCheckpoint {
		if !last {
			return errors.New("incomplete checkpoint")
		}
		seg.start, seg.size = off, off
		return nil // opened but never used: holds nothing
	}
	seg.size = off
	return nil
}

func (l *Log) replayRecord(rec record, at loc) error {
	switch rec.kind {
	case recAppend, recMove:
		index, err := decodeEntry(rec.payload, nil)
		if err != nil || index == 0 {
			return errCorrupt
		}
		l.place(rec.shard, index, at, rec.kind == recMove)
	case recTruncate:
		from, err := decodeU64(rec.payload)
		if err != nil {
			return err
		}
		l.truncate(rec.shard, from)
	case recCompact:
		to, err := decodeU64(rec.payload)
		if err != nil {
			return err
		}
		l.compact(rec.shard, to)
	case recDrop:
		l.drop(rec.shard)
	case recStable:
		k, v, err := decodeStable(rec.payload)
		if err != nil {
			return err
		}
		l.state(rec.shard).stable[k] = v
	default:
		return fmt.Errorf("record kind %d", rec.kind)
	}
	return nil
}

// restrict makes shard id hold exactly the range first-last (empty when
// last is 0), as a checkpoint says it did. Entries recovered so far outside
// the range were removed before the checkpoint; entries inside it that are
// missing must be compacted away by later records, or recovery fails.
func (l *Log) restrict(id, first, last uint64) {
	s := l.state(id)
	if last == 0 {
		l.truncate(id, 0)
		return
	}
	locs := make([]loc, last-first+1)
	for i, lc := range s.locs {
		index := s.first + uint64(i)
		if index >= first && index <= last {
			locs[index-first] = lc
		} else {
			l.release(lc)
		}
	}
	s.first, s.last, s.locs = first, last, locs
}

// ---- reading ----

// read returns the record of shard id's entry index, or ErrLogNotFound.
func (l *Log) read(id, index uint64, into *raft.Log) error {
	l.mu.RLock()
	s := l.shards[id]
	if s == nil || s.empty() || index < s.first || index > s.last {
		l.mu.RUnlock()
		return raft.ErrLogNotFound
	}
	lc := s.locs[index-s.first]
	seg := l.segs[lc.seg]
	buf := make([]byte, lc.n)
	_, err := seg.f.ReadAt(buf, lc.off)
	l.mu.RUnlock()
	if err != nil {
		return fmt.Errorf("nodelog: read shard %d entry %d: %w", id, index, err)
	}
	rec, err := parseBody(buf[:recHeader], buf[recHeader:])
	if err != nil || (rec.kind != recAppend && rec.kind != recMove) || rec.shard != id {
		return fmt.Errorf("nodelog: shard %d entry %d: %w", id, index, errCorrupt)
	}
	got, err := decodeEntry(rec.payload, into)
	if err != nil || got != index {
		return fmt.Errorf("nodelog: shard %d entry %d: %w", id, index, errCorrupt)
	}
	return nil
}

// ---- space ----

// collect deletes segments that hold no live entry, except the active one.
func (l *Log) collect() {
	l.mu.Lock()
	var dead []*segment
	for seq, s := range l.segs {
		if s != l.active && s.live == 0 {
			delete(l.segs, seq)
			dead = append(dead, s)
		}
	}
	l.mu.Unlock()
	if len(dead) == 0 {
		return
	}
	for _, s := range dead {
		s.f.Close()
		if err := os.Remove(l.segPath(s.seq)); err != nil {
			l.logger.Warn("remove raft log segment", "segment", segName(s.seq), "error", err)
		}
	}
	if err := syncDir(l.dir); err != nil {
		l.logger.Warn("sync raft log directory", "error", err)
	}
}

// tidy runs in the writer after each commit that released entries or
// opened a segment: it deletes dead segments and moves the live entries out
// of the emptiest older segment when they fill less than a quarter of the
// space it takes. That space is its reservation (a new segment reserves
// the segment size) unless it grew past it: a segment closed early by a
// restart takes a whole reservation on disk however little it holds.
func (l *Log) tidy() {
	if !l.tidyDue {
		return
	}
	l.tidyDue = false
	l.collect()
	var sparse *segment
	l.mu.RLock()
	for _, s := range l.segs {
		if s == l.active || s.liveBytes*4 >= l.space(s) {
			continue
		}
		if sparse == nil || s.liveBytes*l.space(sparse) < sparse.liveBytes*l.space(s) {
			sparse = s
		}
	}
	l.mu.RUnlock()
	if sparse == nil || l.brokenErr() != nil {
		return
	}
	if err := l.relocate(sparse); err != nil {
		l.fail(err)
		return
	}
	l.collect()
}

// space is the disk space seg takes: its reservation, or what it holds
// past it.
func (l *Log) space(seg *segment) int64 { return max(seg.size, l.segSize) }

// relocate copies every live entry of seg to the active segment as a move.
func (l *Log) relocate(seg *segment) error {
	type moved struct {
		shard uint64
		index uint64
		off   int64
		n     uint32
	}
	var moves []moved
	buf := l.buf[:0]
	for id, s := range l.shards { // only the writer changes the state
		for i, lc := range s.locs {
			if lc.seg != seg.seq {
				continue
			}
			start := len(buf)
			buf = slices.Grow(buf, int(lc.n))[:start+int(lc.n)]
			if _, err := seg.f.ReadAt(buf[start:], lc.off); err != nil {
				return fmt.Errorf("read entry to move: %w", err)
			}
			if _, err := parseBody(buf[start:start+recHeader], buf[start+recHeader:]); err != nil {
				return fmt.Errorf("entry to move, shard %d index %d: %w", id, s.first+uint64(i), err)
			}
			buf[start+recHeader] = recMove
			buf = seal(buf, start)
			moves = append(moves, moved{id, s.first + uint64(i), int64(start), lc.n})
		}
	}
	l.keep(buf)
	if len(moves) == 0 {
		return nil
	}
	if err := l.write(buf); err != nil {
		return err
	}
	base := l.active.size - int64(len(buf))
	l.mu.Lock()
	for _, m := range moves {
		l.place(m.shard, m.index, loc{seg: l.active.seq, off: base + m.off, n: m.n}, true)
	}
	l.mu.Unlock()
	l.logger.Debug("moved raft log entries out of an old segment", "segment", segName(seg.seq), "entries", len(moves))
	return nil
}
