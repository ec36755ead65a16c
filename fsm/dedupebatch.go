package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// Dedupe records are written in batches: the records of one apply
// transaction go into as few Badger entries as fit below the value
// threshold (so that they stay in the LSM tree), each keyed by the command
// number of its last record, and pruning deletes a batch once its last
// record has expired. One record per write used to cost two Badger entries
// and two deletion markers (the record and an index entry to prune it by):
// with puts of 256 bytes that was a fifth of a node's CPU.
//
// A batch is [index of its last record, 8 bytes] followed by records of
// [uvarint len][request ID][index, 8][command number, 8][uvarint
// len][result]. Which records share a batch depends on how apply was
// batched, which differs between replicas; every answer depends only on the
// records themselves and on their own expiry, never on the batch holding
// them (StateHash hashes records, not batches).

// dedupeRecord is one remembered outcome.
type dedupeRecord struct {
	id     string
	index  uint64 // entry that applied it
	seq    uint64 // its command number
	result []byte // Result.encode
}

func (r dedupeRecord) expired(entry, cmd uint64) bool {
	return dedupeExpired(r.index, entry) || dedupeCommandsExpired(r.seq, cmd)
}

func (r dedupeRecord) size() int { return 2*binary.MaxVarintLen16 + len(r.id) + 16 + len(r.result) }

func (r dedupeRecord) append(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(r.id)))
	b = append(b, r.id...)
	b = binary.BigEndian.AppendUint64(b, r.index)
	b = binary.BigEndian.AppendUint64(b, r.seq)
	b = binary.AppendUvarint(b, uint64(len(r.result)))
	return append(b, r.result...)
}

// encodeDedupeBatch encodes recs, which must not be empty.
func encodeDedupeBatch(recs []dedupeRecord) []byte {
	n := 8
	for _, r := range recs {
		n += r.size()
	}
	b := binary.BigEndian.AppendUint64(make([]byte, 0, n), recs[len(recs)-1].index)
	for _, r := range recs {
		b = r.append(b)
	}
	return b
}

var errDedupeBatch = errors.New("malformed dedupe batch")

// decodeDedupeBatch calls fn for each record of batch v in order; the
// records alias v. It stops early when fn returns false.
func decodeDedupeBatch(v []byte, fn func(dedupeRecord) bool) error {
	if len(v) < 8 {
		return errDedupeBatch
	}
	b := v[8:]
	for len(b) > 0 {
		var r dedupeRecord
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) || uint64(len(b)-k)-n < 16 {
			return errDedupeBatch
		}
		b = b[k:]
		r.id = string(b[:n])
		r.index = binary.BigEndian.Uint64(b[n:])
		r.seq = binary.BigEndian.Uint64(b[n+8:])
		b = b[n+16:]
		n, k = binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return errDedupeBatch
		}
		r.result = b[k : k+int(n)]
		b = b[k+int(n):]
		if !fn(r) {
			return nil
		}
	}
	return nil
}

// dedupeBatchLast reads a batch's last record's index (its value) and
// command number (its key).
func dedupeBatchLast(key, v []byte) (index, seq uint64, err error) {
	if len(key) < 8 || len(v) < 8 {
		return 0, 0, errDedupeBatch
	}
	return binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(key[len(key)-8:]), nil
}

// dedupeIndex maps the hash of each request ID with a live record to the
// command number of its newest record, so that apply reads Badger only for
// an ID that has one (or shares a 64-bit hash with one). It keeps three
// generations of DedupeCommands/2 command numbers: a record live at
// command c was recorded at c−DedupeCommands or later, so in c's
// generation or one of the two before it; a slot is reused, three
// generations on, only once all its records have expired. It holds at most
// DedupeCommands*3/2 hashes. A replica rebuilds it from its batches when it
// opens or restores a snapshot.
type dedupeIndex struct {
	mu    sync.Mutex
	slots [3]map[uint64]uint64
	generations
}

const dedupeIndexGen = DedupeCommands / 2

func newDedupeIndex(cmd uint64) *dedupeIndex {
	return &dedupeIndex{generations: generations{newest: cmd / dedupeIndexGen}}
}

// add records that id's newest record is command seq.
func (d *dedupeIndex) add(seq uint64, id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	i, reset, ok := d.slot(seq / dedupeIndexGen)
	switch {
	case !ok:
		return
	case d.slots[i] == nil:
		d.slots[i] = make(map[uint64]uint64)
	case reset:
		clear(d.slots[i])
	}
	d.slots[i][indexHash(id)] = seq
}

// indexHash is dedupeHash; tests replace it to make request IDs collide.
var indexHash = dedupeHash

// find returns the command number of the newest record whose ID hashes as
// id's and that may be live at command cmd.
func (d *dedupeIndex) find(cmd uint64, id string) (uint64, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h, cur := indexHash(id), cmd/dedupeIndexGen
	var seq uint64
	var ok bool
	for i := range d.slots {
		if d.live(i, cur) {
			if s, found := d.slots[i][h]; found && s > seq {
				seq, ok = s, true
			}
		}
	}
	return seq, ok
}

// loadDedupes builds what apply knows of generation gen's dedupe records
// after meta: the filter of older builds' records and the index of batched
// ones.
func (f *FSM) loadDedupes(gen uint32, meta appliedMeta) (*dedupeFilter, *dedupeIndex, error) {
	filter, err := f.loadDedupeFilter(gen, meta.Index)
	if err != nil {
		return nil, nil, err
	}
	index, err := f.loadDedupeIndex(gen, meta)
	return filter, index, err
}

// loadDedupeIndex builds the index of generation gen's batched records
// that are live after meta.
func (f *FSM) loadDedupeIndex(gen uint32, meta appliedMeta) (*dedupeIndex, error) {
	d := newDedupeIndex(meta.Commands + 1)
	prefix := newKeyspace(f.id, gen).dedupeBatchPrefix()
	err := f.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			err := it.Item().Value(func(v []byte) error {
				return decodeDedupeBatch(v, func(r dedupeRecord) bool {
					if !r.expired(meta.Index+1, meta.Commands+1) {
						d.add(r.seq, r.id)
					}
					return true
				})
			})
			if err != nil {
				return fmt.Errorf("dedupe batch %x: %w", it.Item().Key(), err)
			}
		}
		return nil
	})
	return d, err
}

// remember records cmd's outcome, applied at index as the current command.
func (a *applier) remember(index uint64, id string, result []byte) {
	a.pending = append(a.pending, dedupeRecord{id: id, index: index, seq: a.meta.Commands, result: result})
	a.f.recent.Load().add(a.meta.Commands, id)
}

// writeRecords writes the pending records in batches below the value
// threshold (a record larger than that gets a batch of its own).
func (a *applier) writeRecords() {
	limit := int(a.f.store.opts.ValueThreshold) - 1
	for start := 0; start < len(a.pending); {
		end, n := start+1, 8+a.pending[start].size()
		for end < len(a.pending) && n+a.pending[end].size() <= limit {
			n += a.pending[end].size()
			end++
		}
		recs := a.pending[start:end]
		a.must(a.txn.Set(a.ks.dedupeBatch(recs[len(recs)-1].seq), encodeDedupeBatch(recs)))
		start = end
	}
	a.pending = a.pending[:0]
}

// lookupRecord finds id's newest batched record, if the index points at
// one: in the records this transaction has not written yet, else in the
// batch holding command number seq. A pruned record (the batch is gone)
// had expired, and so had any older one of id's.
func (a *applier) lookupRecord(seq uint64, id string) (dedupeRecord, bool) {
	if len(a.pending) > 0 && seq >= a.pending[0].seq {
		for _, r := range a.pending {
			if r.seq == seq {
				if r.id == id {
					return r, true
				}
				break
			}
		}
		return a.scanRecords(id)
	}
	it := a.txn.NewIterator(badger.IteratorOptions{Prefix: a.ks.dedupeBatchPrefix()})
	defer it.Close()
	it.Seek(a.ks.dedupeBatch(seq))
	if !it.Valid() {
		return dedupeRecord{}, false
	}
	var found dedupeRecord
	var hit, other bool
	a.must(it.Item().Value(func(v []byte) error {
		return decodeDedupeBatch(v, func(r dedupeRecord) bool {
			if r.seq == seq {
				hit, other = r.id == id, r.id != id
				found = r
				found.result = bytes.Clone(r.result)
				return false
			}
			return r.seq < seq
		})
	}))
	switch {
	case hit:
		return found, true
	case other:
		// Another ID with the same hash recorded later: look for id's
		// own among all records.
		return a.scanRecords(id)
	}
	return dedupeRecord{}, false
}

// scanRecords finds id's newest batched record by reading them all; apply
// comes here only when two request IDs share a 64-bit hash.
func (a *applier) scanRecords(id string) (dedupeRecord, bool) {
	var found dedupeRecord
	var ok bool
	it := a.txn.NewIterator(badger.IteratorOptions{Prefix: a.ks.dedupeBatchPrefix()})
	for it.Rewind(); it.Valid(); it.Next() {
		a.must(it.Item().Value(func(v []byte) error {
			return decodeDedupeBatch(v, func(r dedupeRecord) bool {
				if r.id == id {
					found, ok = r, true
					found.result = bytes.Clone(r.result)
				}
				return true
			})
		}))
	}
	it.Close()
	for _, r := range a.pending {
		if r.id == id {
			found, ok = r, true
		}
	}
	return found, ok
}

// pruneBatches deletes the batches whose last record has expired for every
// command after this transaction, oldest first, at most
// dedupePrunePerBatch of them. It returns when the oldest batch left
// expires (the entry and command after which it has: it expires at
// whichever comes first), or more if it stopped at the bound.
func (a *applier) pruneBatches(cutoff uint64) (index, commands uint64, more bool) {
	prefix := a.ks.dedupeBatchPrefix()
	from := prefix
	if p := a.f.pruneBatchFrom; p.gen == a.f.gen && p.key != nil {
		from = p.key // deleted: everything before it is too
	}
	it := a.txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	var doomed [][]byte
	// Nothing left: any batch to come is recorded after this one.
	index, commands = a.meta.Index+1, a.meta.Commands+1
	for it.Seek(from); it.Valid(); it.Next() {
		if len(doomed) == dedupePrunePerBatch {
			more = true
			break
		}
		k := it.Item().KeyCopy(nil)
		var lastIndex, lastSeq uint64
		a.must(it.Item().Value(func(v []byte) error {
			var err error
			lastIndex, lastSeq, err = dedupeBatchLast(k, v)
			return err
		}))
		if lastIndex >= cutoff && !dedupeCommandsExpired(lastSeq, a.meta.Commands+1) {
			index, commands = lastIndex, lastSeq
			break
		}
		doomed = append(doomed, k)
	}
	it.Close()
	for _, k := range doomed {
		a.must(a.txn.Delete(k))
	}
	if len(doomed) > 0 {
		a.f.pruneBatchFrom.gen, a.f.pruneBatchFrom.key = a.f.gen, doomed[len(doomed)-1]
	}
	return index, commands, more
}
