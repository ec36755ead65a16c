package fsm

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
)

// Snapshot stream format:
//
//	header: "CAIRNSN1" shard(u64) applied(u64) term(u64) commands(u64)
//	records: 0x01 uvarint(len k) k uvarint(len v) v   (k relative to the generation)
//	trailer: 0x00 sha256(header and records)
//
// Restore verifies the trailer before the new state becomes visible.
const snapshotMagic = "CAIRNSN1"

// Snapshot implements raft.FSM. It pins a Badger read timestamp; Persist
// streams from it while applies go on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	gen := f.gen
	f.mu.RUnlock()
	return &fsmSnapshot{f: f, txn: f.db.NewTransaction(false), gen: gen, meta: f.meta}, nil
}

type fsmSnapshot struct {
	f    *FSM
	txn  *badger.Txn
	gen  uint32
	meta appliedMeta
}

// Persist writes the snapshot. It first syncs Badger: once the sink is closed
// raft may drop log entries up to the snapshot index, and the durable state
// must already cover them, since a restart does not restore the snapshot.
// Reading the whole shard brings every table page of it into memory; what
// was not resident before is handed back afterwards (Options.TableRelease).
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	s.f.persisting.RLock()
	defer s.f.persisting.RUnlock()
	defer s.f.store.handBackPagesAfter()()
	if err := s.f.db.Sync(); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("fsm: sync before snapshot: %w", err)
	}
	if err := s.write(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("fsm: persist snapshot of %v: %w", s.f.id, err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) write(dst io.Writer) error {
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(dst, h), 256<<10)
	hdr := append([]byte(snapshotMagic), binary.BigEndian.AppendUint64(nil, uint64(s.f.id))...)
	hdr = append(hdr, s.meta.encode()...)
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	ks := newKeyspace(s.f.id, s.gen)
	opts := badger.DefaultIteratorOptions
	opts.Prefix = ks.prefix
	it := s.txn.NewIterator(opts)
	defer it.Close()
	var buf []byte
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().Key()[len(ks.prefix):]
		if k[0] == spaceApplied {
			continue // carried by the header
		}
		buf = append(buf[:0], 1)
		buf = appendBytes(buf, k)
		if err := it.Item().Value(func(v []byte) error {
			buf = binary.AppendUvarint(buf, uint64(len(v)))
			if _, err := w.Write(buf); err != nil {
				return err
			}
			_, err := w.Write(v)
			return err
		}); err != nil {
			return err
		}
	}
	if err := w.WriteByte(0); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	_, err := dst.Write(h.Sum(nil))
	return err
}

// Release implements raft.FSMSnapshot.
func (s *fsmSnapshot) Release() { s.txn.Discard() }

// errCrashed is what Restore returns when a test failpoint stopped it.
var errCrashed = errors.New("fsm: restore stopped by failpoint")

// Restore implements raft.FSM. It streams the snapshot into a fresh generation
// marked as restoring, verifies the checksum, syncs, and then swaps the
// generation pointer in one transaction. Readers see the old state until the
// swap and the new one after it; a crash before the swap leaves the old state.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	stage := f.gen + 1
	marker := pointerKey(f.id, spaceRestoring)
	if err := f.store.deletePrefix(genPrefix(f.id, stage), nil); err != nil {
		return fmt.Errorf("fsm: restore %v: %w", f.id, err)
	}
	if err := f.db.Update(func(txn *badger.Txn) error {
		return txn.Set(marker, binary.BigEndian.AppendUint32(nil, stage))
	}); err != nil {
		return fmt.Errorf("fsm: restore %v: %w", f.id, err)
	}
	meta, err := f.stage(rc, stage)
	if errors.Is(err, errCrashed) {
		return err // leave everything as a crash would
	}
	if err == nil {
		err = f.db.Sync()
	}
	if err != nil {
		// Undo now; Store.Shard would do the same after a crash.
		_ = f.store.deletePrefix(genPrefix(f.id, stage), nil)
		_ = f.db.Update(func(txn *badger.Txn) error { return txn.Delete(marker) })
		return fmt.Errorf("fsm: restore %v: %w", f.id, err)
	}
	old := f.gen
	staged, stagedLocks, stagedKeys, err := f.countIntents(stage)
	var dedupes *dedupeFilter
	var recent *dedupeIndex
	if err == nil {
		dedupes, recent, err = f.loadDedupes(stage, meta)
	}
	if err != nil {
		_ = f.db.Update(func(txn *badger.Txn) error { return txn.Delete(marker) })
		return fmt.Errorf("fsm: restore %v: %w", f.id, err)
	}
	f.mu.Lock()
	// Readers of the new generation must see a count that covers its
	// intents; the old generation's readers are gone once mu is held.
	f.intents.Store(max(f.intents.Load(), staged))
	f.rangeLocks.Store(max(f.rangeLocks.Load(), stagedLocks))
	err = f.db.Update(func(txn *badger.Txn) error {
		if err := txn.Set(pointerKey(f.id, spaceCurrentGen), binary.BigEndian.AppendUint32(nil, stage)); err != nil {
			return err
		}
		return txn.Delete(marker)
	})
	if err == nil {
		f.gen = stage
		f.intents.Store(staged)
		f.rangeLocks.Store(stagedLocks)
		f.locked = stagedKeys
		f.dedupes.Store(dedupes)
		f.recent.Store(recent)
	}
	f.mu.Unlock()
	if err == nil {
		err = f.db.Sync()
	}
	if err != nil {
		return fmt.Errorf("fsm: restore %v: swap: %w", f.id, err)
	}
	f.setApplied(meta)
	f.persisting.Lock() // wait for snapshots still streaming the old state
	err = f.store.deletePrefix(genPrefix(f.id, old), nil)
	f.persisting.Unlock()
	if err != nil {
		f.logger.Warn("dropping replaced generation", "generation", old, "error", err)
	}
	f.logger.Info("restored snapshot", "applied_index", meta.Index)
	return nil
}

// stage reads a snapshot stream into generation gen.
func (f *FSM) stage(r io.Reader, gen uint32) (appliedMeta, error) {
	br := &hashingReader{r: bufio.NewReaderSize(r, 256<<10), h: sha256.New()}
	hdr := make([]byte, len(snapshotMagic)+8+24)
	if _, err := io.ReadFull(br, hdr); err != nil {
		return appliedMeta{}, fmt.Errorf("read header: %w", err)
	}
	if string(hdr[:len(snapshotMagic)]) != snapshotMagic {
		return appliedMeta{}, errors.New("not a cairn snapshot")
	}
	if id := ShardID(binary.BigEndian.Uint64(hdr[len(snapshotMagic):])); id != f.id {
		return appliedMeta{}, fmt.Errorf("snapshot of %v offered to %v", id, f.id)
	}
	meta, err := decodeAppliedMeta(hdr[len(snapshotMagic)+8:])
	if err != nil {
		return appliedMeta{}, err
	}
	ks := newKeyspace(f.id, gen)
	wb := f.db.NewWriteBatch()
	defer wb.Cancel()
	for n := 0; ; n++ {
		if f.failRestore > 0 && n == f.failRestore {
			if err := wb.Flush(); err != nil {
				return appliedMeta{}, err
			}
			return appliedMeta{}, errCrashed
		}
		kind, err := br.ReadByte()
		if err != nil {
			return appliedMeta{}, fmt.Errorf("read record: %w", err)
		}
		if kind == 0 {
			break
		}
		if kind != 1 {
			return appliedMeta{}, fmt.Errorf("bad record kind %d", kind)
		}
		k, err := readChunk(br)
		if err != nil {
			return appliedMeta{}, err
		}
		if len(k) == 0 || k[0] == spaceApplied {
			return appliedMeta{}, errors.New("bad record key")
		}
		v, err := readChunk(br)
		if err != nil {
			return appliedMeta{}, err
		}
		if err := wb.Set(append(append(make([]byte, 0, len(ks.prefix)+len(k)), ks.prefix...), k...), v); err != nil {
			return appliedMeta{}, err
		}
	}
	want := br.h.Sum(nil)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(br.r, got); err != nil {
		return appliedMeta{}, fmt.Errorf("read checksum: %w", err)
	}
	if string(got) != string(want) {
		return appliedMeta{}, errors.New("snapshot checksum mismatch")
	}
	if err := wb.Set(ks.applied(), meta.encode()); err != nil {
		return appliedMeta{}, err
	}
	return meta, wb.Flush()
}

// hashingReader hashes exactly the bytes its caller consumed.
type hashingReader struct {
	r *bufio.Reader
	h hash.Hash
}

func (hr *hashingReader) Read(p []byte) (int, error) {
	n, err := hr.r.Read(p)
	hr.h.Write(p[:n])
	return n, err
}

func (hr *hashingReader) ReadByte() (byte, error) {
	c, err := hr.r.ReadByte()
	if err == nil {
		hr.h.Write([]byte{c})
	}
	return c, err
}

const maxChunk = 64 << 20

func readChunk(br *hashingReader) ([]byte, error) {
	n, err := binary.ReadUvarint(br)
	if err != nil {
		return nil, fmt.Errorf("read length: %w", err)
	}
	if n > maxChunk {
		return nil, fmt.Errorf("record of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		return nil, fmt.Errorf("read record: %w", err)
	}
	return b, nil
}

// SnapshotApplied reads the header of a snapshot stream and returns the
// applied index of the state it holds. That can be below raft's index for
// the snapshot, which also counts entries the FSM never sees (no-ops,
// barriers).
func SnapshotApplied(r io.Reader) (uint64, error) {
	hdr := make([]byte, len(snapshotMagic)+8+24)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return 0, fmt.Errorf("fsm: read snapshot header: %w", err)
	}
	if string(hdr[:len(snapshotMagic)]) != snapshotMagic {
		return 0, errors.New("fsm: not a cairn snapshot")
	}
	m, err := decodeAppliedMeta(hdr[len(snapshotMagic)+8:])
	return m.Index, err
}
