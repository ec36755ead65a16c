package client

import (
	fastjson "github.com/segmentio/encoding/json"
)

// The client decodes the server's answers with segmentio/encoding/json,
// which accepts and rejects what encoding/json does and fills the same
// types (json.Number and json.RawMessage are the standard ones), at a
// fraction of the CPU: a page of 100 keys with 256-byte values decodes in
// about a tenth of encoding/json's time, most of which went into stepping
// through the base64 of the values one byte at a time. On a machine whose
// cores the client shares with the servers, that decoding had bounded the
// scans a program could make (docs/benchmarks.md, "Scan pages decoded in a
// tenth of the time"). Request bodies are still encoded by encoding/json,
// so a caller's own MarshalJSON methods and struct tags behave as the
// standard library documents.

// unmarshal decodes a JSON answer into v.
func unmarshal(b []byte, v any) error {
	return fastjson.Unmarshal(b, v)
}

// unmarshalNumbers decodes the first JSON value of b into v with numbers
// as json.Number, so that integers beyond 2^53 in documents stay exact.
// (Parse, not a Decoder: a Decoder allocates a 32 KiB buffer each.)
func unmarshalNumbers(b []byte, v any) error {
	_, err := fastjson.Parse(b, v, fastjson.UseNumber)
	return err
}
