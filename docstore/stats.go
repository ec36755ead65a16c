package docstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/cairndb/cairn/docstore/keyenc"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/internal/keys"
	"github.com/cairndb/cairn/ring"
)

// Statistics of a collection, refreshed by Analyze and kept in one record
// (placed by the collection's name):
//
//	statistics  0x00 'a' <tag: collection>
//
// The planner estimates how many documents each way of answering a query
// reads from them, and picks the cheapest.
const kindStats = 'a'

// Stats describes a collection as of its last Analyze.
type Stats struct {
	AnalyzedAt string `json:"analyzed_at"`
	Docs       int64  `json:"docs"`
	// ShardDocs: documents per shard, by the shard's routing tag (as a
	// string), for per-shard estimates.
	ShardDocs map[string]int64     `json:"shard_docs"`
	Indexes   map[string]IndexStat `json:"indexes"`
}

// IndexStat describes one index: its entries, the distinct values of its
// first field, and the first-field values at evenly spaced ranks of the
// entries (a histogram of equal-height buckets), as keyenc encodings.
type IndexStat struct {
	Entries  int64    `json:"entries"`
	Distinct int64    `json:"distinct"`
	Bounds   [][]byte `json:"bounds"`
}

// statBuckets is how many equal-height buckets Analyze keeps per index.
const statBuckets = 32

func statsKey(coll string) []byte {
	return ring.AppendRouted([]byte{ring.RoutedPrefix, kindStats}, encString(coll))
}

// Analyze reads the collection and its ready indexes and stores their
// statistics (documents, per shard; per index entries, distinct first
// values and a histogram of them).
func (c *Collection) Analyze(ctx context.Context) (Stats, error) {
	if err := CheckName(c.name); err != nil {
		return Stats{}, err
	}
	st := Stats{AnalyzedAt: c.db.opts.Now().UTC().Format(time.RFC3339Nano), ShardDocs: map[string]int64{}, Indexes: map[string]IndexStat{}}
	err := c.visitAll(ctx, func(it fsm.Item) error {
		st.Docs++
		tag, err := c.db.kv.ShardTag(ctx, it.Key)
		if err != nil {
			return err
		}
		st.ShardDocs[string(tag)]++
		return nil
	})
	if err != nil {
		return Stats{}, err
	}
	indexes, err := c.Indexes(ctx)
	if err != nil {
		return Stats{}, err
	}
	for _, idx := range indexes {
		if idx.State != StateReady {
			continue
		}
		prefix := indexPrefix(c.name, idx.Name)
		var firsts [][]byte // the first field's encoding of every entry, in key order
		err := c.db.scanRange(ctx, prefix, keys.PrefixEnd(prefix), func(it fsm.Item) error {
			rest := it.Key[len(prefix):]
			_, tail, err := keyenc.Decode(rest)
			if err != nil {
				return fmt.Errorf("docstore: index entry %q: %w", it.Key, err)
			}
			firsts = append(firsts, bytes.Clone(rest[:len(rest)-len(tail)]))
			return nil
		})
		if err != nil {
			return Stats{}, err
		}
		is := IndexStat{Entries: int64(len(firsts))}
		for i, f := range firsts {
			if i == 0 || !bytes.Equal(f, firsts[i-1]) {
				is.Distinct++
			}
		}
		for b := 1; b <= statBuckets && len(firsts) > 0; b++ {
			is.Bounds = append(is.Bounds, firsts[min(len(firsts)-1, b*len(firsts)/statBuckets)])
		}
		st.Indexes[idx.Name] = is
	}
	val, err := json.Marshal(st)
	if err != nil {
		return Stats{}, err
	}
	if _, _, err := c.db.kv.Transact(ctx, nil, []fsm.Op{fsm.Put(statsKey(c.name), val)}); err != nil {
		return Stats{}, err
	}
	return st, nil
}

// stats returns the last Analyze's statistics (found false if none).
func (c *Collection) stats(ctx context.Context) (Stats, bool, error) {
	it, found, err := c.db.kv.Get(ctx, statsKey(c.name))
	if err != nil || !found {
		return Stats{}, false, err
	}
	var st Stats
	if err := json.Unmarshal(it.Value, &st); err != nil {
		return Stats{}, false, fmt.Errorf("docstore: statistics of %s: %w", c.name, err)
	}
	return st, true, nil
}

// estimate returns how many documents a reads, by the statistics. An
// intersection reads the documents all its parts name: the parts are taken
// as independent, so their shares of the collection multiply.
func estimate(coll string, a access, st Stats) float64 {
	if len(a.and) > 0 {
		rows := float64(st.Docs)
		for _, p := range a.and {
			rows *= math.Min(1, estimate(coll, p, st)/math.Max(1, float64(st.Docs)))
		}
		return rows
	}
	if a.index == nil {
		return float64(st.Docs)
	}
	is, ok := st.Indexes[a.index.Name]
	if !ok || is.Entries == 0 {
		return 0
	}
	// Entries per document (arrays make several).
	perDoc := math.Max(1, float64(is.Entries)/math.Max(1, float64(st.Docs)))
	switch a.kind {
	case "eq", "in":
		return float64(len(a.ranges)) * float64(is.Entries) / math.Max(1, float64(is.Distinct)) / perDoc
	}
	// A range: the share of the histogram's bounds inside it, at least
	// half a bucket (a range between two bounds still holds rows).
	prefix := indexPrefix(coll, a.index.Name)
	in := 0.5
	for _, b := range is.Bounds {
		k := append(bytes.Clone(prefix), b...)
		for _, r := range a.ranges {
			if bytes.Compare(k, r[0]) >= 0 && (r[1] == nil || bytes.Compare(k, r[1]) < 0) {
				in++
				break
			}
		}
	}
	frac := math.Min(1, in/float64(max(1, len(is.Bounds))))
	return frac * float64(is.Entries) / perDoc
}

// Costs, relative to reading one document in a scan of the collection:
// reading an index entry, and reading a document an index named (a point
// read of its own).
const (
	costEntry = 0.2
	costFetch = 3.0
)

func cost(coll string, a access, rows float64, st Stats) float64 {
	if len(a.and) > 0 {
		// Every part's entries are read; only the documents all of them
		// name are fetched.
		c := rows * costFetch
		for _, p := range a.and {
			c += estimate(coll, p, st) * costEntry
		}
		return c
	}
	if a.index == nil {
		return float64(st.Docs)
	}
	return rows * (costEntry + costFetch)
}

// Plan is one way to answer a query, with the planner's estimates.
type Plan struct {
	Access        string  `json:"access"`              // "full_scan", "index", "intersection" or "sort_index"
	Index         string  `json:"index,omitempty"`     // an intersection's indexes, comma-separated
	Condition     string  `json:"condition,omitempty"` // eq, in, prefix, range (one per index of an intersection)
	Ranges        int     `json:"ranges,omitempty"`
	Reverse       bool    `json:"reverse,omitempty"` // a sort_index read backwards (a descending sort)
	EstimatedRows float64 `json:"estimated_rows"`
	Cost          float64 `json:"cost"`
}

func planOf(a access, rows, c float64) Plan {
	p := Plan{Access: "full_scan", EstimatedRows: math.Round(rows*10) / 10, Cost: math.Round(c*10) / 10}
	if len(a.and) > 0 {
		var names, conds []string
		for _, part := range a.and {
			names, conds = append(names, part.index.Name), append(conds, part.kind)
			p.Ranges += len(part.ranges)
		}
		p.Access, p.Index, p.Condition = "intersection", strings.Join(names, ","), strings.Join(conds, ",")
	}
	if a.kind == "sort" {
		p.Access, p.Index, p.Reverse = "sort_index", a.index.Name, a.reverse
	} else if a.index != nil {
		p.Access, p.Index, p.Condition, p.Ranges = "index", a.index.Name, a.kind, len(a.ranges)
	}
	return p
}

// candidate is one way to answer a query and its estimates.
type candidate struct {
	a    access
	plan Plan
}

// rankPlans orders the candidate accesses, cheapest first: by estimated
// cost with statistics; without, by the fixed rule (any index that serves
// the filter before a scan, the most selective condition first).
//
// A sort access reads the index in order until the page is full: about
// (limit+1) / s documents, where s is the share of documents the filter
// keeps, taken from the most selective other plan (a filter no index
// serves is guessed to keep half, an empty one all).
func rankPlans(coll string, cands []access, st Stats, haveStats, filtered bool) []candidate {
	out := make([]candidate, len(cands))
	share := 1.0
	if haveStats {
		best := float64(st.Docs)
		for _, a := range cands {
			if a.kind != "sort" {
				best = math.Min(best, estimate(coll, a, st))
			}
		}
		share = best / math.Max(1, float64(st.Docs))
		if filtered && best >= float64(st.Docs) {
			share = 0.5
		}
	}
	for i, a := range cands {
		var rows, c float64
		if haveStats {
			if a.kind == "sort" {
				rows = math.Min(float64(st.Docs), float64(a.limit+1)/math.Max(share, 1e-9))
			} else {
				rows = estimate(coll, a, st)
			}
			c = cost(coll, a, rows, st)
		}
		out[i] = candidate{a, planOf(a, rows, c)}
	}
	ruleRank := func(a access) int {
		switch {
		case len(a.and) > 0:
			return len(condRank) // after any single index, before a scan
		case a.kind == "sort":
			return len(condRank) + 1
		case a.index == nil:
			return len(condRank) + 2
		}
		return condRank[a.kind]
	}
	slices.SortStableFunc(out, func(x, y candidate) int {
		if !haveStats {
			return ruleRank(x.a) - ruleRank(y.a)
		}
		switch {
		case x.plan.Cost < y.plan.Cost:
			return -1
		case x.plan.Cost > y.plan.Cost:
			return 1
		}
		return 0
	})
	return out
}
