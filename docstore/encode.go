package docstore

import (
	fastjson "github.com/segmentio/encoding/json"
)

// EncodeJSON encodes v, documents as Find returns them (maps, slices,
// strings, json.Number, booleans and nil), possibly inside maps and
// slices of the caller's, to exactly the bytes json.Marshal gives: keys
// in order, <, >, & and U+2028/U+2029 escaped. It uses segmentio/encoding/json,
// which writes a page of ten documents in under half of
// encoding/json's time with one allocation instead of about 150
// (docs/benchmarks.md, "Answers encoded in one allocation").
func EncodeJSON(v any) ([]byte, error) {
	return fastjson.Marshal(v)
}
