package ring

import "encoding/binary"

// RoutedPrefix starts the keys that carry their own routing tag: such a
// key ends with the tag and two big-endian bytes giving its length, and
// Locate hashes only the tag. Keys with one tag live on one shard whatever
// comes before it; the document store keeps a document and its index
// entries together this way. The HTTP API refuses user keys that start
// with this byte.
const RoutedPrefix = 0x00

// RouteKey returns the bytes of key that place it: the tag of a routed key
// (one whose length suffix fits), else the whole key.
func RouteKey(key []byte) []byte {
	if len(key) < 4 || key[0] != RoutedPrefix {
		return key
	}
	n := int(binary.BigEndian.Uint16(key[len(key)-2:]))
	if n == 0 || n > len(key)-3 {
		return key
	}
	return key[len(key)-2-n : len(key)-2]
}

// AppendRouted appends tag and its length to b, making b (which should
// start with RoutedPrefix) a key placed by tag. Tags are at most 65535
// bytes.
func AppendRouted(b, tag []byte) []byte {
	b = append(b, tag...)
	return binary.BigEndian.AppendUint16(b, uint16(len(tag)))
}
