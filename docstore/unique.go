package docstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/cairndb/cairn/docstore/keyenc"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/ring"
)

// A unique index keeps, besides its local entries, one global entry per
// value (tuple of values, for several fields): a key placed by the value
// itself, holding the _id of the document that has it. A write that gives
// a document a value checks, in the same transaction, that the value's
// entry is absent (or already the document's) and writes it; so two
// documents can never hold one value, whichever shards they live on. The
// global entry usually lives on another shard than the document, so such
// writes are cross-shard transactions.
//
// Documents where an indexed field is missing or null are not
// constrained (any number of them may lack the field).
//
//	global entry  0x00 'u' <collection> <index> <tag: the value(s)>
const kindUnique = 'u'

// ErrUniqueViolation: a write would give a document a value a unique index
// already holds for another.
var ErrUniqueViolation = errors.New("docstore: unique index violation")

// UniqueViolationError names the index, the value and the document that
// holds it. It matches ErrUniqueViolation.
type UniqueViolationError struct {
	Index  string
	Value  any
	Holder string
}

func (e *UniqueViolationError) Error() string {
	v, _ := json.Marshal(e.Value)
	return fmt.Sprintf("docstore: unique index %s already holds %s (document %s)", e.Index, v, e.Holder)
}

func (e *UniqueViolationError) Is(target error) bool { return target == ErrUniqueViolation }

func uniquePrefix(coll, index string) []byte {
	b := append([]byte{ring.RoutedPrefix, kindUnique}, encString(coll)...)
	return append(b, encString(index)...)
}

// uniqueTuples returns the encoded value tuples d holds in idx: an
// array's elements stand for the array, and null (or missing) values are
// left out, so a document without a value is not constrained.
func uniqueTuples(idx IndexSpec, d Doc) ([][]byte, error) {
	return valueTuples(idx, d, func(vals []any) []any {
		var out []any
		for _, v := range vals {
			if a, ok := v.([]any); ok {
				out = append(out, a...)
			} else {
				out = append(out, v)
			}
		}
		return slices.DeleteFunc(out, func(v any) bool { return v == nil })
	})
}

// decodeTuple turns an encoded tuple back into its values (one value: the
// value itself).
func decodeTuple(t []byte) any {
	var vals []any
	for len(t) > 0 {
		v, rest, err := keyenc.Decode(t)
		if err != nil {
			break
		}
		vals, t = append(vals, v), rest
	}
	if len(vals) == 1 {
		return vals[0]
	}
	return vals
}

// uniqueOps reads the global entries a change of document id from old to
// next (either nil) touches in sch's unique indexes (only in index only,
// if set) and returns the ops and comparisons that make it: each new value
// written if its entry is still absent, or kept if it is already id's;
// each value given up deleted if it is still id's. A value another
// document holds is a *UniqueViolationError.
func (c *Collection) uniqueOps(ctx context.Context, sch schema, id string, old, next Doc, only string) ([]fsm.Op, []fsm.Compare, error) {
	var ops []fsm.Op
	var ifs []fsm.Compare
	for _, idx := range sch.indexes {
		if !idx.Unique || idx.State == StateDropping || only != "" && idx.Name != only {
			continue
		}
		before, err := uniqueTuples(idx, old)
		if err != nil {
			before = nil
		}
		after, err := uniqueTuples(idx, next)
		if err != nil {
			return nil, nil, err
		}
		prefix := uniquePrefix(c.name, idx.Name)
		for _, t := range after {
			key := ring.AppendRouted(bytes.Clone(prefix), t)
			it, found, err := c.db.kv.Get(ctx, key)
			switch {
			case err != nil:
				return nil, nil, err
			case !found:
				ifs = append(ifs, fsm.Compare{Kind: fsm.CompareAbsent, Key: key})
				ops = append(ops, fsm.Put(key, []byte(id)))
			case string(it.Value) == id:
				ifs = append(ifs, fsm.Compare{Kind: fsm.CompareValue, Key: key, Value: []byte(id)})
			default:
				return nil, nil, &UniqueViolationError{Index: idx.Name, Value: decodeTuple(t), Holder: string(it.Value)}
			}
		}
		for _, t := range before {
			if containsKey(after, t) {
				continue
			}
			key := ring.AppendRouted(bytes.Clone(prefix), t)
			it, found, err := c.db.kv.Get(ctx, key)
			if err != nil {
				return nil, nil, err
			}
			if found && string(it.Value) == id { // else not written yet (a build) or not ours
				ifs = append(ifs, fsm.Compare{Kind: fsm.CompareValue, Key: key, Value: []byte(id)})
				ops = append(ops, fsm.Delete(key))
			}
		}
	}
	return ops, ifs, nil
}
