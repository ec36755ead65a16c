package docstore

import (
	"github.com/cairndb/cairn/docstore/keyenc"
	"github.com/cairndb/cairn/internal/keys"
	"github.com/cairndb/cairn/ring"
)

// The document store's keys all start with ring.RoutedPrefix and a kind
// byte, and end with a routing tag (ring.AppendRouted):
//
//	catalog entry  0x00 'c' <tag: collection>
//	document       0x00 'd' <collection> <tag: _id>
//
// Names and IDs are keyenc strings, so each part is self-delimiting and a
// collection's documents are one key range, in _id order. A document is
// placed by its _id alone, so whatever else is keyed by that _id (index
// entries, later) shares its shard.
const (
	kindCatalog = 'c'
	kindDoc     = 'd'
)

func encString(s string) []byte {
	b, _ := keyenc.Append(nil, s) // strings always encode
	return b
}

func catalogKey(coll string) []byte {
	return ring.AppendRouted([]byte{ring.RoutedPrefix, kindCatalog}, encString(coll))
}

// catalogRange is every catalog entry.
func catalogRange() (start, end []byte) {
	return []byte{ring.RoutedPrefix, kindCatalog}, []byte{ring.RoutedPrefix, kindCatalog + 1}
}

func docPrefix(coll string) []byte {
	return append([]byte{ring.RoutedPrefix, kindDoc}, encString(coll)...)
}

func docKey(coll, id string) []byte {
	return ring.AppendRouted(docPrefix(coll), encString(id))
}

// docRange is every document of coll.
func docRange(coll string) (start, end []byte) {
	start = docPrefix(coll)
	return start, keys.PrefixEnd(start)
}
