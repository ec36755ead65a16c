package fsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cairndb/cairn/internal/keys"
	"github.com/dgraph-io/badger/v4"
)

// Item is one key with its value and version. Its slices are owned by the caller.
type Item struct {
	Key     []byte
	Value   []byte
	Version uint64
}

// view runs fn in a read transaction over the current generation.
func (f *FSM) view(fn func(txn *badger.Txn, ks keyspace) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	ks := newKeyspace(f.id, f.gen)
	return f.db.View(func(txn *badger.Txn) error { return fn(txn, ks) })
}

// readView is view for reads that must notice intents: mayHold is false
// only if the replica held no intent when the transaction opened, so the
// read need not look for one. The count is loaded before the transaction
// opens because apply subtracts a removed intent only after committing the
// removal: a count loaded after opening could be zero while the
// transaction still sees the intent, and the read would return the key's
// committed value as if no transaction held it, though that transaction
// may have committed (its record on another shard) before the read began.
// An intent written between the load and the opening is missed, which is
// harmless: its transaction had not committed when the count was loaded,
// a moment within the read, and the read returns what the key held then.
func (f *FSM) readView(fn func(txn *badger.Txn, ks keyspace, mayHold bool) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	ks := newKeyspace(f.id, f.gen)
	mayHold := f.intents.Load() != 0
	return f.db.View(func(txn *badger.Txn) error {
		if f.viewOpened != nil {
			f.viewOpened()
		}
		return fn(txn, ks, mayHold)
	})
}

// Get returns the key's current value, or an error wrapping ErrNotFound.
func (f *FSM) Get(key []byte) (Item, error) {
	var it Item
	err := f.readView(func(txn *badger.Txn, ks keyspace, mayHold bool) error {
		var err error
		it, err = f.get(txn, ks, mayHold, key)
		return err
	})
	return it, err
}

// GetMany reads keys from one snapshot (found false for an absent key).
// A key held by a transaction's intent fails the whole call with its
// *LockedError, as Get would for that key.
func (f *FSM) GetMany(keys [][]byte) (items []Item, found []bool, err error) {
	items = make([]Item, len(keys))
	found = make([]bool, len(keys))
	err = f.readView(func(txn *badger.Txn, ks keyspace, mayHold bool) error {
		for i, key := range keys {
			it, err := f.get(txn, ks, mayHold, key)
			switch {
			case err == nil:
				items[i], found[i] = it, true
			case !errors.Is(err, ErrNotFound):
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return items, found, nil
}

// get reads key in txn: its value, an error wrapping ErrNotFound, or a
// *LockedError carrying the committed value when an intent holds it.
func (f *FSM) get(txn *badger.Txn, ks keyspace, mayHold bool, key []byte) (Item, error) {
	var lockErr error
	if mayHold {
		lockErr = f.lockedError(txn, ks, key)
	}
	var locked *LockedError
	if lockErr != nil && !errors.As(lockErr, &locked) {
		return Item{}, lockErr
	}
	item, err := txn.Get(ks.data(key))
	if locked != nil {
		if err == nil {
			locked.Committed, err = decodeItem(key, item)
			locked.Found = err == nil
		} else if errors.Is(err, badger.ErrKeyNotFound) {
			err = nil
		}
		if err != nil {
			return Item{}, err
		}
		return Item{}, locked
	}
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Item{}, fmt.Errorf("%w: key %q", ErrNotFound, key)
	}
	if err != nil {
		return Item{}, err
	}
	return decodeItem(key, item)
}

func decodeItem(key []byte, item *badger.Item) (Item, error) {
	it := Item{Key: append([]byte(nil), key...)}
	err := item.Value(func(b []byte) error {
		if len(b) < 8 {
			return fmt.Errorf("fsm: value record of %d bytes", len(b))
		}
		it.Version = binary.BigEndian.Uint64(b)
		it.Value = append([]byte(nil), b[8:]...)
		return nil
	})
	return it, err
}

// ScanOptions select a range of keys in order. With Prefix set, Start and End
// further narrow it. End is exclusive; an empty End means no upper bound.
// After continues a previous scan: only keys greater than it are returned
// (less than it, with Reverse).
type ScanOptions struct {
	Prefix []byte
	Start  []byte
	End    []byte
	After  []byte
	Limit  int // 0: no limit
	// Reverse returns the range's keys in descending order, from its
	// end backwards.
	Reverse bool
}

// ScanResult holds the items found and, when Limit stopped the scan early,
// the key to pass as After to continue.
type ScanResult struct {
	Items []Item
	More  bool
	Next  []byte
}

// Scan returns keys of the range in order, from one consistent snapshot.
func (f *FSM) Scan(o ScanOptions) (ScanResult, error) {
	var res ScanResult
	if o.Limit < 0 {
		return res, fmt.Errorf("%w: negative limit", ErrInvalid)
	}
	if o.Reverse {
		return f.scanReverse(o)
	}
	err := f.readView(func(txn *badger.Txn, ks keyspace, mayHold bool) error {
		base := ks.dataPrefix()
		opts := scanIteratorOptions()
		opts.Prefix = append(base[:len(base):len(base)], o.Prefix...)
		it := txn.NewIterator(opts)
		defer it.Close()
		seek := o.Prefix
		if bytes.Compare(o.Start, seek) > 0 {
			seek = o.Start
		}
		if o.After != nil && bytes.Compare(o.After, seek) >= 0 {
			seek = append(append([]byte(nil), o.After...), 0)
		}
		for it.Seek(ks.data(seek)); it.Valid(); it.Next() {
			key := ks.userKey(it.Item().Key())
			if len(o.End) > 0 && bytes.Compare(key, o.End) >= 0 {
				break
			}
			more, err := res.take(o.Limit, key, it.Item())
			if err != nil {
				return err
			}
			if !more {
				break
			}
		}
		var last []byte // the scan covered keys up to here (inclusive)
		if res.More {
			last = res.Next
		}
		return f.lockedInRange(txn, ks, mayHold, o.Prefix, seek, o.End, last)
	})
	return res, err
}

// scanIteratorOptions are the options of a scan's iterator. Values are not
// prefetched: Badger would start a goroutine per item to copy each of the
// next PrefetchSize values (100 by default) at every seek, which dominated
// short scans (a document index range holding a few entries per shard),
// and a scan's values are read once anyway, in key order, by take.
func scanIteratorOptions() badger.IteratorOptions {
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	return opts
}

// take adds the item at key to the page, or, when the page already holds
// limit items (0: no limit), marks it as having more and reports false.
func (res *ScanResult) take(limit int, key []byte, it *badger.Item) (bool, error) {
	if limit > 0 && len(res.Items) == limit {
		res.More = true
		res.Next = res.Items[len(res.Items)-1].Key
		return false, nil
	}
	item, err := decodeItem(key, it)
	if err != nil {
		return false, err
	}
	res.Items = append(res.Items, item)
	return true, nil
}

// scanReverse is Scan with o.Reverse: the range's keys from its exclusive
// upper bound (End, After, or the end of Prefix, whichever is lowest)
// down to its lower bound (Prefix or Start, whichever is higher).
func (f *FSM) scanReverse(o ScanOptions) (ScanResult, error) {
	var res ScanResult
	lower := o.Prefix
	if bytes.Compare(o.Start, lower) > 0 {
		lower = o.Start
	}
	var upper []byte // exclusive; nil: none
	for _, b := range [][]byte{keys.PrefixEnd(o.Prefix), o.End, o.After} {
		if len(b) > 0 && (upper == nil || bytes.Compare(b, upper) < 0) {
			upper = b
		}
	}
	err := f.readView(func(txn *badger.Txn, ks keyspace, mayHold bool) error {
		base := ks.dataPrefix()
		opts := scanIteratorOptions()
		opts.Reverse = true
		it := txn.NewIterator(opts)
		defer it.Close()
		// A reverse seek lands on the greatest key at or below the one
		// given, which may lie past the range: such keys are skipped.
		seek := ks.data(upper)
		if upper == nil {
			seek = keys.PrefixEnd(base)
		}
		for it.Seek(seek); it.Valid(); it.Next() {
			stored := it.Item().Key()
			if bytes.Compare(stored, seek) >= 0 {
				continue
			}
			if !bytes.HasPrefix(stored, base) {
				break
			}
			key := ks.userKey(stored)
			if bytes.Compare(key, lower) < 0 || !bytes.HasPrefix(key, o.Prefix) {
				break
			}
			more, err := res.take(o.Limit, key, it.Item())
			if err != nil {
				return err
			}
			if !more {
				break
			}
		}
		from := lower // the scan covered keys from here (inclusive) up
		if res.More {
			from = res.Next
		}
		return f.lockedInRange(txn, ks, mayHold, o.Prefix, from, upper, nil)
	})
	return res, err
}

// lockedInRange reports the first write intent on a key under prefix in
// [from, end) and, with last set, not after last: a scan over that range
// must not return the state without the undecided write. mayHold: as
// readView passed it.
func (f *FSM) lockedInRange(txn *badger.Txn, ks keyspace, mayHold bool, prefix, from, end, last []byte) error {
	if !mayHold {
		return nil
	}
	base := ks.key(spaceIntent)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: append(base[:len(base):len(base)], prefix...)})
	defer it.Close()
	for it.Seek(ks.intent(from)); it.Valid(); it.Next() {
		key := it.Item().Key()[len(base):]
		if len(end) > 0 && bytes.Compare(key, end) >= 0 || last != nil && bytes.Compare(key, last) > 0 {
			return nil
		}
		if err := f.lockedError(txn, ks, key); err != nil {
			return err
		}
	}
	return nil
}

// dedupeLapsed reports whether k (without the generation prefix) with value
// v is a dedupe record or index entry that no command after m can match.
func dedupeLapsed(k, v []byte, m appliedMeta) bool {
	next := m.Index + 1
	switch {
	case k[0] == spaceDedupeIdx && len(k) >= 9:
		return dedupeExpired(binary.BigEndian.Uint64(k[1:]), next) || dedupeCommandsExpired(decodeDedupeSeq(v), m.Commands+1)
	case k[0] == spaceDedupe && len(k) >= 9 && len(v) >= 8:
		return dedupeExpired(binary.BigEndian.Uint64(k[len(k)-8:]), next) || dedupeCommandsExpired(binary.BigEndian.Uint64(v), m.Commands+1)
	case k[0] == spaceDedupeOld && len(v) >= 8:
		return dedupeExpired(binary.BigEndian.Uint64(v), next)
	}
	return false
}

// StateHash returns the applied index and a SHA-256 over the replica's whole
// state (data, live dedupe records, applied-command count) read from one
// snapshot. Replicas at the same applied index must have the same hash.
// Expired dedupe records and index entries (by entries or by commands) are
// left out: when pruning removes them depends on batch boundaries. Dedupe
// records are hashed as the build that applied them wrote them, so replicas
// that applied the same entries with builds of different record formats (a
// rolling upgrade) hash differently until those records expire.
func (f *FSM) StateHash() (index uint64, sum [32]byte, err error) {
	err = f.view(func(txn *badger.Txn, ks keyspace) error {
		m, err := f.readMeta(txn, f.gen)
		if err != nil {
			return err
		}
		index = m.Index
		h := sha256.New()
		_ = binary.Write(h, binary.BigEndian, m.Commands)
		opts := badger.DefaultIteratorOptions
		opts.Prefix = ks.prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		var n [8]byte
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()[len(ks.prefix):]
			if k[0] == spaceApplied {
				continue
			}
			write := func(k, v []byte) {
				binary.BigEndian.PutUint64(n[:], uint64(len(k)))
				h.Write(n[:])
				h.Write(k)
				binary.BigEndian.PutUint64(n[:], uint64(len(v)))
				h.Write(n[:])
				h.Write(v)
			}
			if err := it.Item().Value(func(v []byte) error {
				if k[0] == spaceDedupeBat {
					// Each live record on its own: which records share
					// a batch differs between replicas.
					return decodeDedupeBatch(v, func(r dedupeRecord) bool {
						if !r.expired(m.Index+1, m.Commands+1) {
							write(r.append([]byte{spaceDedupeBat}), nil)
						}
						return true
					})
				}
				if dedupeLapsed(k, v, m) {
					return nil
				}
				write(k, v)
				return nil
			}); err != nil {
				return err
			}
		}
		copy(sum[:], h.Sum(nil))
		return nil
	})
	return index, sum, err
}
