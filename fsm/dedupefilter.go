package fsm

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/cespare/xxhash/v2"
	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/ristretto/v2/z"
)

// dedupeFilter tells apply, without reading Badger, that a request ID has
// no live dedupe record of the kind older builds wrote (one per ID, see
// dedupebatch.go for the batches written now), which is the answer for
// nearly every write: a miss costs Badger a search of every memtable and
// level. A replica fills it from such records when it opens or restores.
// It is a Bloom filter per half window of entry indexes (the generation of
// a record is its index / dedupeGen), three generations kept: a record live at entry e
// (index ≥ e − DedupeWindow) lies in e's generation or one of the two
// before it, and a slot is reused, three generations on, only once every
// record in it has expired. A "maybe" is answered by Badger as before, so
// the filter changes no result, only how many reads find nothing.
type dedupeFilter struct {
	mu    sync.Mutex
	slots [3]*z.Bloom
	generations
}

// generations assigns three slots to consecutive generations of records,
// each slot reused three generations on.
type generations struct {
	gens [3]uint64 // the generation each slot holds
	used [3]bool
	// newest is the newest generation given a slot: an older one than
	// newest−2 is never given one (its records have all expired).
	newest uint64
}

// slot returns the slot of generation gen and whether it held another
// generation, whose contents must be dropped; ok is false if gen is too
// old for any.
func (g *generations) slot(gen uint64) (i int, reset, ok bool) {
	if gen+2 < g.newest {
		return 0, false, false // expired for every record still to come
	}
	i = int(gen % 3)
	if !g.used[i] || g.gens[i] != gen {
		g.gens[i], g.used[i], reset = gen, true, true
	}
	g.newest = max(g.newest, gen)
	return i, reset, true
}

// live reports whether slot i may hold records live in generation cur.
func (g *generations) live(i int, cur uint64) bool {
	return g.used[i] && g.gens[i] <= cur && g.gens[i]+2 >= cur
}

const (
	dedupeGen = DedupeWindow / 2
	// dedupeFilterEntries sizes each generation's filter (1% false
	// positives at this many IDs, about 300 KiB); more IDs only raise the
	// false-positive rate, each false positive costing one Badger read.
	dedupeFilterEntries = 1 << 18
)

func dedupeHash(id string) uint64 { return xxhash.Sum64String(id) }

// add records that id has a dedupe record written at index.
func (d *dedupeFilter) add(index uint64, id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	i, reset, ok := d.slot(index / dedupeGen)
	switch {
	case !ok:
		return
	case d.slots[i] == nil:
		d.slots[i] = z.NewBloomFilter(float64(dedupeFilterEntries), 0.01)
	case reset:
		d.slots[i].Clear()
	}
	d.slots[i].Add(dedupeHash(id))
}

// mayHave reports whether id may have a live dedupe record at entry index.
func (d *dedupeFilter) mayHave(index uint64, id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	h := dedupeHash(id)
	cur := index / dedupeGen
	for i := range d.slots {
		if d.live(i, cur) && d.slots[i].Has(h) {
			return true
		}
	}
	return false
}

// loadDedupeFilter fills a filter with the records of generation gen that
// are live for the entry after applied (by entries: the filter only spares
// lookups, so one expired by commands may stay in it).
func (f *FSM) loadDedupeFilter(gen uint32, applied uint64) (*dedupeFilter, error) {
	d := &dedupeFilter{generations: generations{newest: (applied + 1) / dedupeGen}}
	ks := newKeyspace(f.id, gen)
	add := func(index uint64, id string) {
		if !dedupeExpired(index, applied+1) {
			d.add(index, id)
		}
	}
	err := f.db.View(func(txn *badger.Txn) error {
		// [len][id][index]: the index is in the key.
		prefix := ks.key(spaceDedupe)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()[len(prefix):]
			if len(k) < 10 {
				it.Close()
				return fmt.Errorf("dedupe record key %q", k)
			}
			add(binary.BigEndian.Uint64(k[len(k)-8:]), string(k[2:len(k)-8]))
		}
		it.Close()
		// An older build's records: [id] → [index][result].
		prefix = ks.key(spaceDedupeOld)
		it = txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			id := string(it.Item().Key()[len(prefix):])
			err := it.Item().Value(func(b []byte) error {
				if len(b) >= 8 {
					add(binary.BigEndian.Uint64(b), id)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return d, err
}
