// Package docstore keeps collections of JSON documents on top of the
// sharded key-value store: each document is one key, placed by its _id,
// written by one-shard compare-and-write transactions, and queried by
// filters (see Filter).
//
// Built so far: collections (created by their first insert, listed,
// dropped), insert (one or many), get, replace, RFC 7386 merge-patch and
// delete with optional version conditions, managed fields, secondary
// indexes kept on each document's shard and built online (index.go), and
// queries with filters, sort, limit, cursor and projection, served by an
// index when one fits the filter (plan.go). Not built yet: unique
// indexes, statistics, a cost-based planner and explain.
package docstore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/cairndb/cairn/docstore/keyenc"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/internal/keys"
	"github.com/cairndb/cairn/internal/par"
	"github.com/cairndb/cairn/ring"
)

// Errors, besides fsm.ErrInvalid, fsm.ErrTooLarge, fsm.ErrNotFound and
// fsm.ErrVersionMismatch (which the errors returned here wrap):
// ErrExists, an insert of an _id that is taken, and ErrUniqueViolation.
var ErrExists = errors.New("docstore: a document with this _id exists")

// KV is what the store needs from the node it runs in. Reads are
// linearizable.
type KV interface {
	// Get returns key's item (found false when absent).
	Get(ctx context.Context, key []byte) (fsm.Item, bool, error)
	// Scan returns up to limit keys of [start, end) after the key after
	// (nil: from start), in key order across shards, and whether more
	// may follow. With reverse, the keys come in descending order, from
	// end down, and after continues below the key it names.
	Scan(ctx context.Context, start, end, after []byte, limit int, reverse bool) ([]fsm.Item, bool, error)
	// Transact applies then atomically if every comparison holds; it
	// reports whether they did.
	Transact(ctx context.Context, ifs []fsm.Compare, then []fsm.Op) (succeeded bool, results []fsm.OpResult, err error)
	// ShardTag returns the routing tag of the shard that holds key: one
	// tag per shard, the same for every key there.
	ShardTag(ctx context.Context, key []byte) ([]byte, error)
	// ShardTags returns every shard's tag.
	ShardTags(ctx context.Context) ([][]byte, error)
}

// ReadSessioner is a KV that can let the reads of one query share their
// freshness: ReadSession returns a context under which each read still
// reflects every write acknowledged before the query began, but several
// reads of one shard need not each confirm it anew. A query promises no
// single point in time across its reads anyway; each document it returns
// was read, and checked against the filter, at a moment within the query.
type ReadSessioner interface {
	ReadSession(ctx context.Context) context.Context
}

// ManyGetter is a KV that reads many keys at once as it sees fit (found
// false for an absent key); a KV without it has them read in parallel.
type ManyGetter interface {
	GetMany(ctx context.Context, keys [][]byte) (items []fsm.Item, found []bool, err error)
}

// Options configure a DB.
type Options struct {
	// MaxDocSize bounds a stored document (its JSON), default 1 MiB.
	MaxDocSize int
	// Now stamps _created_at and _updated_at (default time.Now).
	Now func() time.Time
}

// DB is the document store of one node. It is safe for concurrent use.
type DB struct {
	kv   KV
	opts Options

	mu       sync.Mutex
	known    map[string]bool // collections this node saw in the catalog
	building map[string]bool // "collection/index" builds running here
	schemas  schemas
}

// New returns the document store over kv.
func New(kv KV, opts Options) *DB {
	if opts.MaxDocSize <= 0 {
		opts.MaxDocSize = 1 << 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &DB{kv: kv, opts: opts, known: map[string]bool{}, building: map[string]bool{}, schemas: schemas{m: map[string]schema{}}}
}

// Collection returns the collection called name (which need not exist
// yet: the first insert creates it).
func (db *DB) Collection(name string) *Collection { return &Collection{db: db, name: name} }

// Collections lists the collections in name order.
func (db *DB) Collections(ctx context.Context) ([]string, error) {
	start, end := catalogRange()
	var names []string
	err := db.scanRange(ctx, start, end, func(it fsm.Item) error {
		var c catalogEntry
		if err := json.Unmarshal(it.Value, &c); err != nil {
			return fmt.Errorf("docstore: catalog entry %q: %w", it.Key, err)
		}
		names = append(names, c.Name)
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// scanRange calls fn for every key of [start, end), page by page.
func (db *DB) scanRange(ctx context.Context, start, end []byte, fn func(fsm.Item) error) error {
	var after []byte
	for {
		items, more, err := db.kv.Scan(ctx, start, end, after, 1000, false)
		if err != nil {
			return err
		}
		for _, it := range items {
			if err := fn(it); err != nil {
				return err
			}
		}
		if !more || len(items) == 0 {
			return nil
		}
		after = items[len(items)-1].Key
	}
}

// forEach runs fn(0) … fn(n-1), at most 32 at once, and joins their
// errors.
func forEach(n int, fn func(i int) error) error { return par.ForEach(n, 32, fn) }

// catalogEntry is a collection's record.
type catalogEntry struct {
	Name      string `json:"name"`
	CreatedAt string `json:"created_at"`
}

// ensure creates coll's catalog entry if it has none. A node remembers
// the collections it saw, so only its first insert into one pays for the
// check (a drop elsewhere is then noticed only by Collections' readers:
// an insert racing a drop may leave documents in a collection that is not
// listed until the next node's first insert recreates its entry).
func (db *DB) ensure(ctx context.Context, coll string) error {
	db.mu.Lock()
	known := db.known[coll]
	db.mu.Unlock()
	if known {
		return nil
	}
	key := catalogKey(coll)
	val, _ := json.Marshal(catalogEntry{Name: coll, CreatedAt: db.opts.Now().UTC().Format(time.RFC3339Nano)})
	if _, _, err := db.kv.Transact(ctx, []fsm.Compare{{Kind: fsm.CompareAbsent, Key: key}}, []fsm.Op{fsm.Put(key, val)}); err != nil {
		return err
	}
	db.mu.Lock()
	db.known[coll] = true
	db.mu.Unlock()
	return nil
}

// Collection is a named set of documents.
type Collection struct {
	db   *DB
	name string
}

// Name returns the collection's name.
func (c *Collection) Name() string { return c.name }

// Drop deletes the collection's documents, indexes and catalog entry. It
// is not atomic with writes running at the same time: an insert that
// races it may survive.
func (c *Collection) Drop(ctx context.Context) error {
	if err := CheckName(c.name); err != nil {
		return err
	}
	c.db.mu.Lock()
	delete(c.db.known, c.name)
	c.db.mu.Unlock()
	coll := encString(c.name)
	for _, kind := range []byte{kindDoc, kindIndex, kindUnique, kindSchema} {
		if err := c.deleteRange(ctx, append([]byte{ring.RoutedPrefix, kind}, coll...)); err != nil {
			return err
		}
		c.db.schemas.mu.Lock()
		clear(c.db.schemas.m)
		c.db.schemas.mu.Unlock()
	}
	key := catalogKey(c.name)
	if _, _, err := c.db.kv.Transact(ctx, nil, []fsm.Op{fsm.Delete(key)}); err != nil {
		return err
	}
	return nil
}

// Insert adds d, with d's _id if it has one (else a generated one), and
// returns the _id and the version. ErrExists if the _id is taken.
func (c *Collection) Insert(ctx context.Context, d Doc) (id string, version uint64, err error) {
	if err := CheckName(c.name); err != nil {
		return "", 0, err
	}
	now := c.db.opts.Now()
	if id, err = idOf(d); err != nil {
		return "", 0, err
	}
	if id == "" {
		id = newID(now)
	}
	val, err := c.encode(d, id, now, now)
	if err != nil {
		return "", 0, err
	}
	if err := c.db.ensure(ctx, c.name); err != nil {
		return "", 0, err
	}
	key := docKey(c.name, id)
	next, err := load(val, 0)
	if err != nil {
		return "", 0, err
	}
	for attempt := 0; ; attempt++ {
		sch, err := c.db.schemaFor(ctx, c.name, key)
		if err != nil {
			return "", 0, err
		}
		ops, err := writeOps(c.name, id, sch, key, val, nil, next)
		if err != nil {
			return "", 0, err
		}
		uops, uifs, err := c.uniqueOps(ctx, sch, id, nil, next, "")
		if err != nil {
			return "", 0, err
		}
		ok, res, err := c.db.kv.Transact(ctx, append([]fsm.Compare{{Kind: fsm.CompareAbsent, Key: key}, sch.compare()}, uifs...), append(ops, uops...))
		switch {
		case err != nil:
			return "", 0, err
		case ok:
			return id, res[0].Version, nil
		}
		// The _id is taken, or the schema or a unique value moved: look.
		if _, found, err := c.db.kv.Get(ctx, key); err != nil {
			return "", 0, err
		} else if found {
			return "", 0, fmt.Errorf("%w: %s/%s", ErrExists, c.name, id)
		}
		c.db.forgetSchema(sch.key)
		if attempt > 20 {
			return "", 0, fmt.Errorf("%w: inserting %s/%s kept losing races", fsm.ErrConflict, c.name, id)
		}
	}
}

// InsertResult is one document's outcome in InsertMany.
type InsertResult struct {
	ID      string
	Version uint64
	Err     error
}

// InsertMany inserts docs concurrently, each on its own (each is atomic,
// the batch is not), and returns their outcomes in order.
func (c *Collection) InsertMany(ctx context.Context, docs []Doc) []InsertResult {
	out := make([]InsertResult, len(docs))
	_ = forEach(len(docs), func(i int) error {
		out[i].ID, out[i].Version, out[i].Err = c.Insert(ctx, docs[i])
		return nil // each outcome is reported on its own
	})
	return out
}

func (c *Collection) encode(d Doc, id string, created, updated time.Time) ([]byte, error) {
	val, err := stored(d, id, created, updated)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", fsm.ErrInvalid, err)
	}
	if len(val) > c.db.opts.MaxDocSize {
		return nil, fmt.Errorf("%w: document of %d bytes, limit %d", fsm.ErrTooLarge, len(val), c.db.opts.MaxDocSize)
	}
	return val, nil
}

// Get returns the document with the given _id (fsm.ErrNotFound if none).
func (c *Collection) Get(ctx context.Context, id string) (Doc, error) {
	if err := c.check(id); err != nil {
		return nil, err
	}
	it, found, err := c.db.kv.Get(ctx, docKey(c.name, id))
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("%w: %s/%s", fsm.ErrNotFound, c.name, id)
	}
	return load(it.Value, it.Version)
}

func (c *Collection) check(id string) error {
	if err := CheckName(c.name); err != nil {
		return err
	}
	return CheckID(id)
}

// Replace replaces the document with d (its _id, if d has one, must be
// id). With ifVersion, only if the document is at that version
// (fsm.ErrVersionMismatch otherwise). It returns the new version.
func (c *Collection) Replace(ctx context.Context, id string, d Doc, ifVersion *uint64) (uint64, error) {
	return c.update(ctx, id, ifVersion, func(Doc) (Doc, error) { return d, nil })
}

// Patch applies an RFC 7386 merge patch to the document (managed fields
// cannot be patched; _id not changed). With ifVersion, only at that
// version. It returns the new version.
func (c *Collection) Patch(ctx context.Context, id string, patch Doc, ifVersion *uint64) (uint64, error) {
	return c.update(ctx, id, ifVersion, func(cur Doc) (Doc, error) {
		merged, _ := mergePatch(map[string]any(cur), map[string]any(patch)).(map[string]any)
		return Doc(merged), nil
	})
}

// update reads the document, computes its new form and writes it if the
// document did not change meanwhile (retrying a few times when it did and
// no version was asked for).
func (c *Collection) update(ctx context.Context, id string, ifVersion *uint64, next func(Doc) (Doc, error)) (uint64, error) {
	if err := c.check(id); err != nil {
		return 0, err
	}
	key := docKey(c.name, id)
	for attempt := 0; ; attempt++ {
		it, found, err := c.db.kv.Get(ctx, key)
		if err != nil {
			return 0, err
		}
		if !found {
			return 0, fmt.Errorf("%w: %s/%s", fsm.ErrNotFound, c.name, id)
		}
		if ifVersion != nil && it.Version != *ifVersion {
			return 0, c.mismatch(id, it.Version)
		}
		cur, err := load(it.Value, it.Version)
		if err != nil {
			return 0, err
		}
		d, err := next(cur)
		if err != nil {
			return 0, err
		}
		if given, err := idOf(d); err != nil {
			return 0, err
		} else if given != "" && given != id {
			return 0, fmt.Errorf("%w: the body's _id %q is not the document's %q", fsm.ErrInvalid, given, id)
		}
		val, err := c.encode(d, id, createdAt(cur), c.db.opts.Now())
		if err != nil {
			return 0, err
		}
		next, err := load(val, 0)
		if err != nil {
			return 0, err
		}
		sch, err := c.db.schemaFor(ctx, c.name, key)
		if err != nil {
			return 0, err
		}
		ops, err := writeOps(c.name, id, sch, key, val, cur, next)
		if err != nil {
			return 0, err
		}
		uops, uifs, err := c.uniqueOps(ctx, sch, id, cur, next, "")
		if err != nil {
			return 0, err
		}
		ok, res, err := c.db.kv.Transact(ctx, append([]fsm.Compare{{Kind: fsm.CompareVersion, Key: key, Version: it.Version}, sch.compare()}, uifs...), append(ops, uops...))
		switch {
		case err != nil:
			return 0, err
		case ok:
			return res[0].Version, nil
		case attempt >= 20:
			return 0, fmt.Errorf("%w: %s/%s changed while it was written", fsm.ErrVersionMismatch, c.name, id)
		}
		// The document or the schema moved: read both again (a version
		// asked for is checked against the new read).
		c.db.forgetSchema(sch.key)
	}
}

func (c *Collection) mismatch(id string, current uint64) error {
	return fmt.Errorf("%w: %s/%s is at version %d", fsm.ErrVersionMismatch, c.name, id, current)
}

// Delete removes the document (fsm.ErrNotFound if none); with ifVersion,
// only at that version.
func (c *Collection) Delete(ctx context.Context, id string, ifVersion *uint64) error {
	if err := c.check(id); err != nil {
		return err
	}
	key := docKey(c.name, id)
	for attempt := 0; ; attempt++ {
		it, found, err := c.db.kv.Get(ctx, key)
		switch {
		case err != nil:
			return err
		case !found:
			return fmt.Errorf("%w: %s/%s", fsm.ErrNotFound, c.name, id)
		case ifVersion != nil && it.Version != *ifVersion:
			return c.mismatch(id, it.Version)
		}
		cur, err := load(it.Value, it.Version)
		if err != nil {
			return err
		}
		sch, err := c.db.schemaFor(ctx, c.name, key)
		if err != nil {
			return err
		}
		ops, err := writeOps(c.name, id, sch, key, nil, cur, nil)
		if err != nil {
			return err
		}
		uops, uifs, err := c.uniqueOps(ctx, sch, id, cur, nil, "")
		if err != nil {
			return err
		}
		ok, _, err := c.db.kv.Transact(ctx, append([]fsm.Compare{{Kind: fsm.CompareVersion, Key: key, Version: it.Version}, sch.compare()}, uifs...), append(ops, uops...))
		switch {
		case err != nil:
			return err
		case ok:
			return nil
		case attempt >= 20:
			return fmt.Errorf("%w: %s/%s changed while it was deleted", fsm.ErrVersionMismatch, c.name, id)
		}
		c.db.forgetSchema(sch.key)
	}
}

// Query selects documents: Filter (nil: all), Sort (dotted paths, '-' for
// descending; ties and no sort go by _id), Limit (default and maximum
// 1000), Cursor (from the previous page) and Fields (dotted paths to keep;
// the managed fields always stay).
type Query struct {
	Filter *Filter
	Sort   []string
	Limit  int
	Cursor string
	Fields []string
	// Hint forces the access: HintScan, the name of a ready index (which
	// must serve a condition of the filter), several comma-separated for
	// their intersection (each on a different field), or HintSortPrefix and
	// an index whose first field is the first sort key. Empty: chosen.
	Hint string
}

// MaxLimit bounds a page of results.
const MaxLimit = 1000

// Find returns one page of the documents matching q and a cursor for the
// next page ("" at the end). A ready index on the first field of a
// condition ($eq, $in, $prefix, a range) of the filter's top-level
// conjunction, or two such indexes intersected, narrow the documents read;
// an index on the first sort key may be read in order until the page is
// full; otherwise every page reads the whole collection. Either way each
// document read is checked against the whole filter, so the plan never
// changes the answer.
func (c *Collection) Find(ctx context.Context, q Query) ([]Doc, string, error) {
	return c.find(ctx, q, nil)
}

// Explanation is how a query was answered (Explain): whether statistics
// ranked the plans, the chosen plan and the others with their estimated
// rows and costs, the documents actually read and matched, and per shard
// the estimated against the actual documents read.
type Explanation struct {
	Statistics   bool        `json:"statistics"` // false: ranked by the fixed rule; run Analyze
	AnalyzedAt   string      `json:"analyzed_at,omitempty"`
	Chosen       Plan        `json:"chosen"`
	Alternatives []Plan      `json:"alternatives"`
	ActualRows   int64       `json:"actual_rows"` // documents read
	Matched      int         `json:"matched"`     // of them, those the filter (and cursor) kept
	Returned     int         `json:"returned"`    // on this page
	Shards       []ShardRows `json:"shards"`
}

// ShardRows compares a plan's estimate with what it read on one shard
// (named by its routing tag).
type ShardRows struct {
	Shard     string  `json:"shard"`
	Estimated float64 `json:"estimated_rows"`
	Actual    int64   `json:"actual_rows"`
}

// Explain answers q as Find does and reports how.
func (c *Collection) Explain(ctx context.Context, q Query) (Explanation, error) {
	var ex Explanation
	_, _, err := c.find(ctx, q, &ex)
	return ex, err
}

func (c *Collection) find(ctx context.Context, q Query, ex *Explanation) ([]Doc, string, error) {
	if err := CheckName(c.name); err != nil {
		return nil, "", err
	}
	if rs, ok := c.db.kv.(ReadSessioner); ok {
		ctx = rs.ReadSession(ctx)
	}
	limit := q.Limit
	if limit <= 0 || limit > MaxLimit {
		limit = MaxLimit
	}
	specs, err := parseSort(q.Sort)
	if err != nil {
		return nil, "", err
	}
	var fields [][]string
	for _, f := range q.Fields {
		p, err := parseSort([]string{f})
		if err != nil || p[0].desc {
			return nil, "", fmt.Errorf("%w: bad field %q", fsm.ErrInvalid, f)
		}
		fields = append(fields, p[0].path)
	}
	filter := q.Filter
	if filter == nil {
		filter = &Filter{op: "$and"}
	}
	var after []byte
	if q.Cursor != "" {
		if after, err = base64.RawURLEncoding.DecodeString(q.Cursor); err != nil || len(after) == 0 {
			return nil, "", fmt.Errorf("%w: cursor is not one this API returned", fsm.ErrInvalid)
		}
	}
	type hit struct {
		doc Doc
		pos []byte // sort key: the sort values then _id, keyenc-encoded
	}
	var hits []hit
	read := map[string]int64{} // documents read per shard tag (Explain)
	visit := func(it fsm.Item) error {
		if ex != nil {
			ex.ActualRows++
			tag, err := c.db.kv.ShardTag(ctx, it.Key)
			if err != nil {
				return err
			}
			read[string(tag)]++
		}
		d, err := load(it.Value, it.Version)
		if err != nil {
			return err
		}
		if !filter.Match(d) {
			return nil
		}
		pos, err := sortPosition(d, specs)
		if err != nil {
			return err
		}
		if after == nil || bytes.Compare(pos, after) > 0 {
			hits = append(hits, hit{d, pos})
			if ex != nil {
				ex.Matched++
			}
		}
		return nil
	}
	ranked, haveStats, err := c.plan(ctx, filter, q.Hint, specs, limit)
	if err != nil {
		return nil, "", err
	}
	byPos := func(a, b hit) int { return bytes.Compare(a.pos, b.pos) }
	switch a := ranked[0].a; {
	case a.kind == "sort":
		// Enough once the page and one more document are in hand and the
		// index has moved past the first sort value of that one: every
		// document not yet seen has all its entries further on, and its
		// sort value (its smallest element ascending, its largest
		// descending, or the value itself) is among them.
		enough := func(last []byte) bool {
			if len(hits) <= limit {
				return false
			}
			slices.SortFunc(hits, byPos)
			past := bytes.Compare(firstValue(last), leadingValue(hits[limit].pos, a.reverse))
			return past > 0 && !a.reverse || past < 0 && a.reverse
		}
		// After a cursor, the index is read from the cursor's sort value
		// on: a document that sorts after the cursor has its sort value,
		// one of its entries, there or further on.
		if after != nil {
			a.ranges = [][2][]byte{sortFrom(indexPrefix(c.name, a.index.Name), a.reverse, leadingValue(after, a.reverse))}
		}
		if err := c.visitSorted(ctx, a, visit, enough); err != nil {
			return nil, "", err
		}
	case a.indexed():
		if err := c.visitIndexed(ctx, a, visit); err != nil {
			return nil, "", err
		}
	default:
		if err := c.visitAll(ctx, visit); err != nil {
			return nil, "", err
		}
	}
	slices.SortFunc(hits, byPos)
	cursor := ""
	if len(hits) > limit {
		hits = hits[:limit]
		cursor = base64.RawURLEncoding.EncodeToString(hits[limit-1].pos)
	}
	out := make([]Doc, len(hits))
	for i, h := range hits {
		out[i] = project(h.doc, fields)
	}
	if ex != nil {
		if err := c.explain(ctx, ex, ranked, haveStats, read); err != nil {
			return nil, "", err
		}
		ex.Returned = len(out)
	}
	return out, cursor, nil
}

// explain fills in the plans and the per-shard rows.
func (c *Collection) explain(ctx context.Context, ex *Explanation, ranked []candidate, haveStats bool, read map[string]int64) error {
	ex.Statistics = haveStats
	ex.Chosen = ranked[0].plan
	ex.Alternatives = []Plan{}
	for _, r := range ranked[1:] {
		ex.Alternatives = append(ex.Alternatives, r.plan)
	}
	st, _, err := c.stats(ctx)
	if err != nil {
		return err
	}
	ex.AnalyzedAt = st.AnalyzedAt
	tags, err := c.db.kv.ShardTags(ctx)
	if err != nil {
		return err
	}
	for _, tag := range tags {
		sr := ShardRows{Shard: string(tag), Actual: read[string(tag)]}
		if haveStats && st.Docs > 0 {
			sr.Estimated = math.Round(ex.Chosen.EstimatedRows*float64(st.ShardDocs[string(tag)])/float64(st.Docs)*10) / 10
		}
		ex.Shards = append(ex.Shards, sr)
	}
	return nil
}

// plan returns the ways to answer filter, best first, and whether
// statistics ranked them.
func (c *Collection) plan(ctx context.Context, filter *Filter, hint string, specs []sortSpec, limit int) ([]candidate, bool, error) {
	indexes, err := c.Indexes(ctx)
	if err != nil {
		return nil, false, err
	}
	cands, err := accesses(c.name, filter, indexes, hint, specs, limit)
	if err != nil {
		return nil, false, err
	}
	st, haveStats := Stats{}, false
	if len(cands) > 1 {
		if st, haveStats, err = c.stats(ctx); err != nil {
			return nil, false, err
		}
	}
	filtered := filter.op != "$and" || len(filter.subs) > 0
	return rankPlans(c.name, cands, st, haveStats, filtered), haveStats, nil
}

// visitAll calls visit for every document of the collection.
func (c *Collection) visitAll(ctx context.Context, visit func(fsm.Item) error) error {
	start, end := docRange(c.name)
	return c.db.scanRange(ctx, start, end, visit)
}

// visitIndexed calls visit for every document a's index ranges name,
// read in parallel.
func (c *Collection) visitIndexed(ctx context.Context, a access, visit func(fsm.Item) error) error {
	ids, err := c.candidateIDs(ctx, a)
	if err != nil {
		return err
	}
	return c.visitIDs(ctx, ids, visit)
}

// visitIDs reads the documents ids name, in parallel, and calls visit for
// each that exists, in the order of ids.
func (c *Collection) visitIDs(ctx context.Context, ids []string, visit func(fsm.Item) error) error {
	items := make([]fsm.Item, len(ids))
	found := make([]bool, len(ids))
	if mg, ok := c.db.kv.(ManyGetter); ok {
		keys := make([][]byte, len(ids))
		for i, id := range ids {
			keys[i] = docKey(c.name, id)
		}
		var err error
		if items, found, err = mg.GetMany(ctx, keys); err != nil {
			return err
		}
	} else if err := forEach(len(ids), func(i int) error {
		var err error
		items[i], found[i], err = c.db.kv.Get(ctx, docKey(c.name, ids[i]))
		return err
	}); err != nil {
		return err
	}
	for i := range ids {
		if found[i] { // deleted since the index was read: not a match now
			if err := visit(items[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// visitSorted reads a's index range in key order (backwards with
// a.reverse), a page at a time, and calls visit for each document the first
// time one of its entries comes up (documents read in parallel, visited in
// index order). After each page it asks enough, with the last entry's
// values, whether to stop.
func (c *Collection) visitSorted(ctx context.Context, a access, visit func(fsm.Item) error, enough func(last []byte) bool) error {
	prefix := indexPrefix(c.name, a.index.Name)
	page := min(1000, max(16, 2*(a.limit+1)))
	seen := map[string]bool{}
	var after []byte
	for {
		entries, more, err := c.db.kv.Scan(ctx, a.ranges[0][0], a.ranges[0][1], after, page, a.reverse)
		if err != nil {
			return err
		}
		var ids []string
		for _, it := range entries {
			if ids, err = appendNewID(ids, seen, it.Key); err != nil {
				return err
			}
		}
		if err := c.visitIDs(ctx, ids, visit); err != nil {
			return err
		}
		if !more || len(entries) == 0 {
			return nil
		}
		after = entries[len(entries)-1].Key
		if enough(after[len(prefix):]) {
			return nil
		}
	}
}

// sortFrom narrows a sort access's range to the entries a page after a
// cursor whose first sort value is v (encoded) may need: from v up, or,
// reading backwards, from v down.
func sortFrom(prefix []byte, reverse bool, v []byte) [2][]byte {
	at := append(bytes.Clone(prefix), v...)
	if reverse {
		return [2][]byte{prefix, keys.PrefixEnd(at)}
	}
	return [2][]byte{at, keys.PrefixEnd(prefix)}
}

// leadingValue is the encoding of the first sort value of a sort position
// (see sortPosition) whose first key is descending when desc.
func leadingValue(pos []byte, desc bool) []byte {
	if desc {
		return firstValue(descending(pos))
	}
	return firstValue(pos)
}

// firstValue is the first of the keyenc-encoded values b starts with.
func firstValue(b []byte) []byte {
	_, rest, err := keyenc.Decode(b)
	if err != nil {
		return b
	}
	return b[:len(b)-len(rest)]
}

// sortPosition encodes where d falls in the order of specs: each sort
// value (complemented for descending keys, so that bytes order them
// backwards), then the _id.
func sortPosition(d Doc, specs []sortSpec) ([]byte, error) {
	var pos []byte
	for _, s := range specs {
		enc, err := keyenc.Encode(sortValue(d, s))
		if err != nil {
			return nil, err
		}
		if s.desc {
			enc = descending(enc)
		}
		pos = append(pos, enc...)
	}
	id, _ := d[FieldID].(string)
	return append(pos, encString(id)...), nil
}

// descending complements an encoding so that bytes order it backwards
// (encodings are prefix-free, and so are their complements).
func descending(enc []byte) []byte {
	out := make([]byte, len(enc))
	for i, b := range enc {
		out[i] = ^b
	}
	return out
}
