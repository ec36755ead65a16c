package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"

	"github.com/dgraph-io/badger/v4"
)

// Test hooks into the replica's internals, for the black-box tests in fsm_test.

// BadgerOptions returns the options the store opened Badger with.
func (s *Store) BadgerOptions() badger.Options { return s.db.Opts() }

// ErrCrashed is what Restore returns when SetFailRestore stopped it.
var ErrCrashed = errCrashed

// Key spaces of one generation, and of the pointer generation 0.
const (
	SpaceCurrentGen = spaceCurrentGen
	SpaceRestoring  = spaceRestoring
	SpaceApplied    = spaceApplied
	SpaceData       = spaceData
	SpaceDedupe     = spaceDedupe
	SpaceDedupeOld  = spaceDedupeOld
	SpaceDedupeIdx  = spaceDedupeIdx
	SpaceDedupeBat  = spaceDedupeBat
)

// DedupePruneSlack is how long apply lets expired dedupe records wait for
// the next prune, in commands or entries.
const DedupePruneSlack = dedupePruneSlack

// SetPruneSlack sets the replica's prune slack; 0 prunes as soon as a
// record has expired.
func (f *FSM) SetPruneSlack(n uint64) { f.pruneSlack = n }

// PrunePasses counts the replica's prune passes since it opened.
func (f *FSM) PrunePasses() uint64 { return f.prunes.Load() }

// SetFailRestore makes Restore stop as a crash would after staging n records.
func (f *FSM) SetFailRestore(n int) { f.failRestore = n }

// Generation returns the replica's current generation.
func (f *FSM) Generation() uint32 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.gen
}

// RawKeys counts the live keys stored under the replica's shard prefix, by
// generation and key space.
func (f *FSM) RawKeys() (map[uint32]map[byte]int, error) {
	counts := make(map[uint32]map[byte]int)
	err := f.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = shardPrefix(f.id)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			gen := binary.BigEndian.Uint32(k[shardPrefixLen:])
			if counts[gen] == nil {
				counts[gen] = make(map[byte]int)
			}
			counts[gen][k[genPrefixLen]]++
		}
		return nil
	})
	return counts, err
}

// CountVersions counts every stored version in one key space of the current
// generation, deletion markers included: a write that changed nothing visible
// still shows up here.
func (f *FSM) CountVersions(space byte) (int, error) {
	n := 0
	err := f.view(func(txn *badger.Txn, ks keyspace) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.AllVersions = true
		opts.Prefix = ks.key(space)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	return n, err
}

// WriteRaw stores key (relative to the generation prefix) in generation gen,
// bypassing apply, to fake what a crash leaves behind.
func (f *FSM) WriteRaw(gen uint32, key, value []byte) error {
	return f.db.Update(func(txn *badger.Txn) error {
		return txn.Set(append(genPrefix(f.id, gen), key...), value)
	})
}

// PutOldIntent writes a put intent in the format used before prepares fixed
// versions (no version in it), as a replica upgraded in place still holds.
func (f *FSM) PutOldIntent(txnID string, recordShard ShardID, key, value []byte) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	ks := newKeyspace(f.id, f.gen)
	in := intent{txnID: txnID, recordShard: recordShard, op: intentPut, value: value}
	err := f.db.Update(func(txn *badger.Txn) error { return txn.Set(ks.intent(key), in.encode()) })
	if err == nil {
		f.intents.Add(1)
		f.locked[string(key)] = struct{}{}
	}
	return err
}

// OnViewOpened makes every read run fn once its Badger transaction is open
// (nil: stop).
func (f *FSM) OnViewOpened(fn func()) { f.viewOpened = fn }

// MakeDedupeOld rewrites the current generation's batched dedupe records as
// builds before the command bound wrote them: keyed by ID alone,
// [index][result], with an empty index entry, and reloads what apply knows
// of them as a replica does when it opens.
func (f *FSM) MakeDedupeOld() error {
	return f.rewriteBatches(func(txn *badger.Txn, ks keyspace, r dedupeRecord) error {
		return errors.Join(
			txn.Set(ks.dedupeOld(r.id), append(binary.BigEndian.AppendUint64(nil, r.index), r.result...)),
			txn.Set(ks.dedupeIdx(r.index, r.id), nil))
	})
}

// MakeDedupePerID rewrites them as the builds before batches wrote them: a
// record per ID and entry, [command number][result], and an index entry
// holding the command number, and reloads the same way.
func (f *FSM) MakeDedupePerID() error {
	return f.rewriteBatches(func(txn *badger.Txn, ks keyspace, r dedupeRecord) error {
		seq := binary.BigEndian.AppendUint64(nil, r.seq)
		return errors.Join(
			txn.Set(ks.dedupe(r.id, r.index), append(seq, r.result...)),
			txn.Set(ks.dedupeIdx(r.index, r.id), seq))
	})
}

func (f *FSM) rewriteBatches(write func(*badger.Txn, keyspace, dedupeRecord) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	ks := newKeyspace(f.id, f.gen)
	err := f.db.Update(func(txn *badger.Txn) error {
		var keys [][]byte
		var recs []dedupeRecord
		it := txn.NewIterator(badger.IteratorOptions{Prefix: ks.dedupeBatchPrefix()})
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
			err := it.Item().Value(func(v []byte) error {
				return decodeDedupeBatch(bytes.Clone(v), func(r dedupeRecord) bool {
					recs = append(recs, r)
					return true
				})
			})
			if err != nil {
				it.Close()
				return err
			}
		}
		it.Close()
		for _, k := range keys {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		for _, r := range recs {
			if err := write(txn, ks, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	d, recent, err := f.loadDedupes(f.gen, f.meta)
	if err != nil {
		return err
	}
	f.dedupes.Store(d)
	f.recent.Store(recent)
	return nil
}

// DedupeBatches counts the current generation's batched dedupe records:
// those live for the entry and command after the applied ones, all of
// them, and the batches whose records have all expired (which pruning
// removes).
func (f *FSM) DedupeBatches() (live, records, expired int, err error) {
	err = f.view(func(txn *badger.Txn, ks keyspace) error {
		m, err := f.readMeta(txn, f.gen)
		if err != nil {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: ks.dedupeBatchPrefix()})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var last dedupeRecord
			err := it.Item().Value(func(v []byte) error {
				return decodeDedupeBatch(v, func(r dedupeRecord) bool {
					records++
					if !r.expired(m.Index+1, m.Commands+1) {
						live++
					}
					last = r
					return true
				})
			})
			if err != nil {
				return err
			}
			if last.expired(m.Index+1, m.Commands+1) {
				expired++
			}
		}
		return nil
	})
	return live, records, expired, err
}

// SetIndexHash replaces the hash by which apply finds a request ID's
// batched record (nil: the real one).
func SetIndexHash(h func(string) uint64) {
	if h == nil {
		h = dedupeHash
	}
	indexHash = h
}

// Store returns the store the replica belongs to.
func (f *FSM) Store() *Store { return f.store }
