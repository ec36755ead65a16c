package docstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cairndb/cairn/docstore/keyenc"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/internal/keys"
	"github.com/cairndb/cairn/ring"
)

// Secondary indexes are local to each shard: a document's index entries
// are keyed by its _id's routing tag, so they sit on its shard and are
// written in the same command (one Badger batch) as the document.
//
// Which indexes exist is kept in a schema record per collection and shard
// (placed on that shard by a tag that hashes there). Every document write
// compares the schema record's version with the one it computed its
// entries from, so no write can miss an index the shard knows of. An index
// is created "building" in every shard's schema first; from then on every
// write maintains it; then the documents already there are backfilled,
// each with a compare on its version (a document written since was indexed
// by its writer); then the index turns "ready" and queries may use it.
//
//	schema record  0x00 's' <collection> <tag: the shard's tag>
//	index entry    0x00 'x' <collection> <index> <value>... <tag: _id>
const (
	kindSchema = 's'
	kindIndex  = 'x'
)

// Index states. Writes maintain building and ready indexes; queries use
// only one ready on every shard.
const (
	StateBuilding = "building"
	StateReady    = "ready"
	StateDropping = "dropping"
)

// IndexSpec describes an index: its name, the dotted paths it orders by,
// and its state.
type IndexSpec struct {
	Name   string   `json:"name"`
	Fields []string `json:"fields"`
	Unique bool     `json:"unique,omitempty"`
	State  string   `json:"state"`
	// BuildStarted: when the build began (RFC 3339), so that a build
	// whose builder died can be told from a running one.
	BuildStarted string `json:"build_started,omitempty"`
}

// schema is the index list of one collection on one shard, as read.
type schema struct {
	key     []byte
	version uint64 // 0: no record
	indexes []IndexSpec
	raw     []byte // the record as stored, which indexes was decoded from
}

// compare holds while the schema record is as read.
func (s schema) compare() fsm.Compare {
	return fsm.Compare{Kind: fsm.CompareVersion, Key: s.key, Version: s.version}
}

func schemaKey(coll string, shardTag []byte) []byte {
	return ring.AppendRouted(append([]byte{ring.RoutedPrefix, kindSchema}, encString(coll)...), shardTag)
}

func indexPrefix(coll, index string) []byte {
	b := append([]byte{ring.RoutedPrefix, kindIndex}, encString(coll)...)
	return append(b, encString(index)...)
}

// maxEntries bounds the index entries of one document in one index (arrays
// multiply them).
const maxEntries = 256

// entryKeys returns the index entries of d in idx (nil d: none).
func entryKeys(coll string, idx IndexSpec, d Doc, id string) ([][]byte, error) {
	// Per field: each value at the path, and the elements of array
	// values; null for a missing field.
	tuples, err := valueTuples(idx, d, func(vals []any) []any {
		if len(vals) == 0 {
			return []any{nil}
		}
		return candidates(vals)
	})
	if err != nil {
		return nil, err
	}
	prefix := indexPrefix(coll, idx.Name)
	tag := encString(id)
	for i, t := range tuples {
		tuples[i] = ring.AppendRouted(append(slices.Clip(prefix), t...), tag)
	}
	return tuples, nil
}

// valueTuples returns the encoded value tuples of d in idx: for each field
// the distinct encodings of values(the values at its path), combined over
// the fields (every combination; at most maxEntries).
func valueTuples(idx IndexSpec, d Doc, values func([]any) []any) ([][]byte, error) {
	if d == nil {
		return nil, nil
	}
	tuples := [][]byte{nil}
	for _, f := range idx.Fields {
		var encs [][]byte
		for _, v := range values(resolve(map[string]any(d), strings.Split(f, "."))) {
			e, err := keyenc.Encode(v)
			if err != nil {
				return nil, fmt.Errorf("%w: index %s: %v", fsm.ErrInvalid, idx.Name, err)
			}
			if !containsKey(encs, e) {
				encs = append(encs, e)
			}
		}
		next := make([][]byte, 0, len(tuples)*len(encs))
		for _, t := range tuples {
			for _, e := range encs {
				next = append(next, append(slices.Clip(t), e...))
			}
		}
		if len(next) > maxEntries {
			return nil, fmt.Errorf("%w: index %s: the document needs %d entries, limit %d (arrays in several indexed fields)", fsm.ErrInvalid, idx.Name, len(next), maxEntries)
		}
		tuples = next
	}
	return tuples, nil
}

// schemas caches, per node, the schema records it read.
type schemas struct {
	mu sync.Mutex
	m  map[string]schema // schema key → record
}

// schemaFor returns the schema of coll on the shard of key.
func (db *DB) schemaFor(ctx context.Context, coll string, key []byte) (schema, error) {
	tag, err := db.kv.ShardTag(ctx, key)
	if err != nil {
		return schema{}, err
	}
	return db.readSchema(ctx, schemaKey(coll, tag), true)
}

func (db *DB) readSchema(ctx context.Context, key []byte, cached bool) (schema, error) {
	if cached {
		db.schemas.mu.Lock()
		s, ok := db.schemas.m[string(key)]
		db.schemas.mu.Unlock()
		if ok {
			return s, nil
		}
	}
	it, found, err := db.kv.Get(ctx, key)
	if err != nil {
		return schema{}, err
	}
	s := schema{key: key}
	if !found {
		db.schemas.mu.Lock()
		db.schemas.m[string(key)] = s
		db.schemas.mu.Unlock()
		return s, nil
	}
	s.version = it.Version
	// Every query reads the schema record of each shard afresh; the record
	// rarely changes, so the one decoded last time is taken again when the
	// stored bytes are the same (the indexes are never changed in place).
	db.schemas.mu.Lock()
	prev, ok := db.schemas.m[string(key)]
	db.schemas.mu.Unlock()
	if ok && prev.version == s.version && prev.raw != nil && bytes.Equal(prev.raw, it.Value) {
		return prev, nil
	}
	if err := json.Unmarshal(it.Value, &s.indexes); err != nil {
		return schema{}, fmt.Errorf("docstore: schema record: %w", err)
	}
	s.raw = bytes.Clone(it.Value)
	db.schemas.mu.Lock()
	db.schemas.m[string(key)] = s
	db.schemas.mu.Unlock()
	return s, nil
}

func (db *DB) forgetSchema(key []byte) {
	db.schemas.mu.Lock()
	delete(db.schemas.m, string(key))
	db.schemas.mu.Unlock()
}

// writeOps turns a change of document id from old to next (either nil)
// into the ops of one command: the document itself (put or delete) first,
// then the index entries that go and come.
func writeOps(coll, id string, sch schema, docKey, value []byte, old, next Doc) ([]fsm.Op, error) {
	var ops []fsm.Op
	if next != nil {
		ops = append(ops, fsm.Put(docKey, value))
	} else {
		ops = append(ops, fsm.Delete(docKey))
	}
	for _, idx := range sch.indexes {
		if idx.State == StateDropping {
			continue // its entries are being deleted
		}
		before, err := entryKeys(coll, idx, old, id)
		if err != nil {
			before = nil // an old document that no longer indexes: drop what can be dropped
		}
		after, err := entryKeys(coll, idx, next, id)
		if err != nil {
			return nil, err
		}
		for _, k := range before {
			if !containsKey(after, k) {
				ops = append(ops, fsm.Delete(k))
			}
		}
		for _, k := range after {
			// A building index may not hold the old entries yet (the
			// backfill skips documents written since it read them), so
			// every entry is written; a ready one holds them all.
			if idx.State != StateReady || !containsKey(before, k) {
				ops = append(ops, fsm.Put(k, nil))
			}
		}
	}
	return ops, nil
}

func containsKey(keys [][]byte, k []byte) bool {
	return slices.ContainsFunc(keys, func(x []byte) bool { return bytes.Equal(x, k) })
}

// CheckIndex checks an index definition.
func CheckIndex(idx IndexSpec) error {
	if err := CheckName(idx.Name); err != nil {
		return fmt.Errorf("index name: %w", err)
	}
	if len(idx.Fields) == 0 || len(idx.Fields) > 8 {
		return fmt.Errorf("%w: an index has 1 to 8 fields", fsm.ErrInvalid)
	}
	for _, f := range idx.Fields {
		if _, err := parseSort([]string{f}); err != nil || strings.HasPrefix(f, "-") {
			return fmt.Errorf("%w: bad index field %q", fsm.ErrInvalid, f)
		}
		if f == FieldVersion {
			// Not stored in the document: known only once written.
			return fmt.Errorf("%w: %s cannot be indexed", fsm.ErrInvalid, FieldVersion)
		}
	}
	return nil
}

// ErrIndexExists: an index of that name exists with other fields, or is
// being dropped. It matches ErrExists too.
var ErrIndexExists = fmt.Errorf("%w (an index of that name, with other fields or being dropped)", ErrExists)

// CreateIndex creates idx on the collection and builds it over the
// documents already there, while writes go on: it returns once the index
// is ready. Creating an index that exists with the same fields returns at
// once if it is ready, and resumes its build if not.
func (c *Collection) CreateIndex(ctx context.Context, idx IndexSpec) error {
	if err := CheckName(c.name); err != nil {
		return err
	}
	if err := CheckIndex(idx); err != nil {
		return err
	}
	existing, err := c.Indexes(ctx)
	if err != nil {
		return err
	}
	for _, x := range existing {
		if x.Name == idx.Name && x.State == StateReady && slices.Equal(x.Fields, idx.Fields) && x.Unique == idx.Unique {
			return nil // built already
		}
	}
	idx.State = StateBuilding
	idx.BuildStarted = c.db.opts.Now().UTC().Format(time.RFC3339Nano)
	if err := c.db.ensure(ctx, c.name); err != nil {
		return err
	}
	key := c.name + "/" + idx.Name
	c.db.mu.Lock()
	if c.db.building[key] {
		c.db.mu.Unlock()
		return fmt.Errorf("%w: index %s of %s is being built by this node", fsm.ErrConflict, idx.Name, c.name)
	}
	c.db.building[key] = true
	c.db.mu.Unlock()
	defer func() {
		c.db.mu.Lock()
		delete(c.db.building, key)
		c.db.mu.Unlock()
	}()
	// 1. Every shard's schema learns of the index: from here on, every
	// write maintains it.
	err = c.eachSchema(ctx, func(cur []IndexSpec) ([]IndexSpec, error) {
		for _, x := range cur {
			if x.Name == idx.Name {
				if !slices.Equal(x.Fields, idx.Fields) || x.Unique != idx.Unique || x.State == StateDropping {
					return nil, fmt.Errorf("%w: %s on %v (%s)", ErrIndexExists, x.Name, x.Fields, x.State)
				}
				return cur, nil
			}
		}
		return append(slices.Clone(cur), idx), nil
	})
	if err != nil {
		return err
	}
	// 2. Backfill what was written before.
	if err := c.backfill(ctx, idx); err != nil {
		if errors.Is(err, ErrUniqueViolation) {
			// The documents break the constraint: the index goes.
			if derr := c.dropIndex(ctx, idx.Name); derr != nil {
				return errors.Join(err, derr)
			}
		}
		return err
	}
	// 3. Ready.
	return c.eachSchema(ctx, func(cur []IndexSpec) ([]IndexSpec, error) {
		out := slices.Clone(cur)
		for i := range out {
			if out[i].Name == idx.Name && out[i].State == StateBuilding { // not one being dropped meanwhile
				out[i].State = StateReady
			}
		}
		return out, nil
	})
}

// DropIndex removes an index: first it turns "dropping" on every shard
// (from then on no query uses it and no write touches its entries), then
// its entries are deleted, then it leaves every shard's schema. An
// interrupted drop stays "dropping" and is finished by ResumeBuilds.
func (c *Collection) DropIndex(ctx context.Context, name string) error {
	if err := CheckName(c.name); err != nil {
		return err
	}
	return c.dropIndex(ctx, name)
}

func (c *Collection) dropIndex(ctx context.Context, name string) error {
	found := false
	err := c.eachSchema(ctx, func(cur []IndexSpec) ([]IndexSpec, error) {
		out := slices.Clone(cur)
		for i := range out {
			if out[i].Name == name {
				out[i].State, found = StateDropping, true
			}
		}
		return out, nil
	})
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%w: index %s of %s", fsm.ErrNotFound, name, c.name)
	}
	for _, prefix := range [][]byte{indexPrefix(c.name, name), uniquePrefix(c.name, name)} {
		if err := c.deleteRange(ctx, prefix); err != nil {
			return err
		}
	}
	return c.eachSchema(ctx, func(cur []IndexSpec) ([]IndexSpec, error) {
		return slices.DeleteFunc(slices.Clone(cur), func(x IndexSpec) bool { return x.Name == name }), nil
	})
}

// Indexes lists the collection's indexes as every shard's schema has them
// together: an index is ready only if it is ready on every shard,
// dropping if it is dropping on any, else building (while it is created
// or dropped, shards differ for a moment). Each call reads every shard's
// schema afresh.
func (c *Collection) Indexes(ctx context.Context) ([]IndexSpec, error) {
	if err := CheckName(c.name); err != nil {
		return nil, err
	}
	tags, err := c.db.kv.ShardTags(ctx)
	if err != nil {
		return nil, err
	}
	// Every shard's record at once: a query waits for one read, not one
	// per shard.
	schemas := make([]schema, len(tags))
	if err := forEach(len(tags), func(i int) error {
		var err error
		schemas[i], err = c.db.readSchema(ctx, schemaKey(c.name, tags[i]), false)
		return err
	}); err != nil {
		return nil, err
	}
	var out []IndexSpec
	pos := map[string]int{}
	readyOn := map[string]int{}
	for _, s := range schemas {
		for _, idx := range s.indexes {
			i, seen := pos[idx.Name]
			if !seen {
				i = len(out)
				pos[idx.Name] = i
				out = append(out, idx)
			}
			switch {
			case idx.State == StateDropping:
				out[i].State = StateDropping
			case idx.State == StateReady:
				readyOn[idx.Name]++
			}
		}
	}
	for i := range out {
		if out[i].State != StateDropping {
			out[i].State = StateBuilding
			if readyOn[out[i].Name] == len(tags) {
				out[i].State = StateReady
			}
		}
	}
	return out, nil
}

// eachSchema rewrites the collection's schema record on every shard with
// change, by compare-and-write.
func (c *Collection) eachSchema(ctx context.Context, change func([]IndexSpec) ([]IndexSpec, error)) error {
	tags, err := c.db.kv.ShardTags(ctx)
	if err != nil {
		return err
	}
	for _, tag := range tags {
		key := schemaKey(c.name, tag)
		for attempt := 0; ; attempt++ {
			s, err := c.db.readSchema(ctx, key, false)
			if err != nil {
				return err
			}
			next, err := change(s.indexes)
			if err != nil {
				return err
			}
			val, _ := json.Marshal(next)
			ok, _, err := c.db.kv.Transact(ctx, []fsm.Compare{{Kind: fsm.CompareVersion, Key: key, Version: s.version}}, []fsm.Op{fsm.Put(key, val)})
			c.db.forgetSchema(key)
			if err != nil {
				return err
			}
			if ok {
				break
			}
			if attempt > 20 {
				return fmt.Errorf("%w: the schema of %s kept changing", fsm.ErrConflict, c.name)
			}
		}
	}
	return nil
}

// backfill writes idx's entries for every document, each only if the
// document is still at the version read and the shard's schema still as
// read (otherwise a writer indexed it since).
func (c *Collection) backfill(ctx context.Context, idx IndexSpec) error {
	start, end := docRange(c.name)
	return c.db.scanRange(ctx, start, end, func(it fsm.Item) error {
		d, err := load(it.Value, it.Version)
		if err != nil {
			return err
		}
		id, _ := d[FieldID].(string)
		keys, err := entryKeys(c.name, idx, d, id)
		if err != nil {
			return err
		}
		for attempt := 0; ; attempt++ {
			ops := make([]fsm.Op, len(keys))
			for i, k := range keys {
				ops[i] = fsm.Put(k, nil)
			}
			sch, err := c.db.schemaFor(ctx, c.name, it.Key)
			if err != nil {
				return err
			}
			uops, uifs, err := c.uniqueOps(ctx, schema{indexes: []IndexSpec{idx}}, id, nil, d, idx.Name)
			if err != nil {
				return err // a value two documents hold: the index cannot be built
			}
			ifs := []fsm.Compare{{Kind: fsm.CompareVersion, Key: it.Key, Version: it.Version}, sch.compare()}
			ok, _, err := c.db.kv.Transact(ctx, append(ifs, uifs...), append(ops, uops...))
			if err != nil || ok {
				return err
			}
			// The document moved on (its writer indexed it), or the
			// schema did (read it again and retry).
			c.db.forgetSchema(sch.key)
			cur, found, err := c.db.kv.Get(ctx, it.Key)
			if err != nil || !found || cur.Version != it.Version {
				return err
			}
			if attempt > 20 {
				return fmt.Errorf("%w: the schema of %s kept changing", fsm.ErrConflict, c.name)
			}
		}
	})
}

// deleteRange deletes every key that starts with prefix.
func (c *Collection) deleteRange(ctx context.Context, prefix []byte) error {
	end := keys.PrefixEnd(prefix)
	for {
		items, _, err := c.db.kv.Scan(ctx, prefix, end, nil, 500, false)
		if err != nil || len(items) == 0 {
			return err
		}
		err = forEach(len(items), func(i int) error {
			_, _, err := c.db.kv.Transact(ctx, nil, []fsm.Op{fsm.Delete(items[i].Key)})
			return err
		})
		if err != nil {
			return err
		}
	}
}

// ResumeBuilds finishes the index builds (and drops) whose builder is
// gone: indexes not ready that began more than olderThan ago and that this
// node is not building. It returns how many it finished.
func (db *DB) ResumeBuilds(ctx context.Context, olderThan time.Duration) (int, error) {
	names, err := db.Collections(ctx)
	if err != nil {
		return 0, err
	}
	done := 0
	for _, name := range names {
		c := db.Collection(name)
		list, err := c.Indexes(ctx)
		if err != nil {
			return done, err
		}
		for _, idx := range list {
			started, _ := time.Parse(time.RFC3339Nano, idx.BuildStarted)
			if idx.State == StateReady || db.opts.Now().Sub(started) < olderThan {
				continue
			}
			var err error
			if idx.State == StateDropping {
				err = c.DropIndex(ctx, idx.Name)
			} else {
				err = c.CreateIndex(ctx, IndexSpec{Name: idx.Name, Fields: idx.Fields, Unique: idx.Unique})
			}
			if err != nil {
				if errors.Is(err, fsm.ErrConflict) {
					continue // this node is on it
				}
				return done, err
			}
			done++
		}
	}
	return done, nil
}
