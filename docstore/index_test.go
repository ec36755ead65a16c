package docstore_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairndb/cairn/docstore"
	"github.com/cairndb/cairn/fsm"
)

// randDoc makes a document from small pools: nested objects, arrays of
// scalars and of objects, mixed types, missing fields.
func randDoc(r *rand.Rand) docstore.Doc {
	scalar := func() any {
		switch r.IntN(6) {
		case 0:
			return nil
		case 1:
			return r.IntN(2) == 0
		case 2, 3:
			return json.Number(fmt.Sprint(r.IntN(6)))
		default:
			return []string{"ab", "abc", "b", "ba", ""}[r.IntN(5)]
		}
	}
	d := docstore.Doc{}
	if r.IntN(6) > 0 {
		d["a"] = scalar()
	}
	if r.IntN(4) > 0 {
		d["b"] = map[string]any{"c": scalar()}
	}
	switch r.IntN(4) {
	case 0:
		d["tags"] = []any{scalar(), scalar()}
	case 1:
		d["tags"] = scalar()
	case 2:
		d["tags"] = []any{}
	}
	if r.IntN(3) == 0 {
		d["items"] = []any{map[string]any{"q": scalar()}, map[string]any{"q": scalar()}}
	}
	return d
}

// randFilter builds a filter on the indexed fields, sometimes with a second
// condition that no index serves.
func randFilter(r *rand.Rand) string {
	fields := []string{"a", "b.c", "tags", "items.q"}
	vals := []string{`null`, `true`, `0`, `1`, `2.0`, `3`, `"ab"`, `"b"`, `""`, `[]`}
	cond := func() string {
		v := vals[r.IntN(len(vals))]
		switch r.IntN(8) {
		case 0, 1:
			return v
		case 2:
			return fmt.Sprintf(`{"$in":[%s,%s]}`, v, vals[r.IntN(len(vals))])
		case 3:
			return fmt.Sprintf(`{"$prefix":%s}`, []string{`"a"`, `"b"`, `""`, `"abc"`}[r.IntN(4)])
		}
		op := []string{"$gt", "$gte", "$lt", "$lte"}[r.IntN(4)]
		if r.IntN(2) == 0 {
			op2 := []string{"$lt", "$lte"}[r.IntN(2)]
			return fmt.Sprintf(`{%q:%s,%q:%s}`, op, v, op2, vals[r.IntN(len(vals))])
		}
		return fmt.Sprintf(`{%q:%s}`, op, v)
	}
	i := r.IntN(len(fields))
	out := fmt.Sprintf(`{%q:%s`, fields[i], cond())
	if r.IntN(3) == 0 { // a condition on a second field: intersections serve these
		out += fmt.Sprintf(`,%q:%s`, fields[(i+1+r.IntN(len(fields)-1))%len(fields)], cond())
	}
	if r.IntN(3) == 0 {
		out += fmt.Sprintf(`,%q:{"$ne":%s}`, fields[r.IntN(len(fields))], vals[r.IntN(len(vals))])
	}
	return out + "}"
}

// pages returns the _ids of every page of q, following its cursors.
func pages(t *testing.T, c *docstore.Collection, q docstore.Query) [][]string {
	t.Helper()
	var out [][]string
	for {
		docs, cursor, err := c.Find(t.Context(), q)
		if err != nil {
			t.Fatalf("%+v: %v", q, err)
		}
		out = append(out, ids(docs))
		if cursor == "" {
			return out
		}
		if len(out) > 1000 {
			t.Fatalf("%+v: more than 1000 pages", q)
		}
		q.Cursor = cursor
	}
}

func ids(docs []docstore.Doc) []string {
	var out []string
	for _, d := range docs {
		out = append(out, d["_id"].(string))
	}
	return out
}

// checkEntries compares every index's entries with the entries the
// documents now stored call for: none missing, none left over.
func checkEntries(t *testing.T, kv *memKV, c *docstore.Collection) {
	t.Helper()
	indexes, err := c.Indexes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var docs []docstore.Doc
	q := docstore.Query{Hint: docstore.HintScan}
	for {
		page, next, err := c.Find(t.Context(), q)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, page...)
		if next == "" {
			break
		}
		q.Cursor = next
	}
	for _, idx := range indexes {
		want := map[string]bool{}
		for _, d := range docs {
			keys, err := docstore.EntryKeys(c.Name(), idx, d)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				want[string(k)] = true
			}
		}
		prefix := docstore.IndexPrefix(c.Name(), idx.Name)
		got := map[string]bool{}
		kv.mu.Lock()
		for k := range kv.items {
			if strings.HasPrefix(k, string(prefix)) {
				got[k] = true
			}
		}
		kv.mu.Unlock()
		for k := range want {
			if !got[k] {
				t.Fatalf("index %s misses an entry %q", idx.Name, k)
			}
		}
		for k := range got {
			if !want[k] {
				t.Fatalf("index %s holds a stale entry %q", idx.Name, k)
			}
		}
	}
}

// For random documents (written before and after the indexes were
// created, then updated, patched and deleted) and random filters, every
// plan the store may pick returns exactly what a scan of the collection
// returns, and the index entries are exactly what the documents call for.
func TestEveryPlanMatchesFullScan(t *testing.T) {
	db, kv := newDB(t)
	ctx := t.Context()
	c := db.Collection("things")
	r := rand.New(rand.NewPCG(7, 8))
	insert := func(n int) {
		for range n {
			if _, _, err := c.Insert(ctx, randDoc(r)); err != nil {
				t.Fatal(err)
			}
		}
	}
	insert(150)
	for _, idx := range []docstore.IndexSpec{
		{Name: "by_a", Fields: []string{"a"}},
		{Name: "by_bc", Fields: []string{"b.c"}},
		{Name: "by_tags", Fields: []string{"tags"}},
		{Name: "by_q_a", Fields: []string{"items.q", "a"}},
	} {
		if err := c.CreateIndex(ctx, idx); err != nil {
			t.Fatalf("create %s: %v", idx.Name, err)
		}
	}
	insert(150)
	all, _, _ := c.Find(ctx, docstore.Query{Hint: docstore.HintScan})
	for i, d := range all {
		id := d["_id"].(string)
		switch i % 4 {
		case 0:
			if _, err := c.Replace(ctx, id, randDoc(r), nil); err != nil {
				t.Fatal(err)
			}
		case 1:
			if _, err := c.Patch(ctx, id, docstore.Doc{"a": nil, "tags": []any{json.Number("2"), "b"}}, nil); err != nil {
				t.Fatal(err)
			}
		case 2:
			if err := c.Delete(ctx, id, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	checkEntries(t, kv, c)
	indexes, _ := c.Indexes(ctx)
	for _, idx := range indexes {
		if idx.State != docstore.StateReady {
			t.Fatalf("index %+v not ready", idx)
		}
	}
	served := map[string]int{}
	for i := range 600 {
		fs := randFilter(r)
		f := filter(t, fs)
		want, _, err := c.Find(ctx, docstore.Query{Filter: f, Hint: docstore.HintScan})
		if err != nil {
			t.Fatal(err)
		}
		for _, idx := range indexes {
			got, _, err := c.Find(ctx, docstore.Query{Filter: f, Hint: idx.Name})
			if errors.Is(err, fsm.ErrInvalid) {
				continue // this index cannot serve the filter
			}
			if err != nil {
				t.Fatal(err)
			}
			served[idx.Name]++
			if !slices.Equal(ids(got), ids(want)) {
				t.Fatalf("filter %d %s: index %s returned %v, the scan %v", i, fs, idx.Name, ids(got), ids(want))
			}
		}
		// Every intersection of two indexes on different fields.
		for i, x := range indexes {
			for _, y := range indexes[i+1:] {
				if x.Fields[0] == y.Fields[0] {
					continue
				}
				hint := x.Name + "," + y.Name
				got, _, err := c.Find(ctx, docstore.Query{Filter: f, Hint: hint})
				if errors.Is(err, fsm.ErrInvalid) {
					continue // one of them cannot serve the filter
				}
				if err != nil {
					t.Fatal(err)
				}
				served[hint]++
				if !slices.Equal(ids(got), ids(want)) {
					t.Fatalf("filter %d %s: intersection %s returned %v, the scan %v", i, fs, hint, ids(got), ids(want))
				}
			}
		}
		// Sorted pages: reading an index in order for the sort (stopping
		// early; backwards for a descending sort; each page after a cursor
		// from the cursor's sort value) pages exactly as the scan does,
		// cursors included.
		if i%3 == 0 {
			idx := indexes[r.IntN(len(indexes))]
			sort := []string{idx.Fields[0]}
			if i%2 == 0 {
				sort[0] = "-" + sort[0]
				served["sorted descending"]++
			}
			if r.IntN(2) == 0 {
				sort = append(sort, "-"+[]string{"a", "b.c", "tags"}[r.IntN(3)])
			}
			limit := 1 + r.IntN(8)
			scanPages := pages(t, c, docstore.Query{Filter: f, Sort: sort, Limit: limit, Hint: docstore.HintScan})
			for _, hint := range []string{docstore.HintSortPrefix + idx.Name, ""} {
				got := pages(t, c, docstore.Query{Filter: f, Sort: sort, Limit: limit, Hint: hint})
				if !slices.EqualFunc(got, scanPages, slices.Equal[[]string]) {
					t.Fatalf("filter %d %s sorted by %v, limit %d: hint %q paged %v, the scan %v", i, fs, sort, limit, hint, got, scanPages)
				}
			}
			served["sorted by "+idx.Name]++
		}
		auto, _, err := c.Find(ctx, docstore.Query{Filter: f})
		if err != nil || !slices.Equal(ids(auto), ids(want)) {
			t.Fatalf("filter %s: the chosen plan returned %v, the scan %v (%v)", fs, ids(auto), ids(want), err)
		}
	}
	for _, idx := range indexes {
		if served[idx.Name] < 50 {
			t.Fatalf("index %s served only %d filters: %v", idx.Name, served[idx.Name], served)
		}
	}
	intersections := 0
	for name, n := range served {
		if strings.Contains(name, ",") {
			intersections += n
		}
	}
	for _, hint := range []string{"by_a,nosuch", "by_a,by_a", "by_a,"} {
		if _, _, err := c.Find(ctx, docstore.Query{Filter: filter(t, `{"a":1,"b.c":1}`), Hint: hint}); !errors.Is(err, fsm.ErrInvalid) {
			t.Fatalf("hint %q: %v, want invalid", hint, err)
		}
	}
	if intersections < 50 {
		t.Fatalf("intersections served only %d filters: %v", intersections, served)
	}
	if served["sorted descending"] < 90 {
		t.Fatalf("only %d sorted queries were descending: %v", served["sorted descending"], served)
	}
	t.Logf("filters served: %v", served)
}

// An index built while writers change the documents misses nothing and
// keeps nothing stale; dropping it removes its entries; dropping the
// collection leaves no key behind.
func TestOnlineIndexBuild(t *testing.T) {
	db, kv := newDB(t)
	ctx := t.Context()
	c := db.Collection("live")
	for i := range 2000 {
		if _, _, err := c.Insert(ctx, docstore.Doc{"_id": fmt.Sprintf("d%04d", i), "n": json.Number(fmt.Sprint(i % 10))}); err != nil {
			t.Fatal(err)
		}
	}
	var stop atomic.Bool
	var writes atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 9))
			for !stop.Load() {
				id := fmt.Sprintf("d%04d", r.IntN(2200))
				var err error
				switch r.IntN(3) {
				case 0:
					_, err = c.Patch(ctx, id, docstore.Doc{"n": json.Number(fmt.Sprint(r.IntN(10)))}, nil)
				case 1:
					err = c.Delete(ctx, id, nil)
				default:
					_, _, err = c.Insert(ctx, docstore.Doc{"_id": id, "n": json.Number(fmt.Sprint(r.IntN(10)))})
				}
				if err != nil && !errors.Is(err, fsm.ErrNotFound) && !errors.Is(err, docstore.ErrExists) {
					t.Errorf("writer: %v", err)
					return
				}
				writes.Add(1)
			}
		})
	}
	for writes.Load() < 50 {
		runtime.Gosched() // the writers are under way before the build starts
	}
	before := writes.Load()
	if err := c.CreateIndex(ctx, docstore.IndexSpec{Name: "by_n", Fields: []string{"n"}}); err != nil {
		t.Fatal(err)
	}
	built := writes.Load() - before
	stop.Store(true)
	wg.Wait()
	if built == 0 {
		t.Fatal("no write ran during the build")
	}
	t.Logf("%d writes during the build", built)
	checkEntries(t, kv, c)
	want, _, _ := c.Find(ctx, docstore.Query{Filter: filter(t, `{"n":3}`), Hint: docstore.HintScan})
	got, _, err := c.Find(ctx, docstore.Query{Filter: filter(t, `{"n":3}`), Hint: "by_n"})
	if err != nil || !slices.Equal(ids(got), ids(want)) || len(want) == 0 {
		t.Fatalf("by_n: %v, scan: %v, %v", ids(got), ids(want), err)
	}
	if err := c.CreateIndex(ctx, docstore.IndexSpec{Name: "by_n", Fields: []string{"other"}}); !errors.Is(err, docstore.ErrIndexExists) {
		t.Fatalf("same name, other fields: %v", err)
	}
	if err := c.DropIndex(ctx, "by_n"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Find(ctx, docstore.Query{Filter: filter(t, `{"n":3}`), Hint: "by_n"}); !errors.Is(err, fsm.ErrInvalid) {
		t.Fatalf("hint of a dropped index: %v", err)
	}
	if err := c.DropIndex(ctx, "by_n"); !errors.Is(err, fsm.ErrNotFound) {
		t.Fatalf("second drop: %v", err)
	}
	if err := c.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	kv.mu.Lock()
	var left []string
	for k := range kv.items {
		left = append(left, fmt.Sprintf("%q", k))
	}
	kv.mu.Unlock()
	sort.Strings(left)
	if len(left) != 0 {
		t.Fatalf("keys left after dropping the collection: %v", left)
	}
	_ = bytes.Equal
}

// A build whose builder died (here: its scan failed half-way) stays
// "building", and writes keep maintaining the index meanwhile; resuming it
// finishes the backfill and makes it ready, with exactly the entries the
// documents call for.
func TestIndexBuildResumes(t *testing.T) {
	db, kv := newDB(t)
	ctx := t.Context()
	c := db.Collection("r")
	for i := range 1200 {
		if _, _, err := c.Insert(ctx, docstore.Doc{"_id": fmt.Sprintf("d%04d", i), "k": json.Number(fmt.Sprint(i % 7))}); err != nil {
			t.Fatal(err)
		}
	}
	kv.mu.Lock()
	kv.failScans = 1
	kv.mu.Unlock()
	if err := c.CreateIndex(ctx, docstore.IndexSpec{Name: "by_k", Fields: []string{"k"}}); !errors.Is(err, errInjected) {
		t.Fatalf("interrupted build: %v", err)
	}
	list, _ := c.Indexes(ctx)
	if len(list) != 1 || list[0].State != docstore.StateBuilding {
		t.Fatalf("after the interruption: %+v", list)
	}
	if _, _, err := c.Find(ctx, docstore.Query{Filter: filter(t, `{"k":3}`), Hint: "by_k"}); !errors.Is(err, fsm.ErrInvalid) {
		t.Fatalf("a building index served a query: %v", err)
	}
	// Writes in the meantime maintain it.
	if _, err := c.Patch(ctx, "d0003", docstore.Doc{"k": json.Number("5")}, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := db.ResumeBuilds(ctx, time.Hour); err != nil || n != 0 {
		t.Fatalf("resume of a young build: %d %v", n, err)
	}
	if n, err := db.ResumeBuilds(ctx, 0); err != nil || n != 1 {
		t.Fatalf("resume: %d %v", n, err)
	}
	list, _ = c.Indexes(ctx)
	if len(list) != 1 || list[0].State != docstore.StateReady {
		t.Fatalf("after the resume: %+v", list)
	}
	checkEntries(t, kv, c)
	got, _, err := c.Find(ctx, docstore.Query{Filter: filter(t, `{"k":5}`), Hint: "by_k", Limit: 1000})
	want, _, _ := c.Find(ctx, docstore.Query{Filter: filter(t, `{"k":5}`), Hint: docstore.HintScan, Limit: 1000})
	if err != nil || !slices.Equal(ids(got), ids(want)) || !slices.Contains(ids(got), "d0003") {
		t.Fatalf("by_k after the resume: %d docs, scan %d, %v", len(got), len(want), err)
	}
}

// An interrupted drop leaves the index "dropping": no query uses it, writes
// leave its entries alone, and resuming deletes them all and the index.
func TestIndexDropResumes(t *testing.T) {
	db, kv := newDB(t)
	ctx := t.Context()
	c := db.Collection("dr")
	for i := range 50 {
		if _, _, err := c.Insert(ctx, docstore.Doc{"_id": fmt.Sprintf("d%02d", i), "k": json.Number(fmt.Sprint(i % 3))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.CreateIndex(ctx, docstore.IndexSpec{Name: "by_k", Fields: []string{"k"}}); err != nil {
		t.Fatal(err)
	}
	kv.mu.Lock()
	kv.failScans = 1
	kv.mu.Unlock()
	if err := c.DropIndex(ctx, "by_k"); !errors.Is(err, errInjected) {
		t.Fatalf("interrupted drop: %v", err)
	}
	if list, _ := c.Indexes(ctx); len(list) != 1 || list[0].State != docstore.StateDropping {
		t.Fatalf("after the interruption: %+v", list)
	}
	if _, _, err := c.Find(ctx, docstore.Query{Filter: filter(t, `{"k":1}`), Hint: "by_k"}); !errors.Is(err, fsm.ErrInvalid) {
		t.Fatalf("a dropping index served a query: %v", err)
	}
	if err := c.CreateIndex(ctx, docstore.IndexSpec{Name: "by_k", Fields: []string{"k"}}); !errors.Is(err, docstore.ErrIndexExists) {
		t.Fatalf("recreating a dropping index: %v", err)
	}
	if _, _, err := c.Insert(ctx, docstore.Doc{"_id": "new", "k": json.Number("1")}); err != nil {
		t.Fatal(err)
	}
	if n, err := db.ResumeBuilds(ctx, 0); err != nil || n != 1 {
		t.Fatalf("resume: %d %v", n, err)
	}
	if list, _ := c.Indexes(ctx); len(list) != 0 {
		t.Fatalf("after the resume: %+v", list)
	}
	prefix := string(docstore.IndexPrefix("dr", "by_k"))
	kv.mu.Lock()
	defer kv.mu.Unlock()
	for k := range kv.items {
		if strings.HasPrefix(k, prefix) {
			t.Fatalf("entry left: %q", k)
		}
	}
}

// TestIndexesSeenByAnotherNode: a node that read a collection's schema
// (and keeps it decoded) sees every change another node makes to it on
// its next query, and stops using an index the moment it is dropping.
func TestIndexesSeenByAnotherNode(t *testing.T) {
	a, kv := newDB(t)
	b := docstore.New(kv, docstore.Options{})
	ctx := t.Context()
	ca, cb := a.Collection("two"), b.Collection("two")
	for i := range 30 {
		if _, _, err := ca.Insert(ctx, docstore.Doc{"_id": fmt.Sprintf("d%02d", i), "k": json.Number(fmt.Sprint(i % 3))}); err != nil {
			t.Fatal(err)
		}
	}
	states := func(c *docstore.Collection) string {
		t.Helper()
		list, err := c.Indexes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, x := range list {
			s = append(s, x.Name+":"+string(x.State))
		}
		return strings.Join(s, ",")
	}
	for range 3 { // read, and read again from what a keeps
		if got := states(ca); got != "" {
			t.Fatalf("before any index: %q", got)
		}
	}
	if err := cb.CreateIndex(ctx, docstore.IndexSpec{Name: "by_k", Fields: []string{"k"}}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if got := states(ca); got != "by_k:ready" {
			t.Fatalf("after b created by_k, a sees %q", got)
		}
	}
	docs, _, err := ca.Find(ctx, docstore.Query{Filter: filter(t, `{"k":1}`), Hint: "by_k"})
	if err != nil || len(docs) != 10 {
		t.Fatalf("a's find through by_k: %d docs, %v", len(docs), err)
	}
	kv.mu.Lock()
	kv.failScans = 1 // b's drop stops after marking the index dropping
	kv.mu.Unlock()
	if err := cb.DropIndex(ctx, "by_k"); !errors.Is(err, errInjected) {
		t.Fatalf("interrupted drop: %v", err)
	}
	if got := states(ca); got != "by_k:dropping" {
		t.Fatalf("after b began dropping by_k, a sees %q", got)
	}
	if _, _, err := ca.Find(ctx, docstore.Query{Filter: filter(t, `{"k":1}`), Hint: "by_k"}); !errors.Is(err, fsm.ErrInvalid) {
		t.Fatalf("a used a dropping index: %v", err)
	}
	if _, err := b.ResumeBuilds(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if got := states(ca); got != "" {
		t.Fatalf("after b dropped by_k, a sees %q", got)
	}
	if err := cb.CreateIndex(ctx, docstore.IndexSpec{Name: "by_k", Fields: []string{"k"}, Unique: false}); err != nil {
		t.Fatal(err)
	}
	if got := states(ca); got != "by_k:ready" {
		t.Fatalf("after b created by_k again, a sees %q", got)
	}
}
