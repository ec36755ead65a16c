package docstore

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/internal/jsonx"
	fastjson "github.com/segmentio/encoding/json"
)

// Doc is a JSON object as the store decodes it: numbers are json.Number
// (exact as written), nested objects map[string]any, arrays []any.
type Doc map[string]any

// Managed fields: _id is the document's key (given or generated); the
// others are the store's, ignored in what a caller writes.
const (
	FieldID        = "_id"
	FieldVersion   = "_version"    // the raft version of the document's last write
	FieldCreatedAt = "_created_at" // stamped by the node that inserted it
	FieldUpdatedAt = "_updated_at" // stamped by the node that last wrote it
)

// Limits on names.
const (
	MaxNameLen = 128 // collection names
	MaxIDLen   = 512 // _id values, in bytes
)

// ParseDoc decodes one JSON object.
func ParseDoc(b []byte) (Doc, error) {
	var v any
	if err := jsonx.Decode(b, &v, jsonx.Options{Numbers: true}); err != nil {
		return nil, fmt.Errorf("%w: not one JSON value: %v", fsm.ErrInvalid, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: a document is a JSON object", fsm.ErrInvalid)
	}
	return Doc(m), nil
}

// CheckName checks a collection name.
func CheckName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty collection name", fsm.ErrInvalid)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: collection name longer than %d bytes", fsm.ErrInvalid, MaxNameLen)
	case strings.HasPrefix(name, "_") || strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("%w: collection name %q starts with _ or holds / or NUL", fsm.ErrInvalid, name)
	}
	return nil
}

// CheckID checks a document ID.
func CheckID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty _id", fsm.ErrInvalid)
	case len(id) > MaxIDLen:
		return fmt.Errorf("%w: _id longer than %d bytes", fsm.ErrInvalid, MaxIDLen)
	case strings.HasPrefix(id, "_"):
		return fmt.Errorf("%w: _id %q starts with _ (reserved for the API's own paths)", fsm.ErrInvalid, id)
	}
	return nil
}

// idOf returns the document's _id: absent is "", anything but a string is
// an error.
func idOf(d Doc) (string, error) {
	v, ok := d[FieldID]
	if !ok {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%w: _id must be a string", fsm.ErrInvalid)
	}
	if err := CheckID(s); err != nil {
		return "", err
	}
	return s, nil
}

// newID makes an _id: 6 bytes of milliseconds then 6 random bytes, in hex,
// so that IDs generated later sort later (roughly; clocks differ).
func newID(now time.Time) string {
	var b [12]byte
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(now.UnixMilli()))
	copy(b[:6], ms[2:])
	_, _ = rand.Read(b[6:])
	return hex.EncodeToString(b[:])
}

// stored is a document as written: the caller's fields, _id and the two
// timestamps (the version is the key's and is added on reading).
func stored(d Doc, id string, created, updated time.Time) ([]byte, error) {
	out := make(map[string]any, len(d)+3)
	for k, v := range d {
		switch k {
		case FieldVersion, FieldCreatedAt, FieldUpdatedAt:
			continue // managed: what the caller sent is ignored
		}
		out[k] = v
	}
	out[FieldID] = id
	out[FieldCreatedAt] = created.UTC().Format(time.RFC3339Nano)
	out[FieldUpdatedAt] = updated.UTC().Format(time.RFC3339Nano)
	return json.Marshal(out)
}

// load decodes a stored document and adds its version. Stored documents
// were checked by ParseDoc and written back by encoding/json, so load can
// decode them with segmentio/encoding/json, which returns what ParseDoc
// would (load_internal_test.go holds it to that) with less than half its
// CPU and memory: finds decode every document they return, and at 256
// concurrent finds that decoding and the collections it caused bounded
// the node (docs/benchmarks.md, "Stored documents decoded faster").
func load(value []byte, version uint64) (Doc, error) {
	var v any
	rest, err := fastjson.Parse(value, &v, fastjson.UseNumber)
	if err == nil && len(rest) != 0 {
		err = fmt.Errorf("%d bytes after the document", len(rest))
	}
	if err != nil {
		return nil, fmt.Errorf("docstore: stored document: %w", err)
	}
	d, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("docstore: stored document is not a JSON object")
	}
	d[FieldVersion] = json.Number(strconv.FormatUint(version, 10))
	return d, nil
}

func createdAt(d Doc) time.Time {
	s, _ := d[FieldCreatedAt].(string)
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// mergePatch applies an RFC 7386 merge patch to target (a copy is
// returned): objects merge key by key, null removes, anything else
// replaces.
func mergePatch(target any, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	out := make(map[string]any, len(t)+len(p))
	if ok {
		for k, v := range t {
			out[k] = v
		}
	}
	for k, v := range p {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = mergePatch(out[k], v)
	}
	return out
}
