package fsm

import (
	"encoding/binary"

	"github.com/cairndb/cairn/ring"
)

// ShardID names a shard. Shard 0 is the cluster's meta group. (It is
// defined in ring, which places keys on shards and imports nothing of
// the store, so that the Go client can route keys without it.)
type ShardID = ring.ShardID

const (
	shardPrefixLen = 8
	genPrefixLen   = shardPrefixLen + 4

	spaceCurrentGen = 'G'
	spaceRestoring  = 'R'

	spaceApplied   = 'a'
	spaceData      = 'd'
	spaceDedupe    = 'e'
	spaceDedupeOld = 'r' // records as builds before the command bound wrote them
	spaceDedupeIdx = 'q'
	spaceDedupeBat = 'b' // batches of dedupe records (dedupebatch.go)
	spaceIntent    = 'i'
	spaceTxn       = 't'
	spaceRangeLock = 'l'
)

func shardPrefix(id ShardID) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, shardPrefixLen), uint64(id))
}

// genPrefix is [shard][gen]. Generation 0 holds the replica's pointers.
func genPrefix(id ShardID, gen uint32) []byte {
	b := make([]byte, 0, genPrefixLen+1)
	b = binary.BigEndian.AppendUint64(b, uint64(id))
	return binary.BigEndian.AppendUint32(b, gen)
}

func pointerKey(id ShardID, space byte) []byte {
	return append(genPrefix(id, 0), space)
}

// keyspace builds keys of one generation of one replica.
type keyspace struct{ prefix []byte }

func newKeyspace(id ShardID, gen uint32) keyspace { return keyspace{genPrefix(id, gen)} }

func (k keyspace) key(space byte, parts ...[]byte) []byte {
	n := len(k.prefix) + 1
	for _, p := range parts {
		n += len(p)
	}
	b := make([]byte, 0, n)
	b = append(b, k.prefix...)
	b = append(b, space)
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func (k keyspace) applied() []byte         { return k.key(spaceApplied) }
func (k keyspace) data(user []byte) []byte { return k.key(spaceData, user) }
func (k keyspace) dataPrefix() []byte      { return k.key(spaceData) }

// dedupeOf is the prefix of id's dedupe records (its length first, so that
// no ID's prefix holds another's records), dedupe the key of its record
// written at index. An ID applied again after its record expired has two
// until pruning removes the older, each deleted by its own index entry.
func (k keyspace) dedupeOf(id string) []byte {
	return k.key(spaceDedupe, binary.BigEndian.AppendUint16(nil, uint16(len(id))), []byte(id))
}
func (k keyspace) dedupe(id string, index uint64) []byte {
	return binary.BigEndian.AppendUint64(k.dedupeOf(id), index)
}
func (k keyspace) dedupeOld(id string) []byte { return k.key(spaceDedupeOld, []byte(id)) }
func (k keyspace) dedupeIdxPrefix() []byte    { return k.key(spaceDedupeIdx) }
func (k keyspace) dedupeIdx(index uint64, id string) []byte {
	return k.key(spaceDedupeIdx, binary.BigEndian.AppendUint64(nil, index), []byte(id))
}

// dedupeBatch is the key of a batch of dedupe records whose last record is
// command number seq.
func (k keyspace) dedupeBatchPrefix() []byte { return k.key(spaceDedupeBat) }
func (k keyspace) dedupeBatch(seq uint64) []byte {
	return k.key(spaceDedupeBat, binary.BigEndian.AppendUint64(nil, seq))
}

func (k keyspace) intent(user []byte) []byte  { return k.key(spaceIntent, user) }
func (k keyspace) txnRecord(id string) []byte { return k.key(spaceTxn, []byte(id)) }

// rangeLocks is the prefix of transaction id's range locks; rangeLock the
// key of its i-th.
func (k keyspace) rangeLocks(id string) []byte {
	return k.key(spaceRangeLock, appendBytes(nil, []byte(id)))
}
func (k keyspace) rangeLock(id string, i int) []byte {
	return binary.BigEndian.AppendUint32(k.rangeLocks(id), uint32(i))
}

// userKey strips the data prefix from a stored data key.
func (k keyspace) userKey(stored []byte) []byte { return stored[len(k.prefix)+1:] }
