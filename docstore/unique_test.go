package docstore_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/cairndb/cairn/docstore"
)

func uniqueKeys(kv *memKV) int {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	n := 0
	for k := range kv.items {
		if strings.HasPrefix(k, "\x00u") {
			n++
		}
	}
	return n
}

func wantViolation(t *testing.T, err error, value any, holder string) {
	t.Helper()
	var uv *docstore.UniqueViolationError
	if !errors.As(err, &uv) || !errors.Is(err, docstore.ErrUniqueViolation) || uv.Index != "by_email" || fmt.Sprint(uv.Value) != fmt.Sprint(value) || uv.Holder != holder {
		t.Fatalf("err %v, want a violation of by_email by %v held by %s", err, value, holder)
	}
}

// A unique index refuses a second document with a value, across inserts,
// replaces and patches; giving a value up (by a change or a delete) frees
// it; missing and null values are not constrained; every element of an
// array is a value.
func TestUniqueIndex(t *testing.T) {
	db, kv := newDB(t)
	ctx := t.Context()
	c := db.Collection("users")
	if err := c.CreateIndex(ctx, docstore.IndexSpec{Name: "by_email", Fields: []string{"email"}, Unique: true}); err != nil {
		t.Fatal(err)
	}
	ins := func(id, email string) error {
		d := docstore.Doc{"_id": id}
		if email != "" {
			d["email"] = email
		}
		_, _, err := c.Insert(ctx, d)
		return err
	}
	if err := ins("ann", "a@x"); err != nil {
		t.Fatal(err)
	}
	wantViolation(t, ins("bob", "a@x"), "a@x", "ann")
	if _, err := c.Get(ctx, "bob"); err == nil {
		t.Fatal("the refused document was written")
	}
	if err := ins("bob", "b@x"); err != nil {
		t.Fatal(err)
	}
	_, err := c.Patch(ctx, "bob", docstore.Doc{"email": "a@x"}, nil)
	wantViolation(t, err, "a@x", "ann")
	_, err = c.Replace(ctx, "bob", docstore.Doc{"email": "a@x"}, nil)
	wantViolation(t, err, "a@x", "ann")
	// ann gives a@x up: bob may take it, and b@x is free again.
	if _, err := c.Patch(ctx, "ann", docstore.Doc{"email": "ann@x"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Patch(ctx, "bob", docstore.Doc{"email": "a@x"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := ins("cy", "b@x"); err != nil {
		t.Fatal(err)
	}
	// A delete frees the value.
	if err := c.Delete(ctx, "cy", nil); err != nil {
		t.Fatal(err)
	}
	if err := ins("dee", "b@x"); err != nil {
		t.Fatal(err)
	}
	// Missing and null are not constrained.
	for i := range 3 {
		if err := ins(fmt.Sprint("none", i), ""); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Insert(ctx, docstore.Doc{"_id": fmt.Sprint("null", i), "email": nil}); err != nil {
			t.Fatal(err)
		}
	}
	// Arrays: each element is a value.
	if _, _, err := c.Insert(ctx, docstore.Doc{"_id": "multi", "email": []any{"m1@x", "m2@x"}}); err != nil {
		t.Fatal(err)
	}
	wantViolation(t, ins("eve", "m2@x"), "m2@x", "multi")
	// The same document keeps its own value through a rewrite.
	if _, err := c.Replace(ctx, "multi", docstore.Doc{"email": []any{"m2@x", "m3@x"}, "n": json.Number("1")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := ins("eve", "m1@x"); err != nil {
		t.Fatalf("m1@x was given up: %v", err)
	}
	// One global entry per held value: ann@x, a@x, b@x, m2@x, m3@x, m1@x.
	if n := uniqueKeys(kv); n != 6 {
		kv.mu.Lock()
		for k, it := range kv.items {
			if strings.HasPrefix(k, "\x00u") {
				t.Logf("%q = %s", k, it.Value)
			}
		}
		kv.mu.Unlock()
		t.Fatalf("%d global entries, want 6", n)
	}
	// The index serves queries like any other.
	docs, _, err := c.Find(ctx, docstore.Query{Filter: filter(t, `{"email":"a@x"}`), Hint: "by_email"})
	if err != nil || len(docs) != 1 || docs[0]["_id"] != "bob" {
		t.Fatalf("find by email: %v %v", docs, err)
	}
	if err := c.DropIndex(ctx, "by_email"); err != nil {
		t.Fatal(err)
	}
	if n := uniqueKeys(kv); n != 0 {
		t.Fatalf("%d global entries after the drop", n)
	}
	if err := ins("fay", "a@x"); err != nil {
		t.Fatalf("insert after the drop: %v", err)
	}
}

// Building a unique index over documents that share a value fails with
// the violation and leaves no index and no global entry behind.
func TestUniqueIndexBuildOverDuplicates(t *testing.T) {
	db, kv := newDB(t)
	ctx := t.Context()
	c := db.Collection("users")
	for i := range 40 {
		if _, _, err := c.Insert(ctx, docstore.Doc{"_id": fmt.Sprintf("u%02d", i), "email": fmt.Sprintf("e%d@x", i%39)}); err != nil {
			t.Fatal(err)
		}
	}
	err := c.CreateIndex(ctx, docstore.IndexSpec{Name: "by_email", Fields: []string{"email"}, Unique: true})
	var uv *docstore.UniqueViolationError
	if !errors.As(err, &uv) || uv.Value != "e0@x" {
		t.Fatalf("build over a duplicate: %v", err)
	}
	if list, _ := c.Indexes(ctx); len(list) != 0 {
		t.Fatalf("indexes after the failed build: %+v", list)
	}
	if n := uniqueKeys(kv); n != 0 {
		t.Fatalf("%d global entries after the failed build", n)
	}
	if err := c.Delete(ctx, "u39", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateIndex(ctx, docstore.IndexSpec{Name: "by_email", Fields: []string{"email"}, Unique: true}); err != nil {
		t.Fatalf("build without duplicates: %v", err)
	}
	if n := uniqueKeys(kv); n != 39 {
		t.Fatalf("%d global entries, want 39", n)
	}
}

// Concurrent inserts of one value under different _ids: exactly one wins.
func TestUniqueIndexConcurrentInserts(t *testing.T) {
	db, kv := newDB(t)
	ctx := t.Context()
	c := db.Collection("users")
	if err := c.CreateIndex(ctx, docstore.IndexSpec{Name: "by_email", Fields: []string{"email"}, Unique: true}); err != nil {
		t.Fatal(err)
	}
	for round := range 20 {
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		start := make(chan struct{})
		// Every insert reads the value's global entry before any writes
		// it: only the transaction's check can then stop the others.
		kv.gateUniqueReads(8)
		for i := range 8 {
			wg.Go(func() {
				<-start
				_, _, err := c.Insert(ctx, docstore.Doc{"_id": fmt.Sprintf("r%d-%d", round, i), "email": fmt.Sprint("same", round)})
				switch {
				case err == nil:
					mu.Lock()
					wins++
					mu.Unlock()
				case !errors.Is(err, docstore.ErrUniqueViolation):
					t.Errorf("insert: %v", err)
				}
			})
		}
		close(start)
		wg.Wait()
		docs, _, err := c.Find(ctx, docstore.Query{Filter: filter(t, fmt.Sprintf(`{"email":"same%d"}`, round)), Hint: docstore.HintScan})
		if err != nil || wins != 1 || len(docs) != 1 {
			t.Fatalf("round %d: %d inserts won, %d documents hold the value (%v)", round, wins, len(docs), err)
		}
	}
}
