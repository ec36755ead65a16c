package docstore

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/cairndb/cairn/docstore/keyenc"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/internal/keys"
	"github.com/cairndb/cairn/ring"
)

// HintScan forces a query to scan the collection (Query.Hint).
const HintScan = "_scan"

// HintSortPrefix, followed by an index name, forces a query to read that
// index in order for its sort (Query.Hint): "_sort:by_age".
const HintSortPrefix = "_sort:"

// access is how a query finds its candidate documents: a scan of the
// collection, or scans of key ranges of one index (whose documents are
// then read and filtered: an index only narrows the candidates, so every
// plan returns the same documents).
type access struct {
	index  *IndexSpec
	ranges [][2][]byte
	kind   string // "full_scan", "intersection", or the condition used: "eq", "in", "range", "prefix"
	// and, for an intersection, holds single-index accesses on different
	// fields: the candidates are the documents every one of them names.
	// Each names every document that meets its conjunct of the filter, so
	// the intersection still names every match.
	and []access
	// limit is, for a "sort" access (the whole index read in order for the
	// query's first sort key), the documents a page needs; reverse reads
	// it backwards, for a descending sort.
	limit   int
	reverse bool
}

// indexed reports whether a reads documents by index entries.
func (a access) indexed() bool { return a.index != nil || len(a.and) > 0 }

// condRank orders the conditions an index can serve, most selective first.
var condRank = map[string]int{"eq": 0, "in": 1, "prefix": 2, "range": 3}

// accesses returns every access that can answer filter: a scan of the
// collection, and each ready index that serves a condition of it (hint:
// HintScan or an index name keeps only that one; "" keeps all).
//
// Intersections of two indexes on different fields are offered too; a hint
// naming several indexes, comma-separated, keeps only their intersection.
//
// A query with a limit (below MaxLimit) sorted first by an indexed field
// may also read that whole index in order (backwards for a descending
// sort) and stop once no document left can sort into the page (a "sort"
// access).
func accesses(coll string, f *Filter, indexes []IndexSpec, hint string, specs []sortSpec, limit int) ([]access, error) {
	full := access{kind: "full_scan"}
	if hint == HintScan {
		return []access{full}, nil
	}
	var sorted []access
	if len(specs) > 0 {
		for i := range indexes {
			idx := &indexes[i]
			if idx.State == StateReady && idx.Fields[0] == strings.Join(specs[0].path, ".") {
				prefix := indexPrefix(coll, idx.Name)
				sorted = append(sorted, access{index: idx, kind: "sort", ranges: [][2][]byte{{prefix, keys.PrefixEnd(prefix)}}, limit: max(limit, 1),
					reverse: specs[0].desc})
			}
		}
	}
	if name, ok := strings.CutPrefix(hint, HintSortPrefix); ok {
		for _, a := range sorted {
			if a.index.Name == name {
				return []access{a}, nil
			}
		}
		return nil, fmt.Errorf("%w: index %q is not ready or does not lead with the first sort key", fsm.ErrInvalid, name)
	}
	if limit >= MaxLimit {
		sorted = nil // every document is read anyway: a scan does it cheaper
	}
	names := strings.Split(hint, ",")
	wanted := func(name string) bool { return hint == "" || slices.Contains(names, name) }
	var single []access
	for i := range indexes {
		idx := &indexes[i]
		if idx.State != StateReady || !wanted(idx.Name) {
			continue
		}
		if a, ok := indexAccess(coll, f, idx); ok {
			single = append(single, a)
		}
	}
	var out []access
	switch {
	case hint == "":
		out = append(out, single...)
		for i := range single {
			for j := i + 1; j < len(single); j++ {
				if single[i].index.Fields[0] != single[j].index.Fields[0] {
					out = append(out, access{kind: "intersection", and: []access{single[i], single[j]}})
				}
			}
		}
		out = append(out, sorted...)
		out = append(out, full)
	case len(names) == 1 && len(single) == 1:
		out = single
	case len(names) > 1 && len(single) == len(names) && distinctFirstFields(single):
		out = []access{{kind: "intersection", and: single}}
	default:
		return nil, fmt.Errorf("%w: index %q is not ready or cannot serve this filter (an intersection needs indexes on different fields, each serving a condition)", fsm.ErrInvalid, hint)
	}
	return out, nil
}

func distinctFirstFields(as []access) bool {
	seen := map[string]bool{}
	for _, a := range as {
		if seen[a.index.Fields[0]] {
			return false
		}
		seen[a.index.Fields[0]] = true
	}
	return true
}

// indexAccess finds conditions on idx's first field among the filter's
// top-level conjuncts and turns the best into key ranges of idx.
func indexAccess(coll string, f *Filter, idx *IndexSpec) (access, bool) {
	conds := []*Filter{f}
	if f.op == "$and" {
		conds = f.subs
	}
	prefix := indexPrefix(coll, idx.Name)
	field := idx.Fields[0]
	var lo, hi *Filter
	var best access
	found := false
	offer := func(a access) {
		if !found || condRank[a.kind] < condRank[best.kind] {
			best, found = a, true
		}
	}
	for _, c := range conds {
		if c.field != field {
			continue
		}
		switch c.op {
		case "$eq":
			offer(access{index: idx, kind: "eq", ranges: [][2][]byte{valueRange(prefix, c.arg)}})
		case "$in":
			a := access{index: idx, kind: "in"}
			for _, v := range c.args {
				a.ranges = append(a.ranges, valueRange(prefix, v))
			}
			if len(a.ranges) > 0 {
				offer(a)
			}
		case "$prefix":
			start := keyenc.AppendStringPrefix(bytes.Clone(prefix), c.arg.(string))
			offer(access{index: idx, kind: "prefix", ranges: [][2][]byte{{start, keys.PrefixEnd(start)}}})
		case "$gt", "$gte":
			if lo == nil {
				lo = c
			}
		case "$lt", "$lte":
			if hi == nil {
				hi = c
			}
		}
	}
	if lo != nil || hi != nil {
		// One bound only: with arrays, a document may meet a lower bound
		// with one element and an upper bound with another, so the two
		// cannot be intersected on the index. Range operators match only
		// values of their argument's type: the other end of the range is
		// the end of that type's encodings.
		c := lo
		if c == nil {
			c = hi
		}
		tlo, thi := keyenc.TypeBounds(c.arg)
		start, end := append(bytes.Clone(prefix), tlo...), append(bytes.Clone(prefix), thi...)
		e, err := keyenc.Append(bytes.Clone(prefix), c.arg)
		if err == nil {
			switch c.op {
			case "$gt":
				start = keys.PrefixEnd(e)
			case "$gte":
				start = e
			case "$lt":
				end = e
			case "$lte":
				end = keys.PrefixEnd(e)
			}
			offer(access{index: idx, kind: "range", ranges: [][2][]byte{{start, end}}})
		}
	}
	return best, found
}

// valueRange is the range of idx entries whose first value is v.
func valueRange(prefix []byte, v any) [2][]byte {
	start, err := keyenc.Append(bytes.Clone(prefix), v)
	if err != nil {
		return [2][]byte{prefix, prefix} // an unencodable value matches nothing
	}
	return [2][]byte{start, keys.PrefixEnd(start)}
}

// candidateIDs scans a's ranges and returns the _ids found, each once, in
// the order first seen; for an intersection, those every part found.
func (c *Collection) candidateIDs(ctx context.Context, a access) ([]string, error) {
	if len(a.and) > 0 {
		ids, err := c.candidateIDs(ctx, a.and[0])
		for _, part := range a.and[1:] {
			if err != nil || len(ids) == 0 {
				break
			}
			var more []string
			if more, err = c.candidateIDs(ctx, part); err == nil {
				in := make(map[string]bool, len(more))
				for _, id := range more {
					in[id] = true
				}
				ids = slices.DeleteFunc(ids, func(id string) bool { return !in[id] })
			}
		}
		return ids, err
	}
	seen := map[string]bool{}
	var ids []string
	for _, r := range a.ranges {
		err := c.db.scanRange(ctx, r[0], r[1], func(it fsm.Item) error {
			var err error
			ids, err = appendNewID(ids, seen, it.Key)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// appendNewID appends the _id an index entry's key ends with (its routing
// tag) to ids, unless seen already has it.
func appendNewID(ids []string, seen map[string]bool, key []byte) ([]string, error) {
	v, _, err := keyenc.Decode(ring.RouteKey(key))
	id, ok := v.(string)
	if err != nil || !ok {
		return ids, fmt.Errorf("docstore: index entry %q without an _id", key)
	}
	if !seen[id] {
		seen[id] = true
		ids = append(ids, id)
	}
	return ids, nil
}

func (a access) String() string {
	if len(a.and) > 0 {
		parts := make([]string, len(a.and))
		for i, p := range a.and {
			parts[i] = p.String()
		}
		return "intersection of " + strings.Join(parts, " and ")
	}
	if a.index == nil {
		return "full_scan"
	}
	if a.kind == "sort" && a.reverse {
		return fmt.Sprintf("index %s read in reverse order (sort on -%s)", a.index.Name, a.index.Fields[0])
	}
	if a.kind == "sort" {
		return fmt.Sprintf("index %s read in order (sort on %s)", a.index.Name, a.index.Fields[0])
	}
	return fmt.Sprintf("index %s (%s on %s, %d range(s))", a.index.Name, a.kind, strings.Join(a.index.Fields, ","), len(a.ranges))
}
