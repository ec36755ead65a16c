package docstore

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/cairndb/cairn/docstore/keyenc"
	"github.com/cairndb/cairn/fsm"
)

// Filter is a parsed query filter: a tree of conditions on dotted paths.
//
//	{"age": {"$gte": 21}, "name": "ann"}          both hold (a bare value is $eq)
//	{"$or": [{"a": 1}, {"b": {"$exists": false}}]}
//
// Operators: $eq $ne $gt $gte $lt $lte $in $nin $exists $prefix, $and and
// $or over lists of filters. A path goes into objects and through arrays
// of objects ("tags.name" reaches the name of every element of tags), and
// a condition on an array holds if it holds for the array itself or for
// one of its elements. Values compare as keyenc orders them (numbers by
// value); $gt, $gte, $lt and $lte compare only values of the same type
// (a number is never greater than a string). {"a": null} also matches
// documents without a; $ne and $nin are the negations of $eq and $in.
type Filter struct {
	op    string // "$and", "$or", or a field operator
	path  []string
	arg   any
	args  []any     // $in, $nin
	subs  []*Filter // $and, $or
	field string    // the dotted path as written
}

// ParseFilter parses a filter decoded from JSON (nil or {}: everything).
func ParseFilter(v any) (*Filter, error) {
	if v == nil {
		return &Filter{op: "$and"}, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: a filter is a JSON object", fsm.ErrInvalid)
	}
	and := &Filter{op: "$and"}
	for _, k := range sortedKeys(m) {
		val := m[k]
		switch {
		case k == "$and" || k == "$or":
			list, ok := val.([]any)
			if !ok || len(list) == 0 {
				return nil, fmt.Errorf("%w: %s takes a non-empty list of filters", fsm.ErrInvalid, k)
			}
			f := &Filter{op: k}
			for _, e := range list {
				sub, err := ParseFilter(e)
				if err != nil {
					return nil, err
				}
				f.subs = append(f.subs, sub)
			}
			and.subs = append(and.subs, f)
		case strings.HasPrefix(k, "$"):
			return nil, fmt.Errorf("%w: unknown top-level operator %s", fsm.ErrInvalid, k)
		default:
			conds, err := parseField(k, val)
			if err != nil {
				return nil, err
			}
			and.subs = append(and.subs, conds...)
		}
	}
	if len(and.subs) == 1 {
		return and.subs[0], nil
	}
	return and, nil
}

func parseField(field string, val any) ([]*Filter, error) {
	if field == "" || strings.HasPrefix(field, ".") || strings.HasSuffix(field, ".") || strings.Contains(field, "..") {
		return nil, fmt.Errorf("%w: bad field path %q", fsm.ErrInvalid, field)
	}
	path := strings.Split(field, ".")
	ops, isOps := val.(map[string]any)
	if isOps {
		for k := range ops {
			if !strings.HasPrefix(k, "$") {
				isOps = false // an object value to compare with
				break
			}
		}
	}
	if !isOps || len(ops) == 0 {
		return []*Filter{{op: "$eq", path: path, arg: val, field: field}}, nil
	}
	var out []*Filter
	for _, op := range sortedKeys(ops) {
		arg := ops[op]
		f := &Filter{op: op, path: path, arg: arg, field: field}
		switch op {
		case "$eq", "$ne", "$gt", "$gte", "$lt", "$lte":
			if _, err := keyenc.Encode(arg); err != nil {
				return nil, fmt.Errorf("%w: %s %s: %v", fsm.ErrInvalid, field, op, err)
			}
		case "$in", "$nin":
			list, ok := arg.([]any)
			if !ok {
				return nil, fmt.Errorf("%w: %s %s takes a list", fsm.ErrInvalid, field, op)
			}
			f.args = list
		case "$exists":
			if _, ok := arg.(bool); !ok {
				return nil, fmt.Errorf("%w: %s $exists takes true or false", fsm.ErrInvalid, field)
			}
		case "$prefix":
			if _, ok := arg.(string); !ok {
				return nil, fmt.Errorf("%w: %s $prefix takes a string", fsm.ErrInvalid, field)
			}
		default:
			return nil, fmt.Errorf("%w: unknown operator %s on %s", fsm.ErrInvalid, op, field)
		}
		out = append(out, f)
	}
	return out, nil
}

// Match reports whether d satisfies f.
func (f *Filter) Match(d Doc) bool {
	switch f.op {
	case "$and":
		for _, s := range f.subs {
			if !s.Match(d) {
				return false
			}
		}
		return true
	case "$or":
		for _, s := range f.subs {
			if s.Match(d) {
				return true
			}
		}
		return false
	}
	vals := resolve(map[string]any(d), f.path)
	switch f.op {
	case "$exists":
		return (len(vals) > 0) == f.arg.(bool)
	case "$eq":
		return eqAny(vals, f.arg)
	case "$ne":
		return !eqAny(vals, f.arg)
	case "$in":
		for _, a := range f.args {
			if eqAny(vals, a) {
				return true
			}
		}
		return false
	case "$nin":
		for _, a := range f.args {
			if eqAny(vals, a) {
				return false
			}
		}
		return true
	}
	for _, v := range candidates(vals) {
		if f.holds(v) {
			return true
		}
	}
	return false
}

// holds evaluates a range or prefix operator on one value.
func (f *Filter) holds(v any) bool {
	if f.op == "$prefix" {
		s, ok := v.(string)
		return ok && strings.HasPrefix(s, f.arg.(string))
	}
	if typeRank(v) != typeRank(f.arg) {
		return false
	}
	c := keyenc.Compare(v, f.arg)
	switch f.op {
	case "$gt":
		return c > 0
	case "$gte":
		return c >= 0
	case "$lt":
		return c < 0
	case "$lte":
		return c <= 0
	}
	return false
}

// eqAny: some candidate equals want; null also matches a missing field.
func eqAny(vals []any, want any) bool {
	if want == nil && len(vals) == 0 {
		return true
	}
	for _, v := range candidates(vals) {
		if keyenc.Compare(v, want) == 0 {
			return true
		}
	}
	return false
}

// candidates are the values a condition is tried on: each value, and the
// elements of each array value.
func candidates(vals []any) []any {
	out := make([]any, 0, len(vals))
	for _, v := range vals {
		out = append(out, v)
		if a, ok := v.([]any); ok {
			out = append(out, a...)
		}
	}
	return out
}

// resolve returns the values at path in v: through objects, and through
// arrays into their object elements.
func resolve(v any, path []string) []any {
	if len(path) == 0 {
		return []any{v}
	}
	switch x := v.(type) {
	case map[string]any:
		next, ok := x[path[0]]
		if !ok {
			return nil
		}
		return resolve(next, path[1:])
	case []any:
		var out []any
		for _, e := range x {
			if _, ok := e.(map[string]any); ok {
				out = append(out, resolve(e, path)...)
			}
		}
		return out
	}
	return nil
}

// typeRank groups values into the types that range operators compare
// within: null, booleans, numbers, strings, arrays, objects.
func typeRank(v any) int {
	switch v.(type) {
	case nil:
		return 0
	case bool:
		return 1
	case json.Number, float64, int, int64:
		return 2
	case string:
		return 3
	case []any:
		return 4
	case map[string]any:
		return 5
	}
	return -1
}

func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

// sortSpec is one key of a sort: a dotted path, descending if it was
// written with a leading '-'.
type sortSpec struct {
	path []string
	desc bool
}

func parseSort(fields []string) ([]sortSpec, error) {
	var out []sortSpec
	for _, f := range fields {
		s := sortSpec{}
		if strings.HasPrefix(f, "-") {
			s.desc, f = true, f[1:]
		}
		if f == "" || strings.HasPrefix(f, ".") || strings.HasSuffix(f, ".") || strings.Contains(f, "..") {
			return nil, fmt.Errorf("%w: bad sort field %q", fsm.ErrInvalid, f)
		}
		s.path = strings.Split(f, ".")
		out = append(out, s)
	}
	return out, nil
}

// sortValue is the value a document sorts by on one key: the field's
// value, the smallest element for an array (the largest when descending),
// null when missing.
func sortValue(d Doc, s sortSpec) any {
	vals := resolve(map[string]any(d), s.path)
	if len(vals) == 0 {
		return nil
	}
	var best any
	first := true
	for _, v := range vals {
		cands := []any{v}
		if a, ok := v.([]any); ok && len(a) > 0 {
			cands = a
		}
		for _, c := range cands {
			if first || (keyenc.Compare(c, best) < 0) != s.desc {
				best, first = c, false
			}
		}
	}
	return best
}

// project keeps only the given dotted paths of d (and the managed fields).
func project(d Doc, fields [][]string) Doc {
	if len(fields) == 0 {
		return d
	}
	out := Doc{}
	for _, k := range []string{FieldID, FieldVersion, FieldCreatedAt, FieldUpdatedAt} {
		if v, ok := d[k]; ok {
			out[k] = v
		}
	}
	for _, p := range fields {
		copyPath(map[string]any(out), map[string]any(d), p)
	}
	return out
}

// copyPath copies the value at path from src into dst, creating the
// objects on the way (arrays are copied whole at the first step into one).
func copyPath(dst, src map[string]any, path []string) {
	v, ok := src[path[0]]
	if !ok {
		return
	}
	if len(path) == 1 {
		dst[path[0]] = v
		return
	}
	sub, ok := v.(map[string]any)
	if !ok {
		if _, isArray := v.([]any); isArray {
			dst[path[0]] = v
		}
		return
	}
	d, ok := dst[path[0]].(map[string]any)
	if !ok {
		d = map[string]any{}
		dst[path[0]] = d
	}
	copyPath(d, sub, path[1:])
}
