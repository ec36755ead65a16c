package docstore_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairndb/cairn/docstore"
	"github.com/cairndb/cairn/fsm"
)

func newDB(t *testing.T) (*docstore.DB, *memKV) {
	t.Helper()
	kv := newMemKV()
	var mu sync.Mutex
	clock := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	return docstore.New(kv, docstore.Options{MaxDocSize: 4096, Now: func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		clock = clock.Add(time.Second)
		return clock
	}}), kv
}

func doc(t *testing.T, s string) docstore.Doc {
	t.Helper()
	d, err := docstore.ParseDoc([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func asJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestDocumentLifecycle(t *testing.T) {
	db, kv := newDB(t)
	ctx := t.Context()
	users := db.Collection("users")

	id, v1, err := users.Insert(ctx, doc(t, `{"_id":"ann","age":31,"tags":["a","b"],"_version":99,"_created_at":"forged"}`))
	if err != nil || id != "ann" || v1 == 0 {
		t.Fatalf("insert: %q %d %v", id, v1, err)
	}
	got, err := users.Get(ctx, "ann")
	if err != nil {
		t.Fatal(err)
	}
	if got["age"] != json.Number("31") || got["_version"] != json.Number(fmt.Sprint(v1)) ||
		got["_created_at"] != "2026-11-26T12:00:01Z" || got["_updated_at"] != got["_created_at"] {
		t.Fatalf("stored document: %s", asJSON(got))
	}
	// A generated _id; the same _id twice is refused.
	gen, _, err := users.Insert(ctx, doc(t, `{"age":5}`))
	if err != nil || len(gen) != 24 {
		t.Fatalf("generated id %q, %v", gen, err)
	}
	if _, _, err := users.Insert(ctx, doc(t, `{"_id":"ann"}`)); !errors.Is(err, docstore.ErrExists) {
		t.Fatalf("second insert of ann: %v", err)
	}

	// Replace keeps _created_at, moves _updated_at and the version.
	v2, err := users.Replace(ctx, "ann", doc(t, `{"age":32}`), &v1)
	if err != nil || v2 <= v1 {
		t.Fatalf("replace: %d %v", v2, err)
	}
	got, _ = users.Get(ctx, "ann")
	if got["age"] != json.Number("32") || got["tags"] != nil || got["_created_at"] != "2026-11-26T12:00:01Z" || got["_updated_at"] == got["_created_at"] {
		t.Fatalf("after replace: %s", asJSON(got))
	}
	if _, err := users.Replace(ctx, "ann", doc(t, `{"age":1}`), &v1); !errors.Is(err, fsm.ErrVersionMismatch) {
		t.Fatalf("replace at an old version: %v", err)
	}
	if _, err := users.Replace(ctx, "ann", doc(t, `{"_id":"bob"}`), nil); !errors.Is(err, fsm.ErrInvalid) {
		t.Fatalf("replace changing _id: %v", err)
	}

	// Merge patch: objects merge, null removes, arrays replace.
	if _, err := users.Replace(ctx, "ann", doc(t, `{"name":{"first":"Ann","last":"Lee"},"tags":["x"],"age":32}`), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := users.Patch(ctx, "ann", doc(t, `{"name":{"last":null,"middle":"Q"},"tags":["y","z"],"age":null,"city":"Oslo"}`), nil); err != nil {
		t.Fatal(err)
	}
	got, _ = users.Get(ctx, "ann")
	if asJSON(got["name"]) != `{"first":"Ann","middle":"Q"}` || asJSON(got["tags"]) != `["y","z"]` || got["age"] != nil || got["city"] != "Oslo" {
		t.Fatalf("after patch: %s", asJSON(got))
	}

	// Delete with a stale version is refused, then goes.
	if err := users.Delete(ctx, "ann", &v1); !errors.Is(err, fsm.ErrVersionMismatch) {
		t.Fatalf("delete at an old version: %v", err)
	}
	if err := users.Delete(ctx, "ann", nil); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		func() error { _, err := users.Get(ctx, "ann"); return err }(),
		users.Delete(ctx, "ann", nil),
		func() error { _, err := users.Patch(ctx, "ann", doc(t, `{}`), nil); return err }(),
	} {
		if !errors.Is(err, fsm.ErrNotFound) {
			t.Fatalf("after delete: %v, want not found", err)
		}
	}

	// Collections: created by the first insert, listed, dropped with their
	// documents.
	if _, _, err := db.Collection("orders").Insert(ctx, doc(t, `{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	names, err := db.Collections(ctx)
	if err != nil || !slices.Equal(names, []string{"orders", "users"}) {
		t.Fatalf("collections %v %v", names, err)
	}
	if err := users.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	if names, _ := db.Collections(ctx); !slices.Equal(names, []string{"orders"}) {
		t.Fatalf("after drop: %v", names)
	}
	if docs, _, err := users.Find(ctx, docstore.Query{}); err != nil || len(docs) != 0 {
		t.Fatalf("documents after drop: %d %v", len(docs), err)
	}
	if docs, _, _ := db.Collection("orders").Find(ctx, docstore.Query{}); len(docs) != 1 {
		t.Fatalf("the other collection lost documents: %d", len(docs))
	}
	// Inserting again recreates the dropped collection.
	if _, _, err := users.Insert(ctx, doc(t, `{"_id":"new"}`)); err != nil {
		t.Fatal(err)
	}
	if names, _ := db.Collections(ctx); !slices.Equal(names, []string{"orders", "users"}) {
		t.Fatalf("after re-insert: %v", names)
	}
	_ = kv
}

// Bad input is refused before anything is written.
func TestRejectsBadInput(t *testing.T) {
	db, kv := newDB(t)
	ctx := t.Context()
	c := db.Collection("c")
	for name, call := range map[string]func() error{
		"empty collection name": func() error { _, _, err := db.Collection("").Insert(ctx, docstore.Doc{}); return err },
		"collection with slash": func() error { _, _, err := db.Collection("a/b").Insert(ctx, docstore.Doc{}); return err },
		"collection with _":     func() error { _, _, err := db.Collection("_x").Insert(ctx, docstore.Doc{}); return err },
		"numeric _id":           func() error { _, _, err := c.Insert(ctx, doc(t, `{"_id":5}`)); return err },
		"empty _id":             func() error { _, _, err := c.Insert(ctx, doc(t, `{"_id":""}`)); return err },
		"_id with _":            func() error { _, _, err := c.Insert(ctx, doc(t, `{"_id":"_find"}`)); return err },
		"long _id":              func() error { _, _, err := c.Insert(ctx, docstore.Doc{"_id": strings.Repeat("x", 600)}); return err },
		"get of a bad _id":      func() error { _, err := c.Get(ctx, ""); return err },
		"index on _version":     func() error { return c.CreateIndex(ctx, docstore.IndexSpec{Name: "v", Fields: []string{"_version"}}) },
		"index without fields":  func() error { return c.CreateIndex(ctx, docstore.IndexSpec{Name: "v"}) },
		"index with bad name":   func() error { return c.CreateIndex(ctx, docstore.IndexSpec{Name: "_u", Fields: []string{"a"}}) },
	} {
		if err := call(); !errors.Is(err, fsm.ErrInvalid) {
			t.Fatalf("%s: %v, want invalid", name, err)
		}
	}
	if _, _, err := c.Insert(ctx, docstore.Doc{"big": strings.Repeat("x", 5000)}); !errors.Is(err, fsm.ErrTooLarge) {
		t.Fatalf("large document: %v", err)
	}
	for _, s := range []string{`[1]`, `"x"`, `{"a":1} {}`, `{"a":`, `{"a":1}]`, `{"a":1}}`} {
		if _, err := docstore.ParseDoc([]byte(s)); !errors.Is(err, fsm.ErrInvalid) {
			t.Fatalf("parse %s: %v", s, err)
		}
	}
	if kv.writes != 0 {
		t.Fatalf("%d writes for refused input", kv.writes)
	}
}
