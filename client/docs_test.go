package client_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cairndb/cairn/client"
)

func TestClientDocs(t *testing.T) {
	c := startNode(t)
	ctx := t.Context()
	id, v, err := c.InsertDoc(ctx, "users", map[string]any{"_id": "ann", "age": 31})
	if err != nil || id != "ann" || v == 0 {
		t.Fatalf("insert: %q %d %v", id, v, err)
	}
	if _, _, err := c.InsertDoc(ctx, "users", map[string]any{"_id": "ann"}); !errors.Is(err, client.ErrExists) {
		t.Fatalf("insert of a taken _id: %v", err)
	}
	gen, _, err := c.InsertDoc(ctx, "users", struct {
		Age int `json:"age"`
	}{52})
	if err != nil || gen == "" {
		t.Fatalf("insert with a generated _id: %q %v", gen, err)
	}
	stale := v + 1000
	if _, err := c.ReplaceDoc(ctx, "users", "ann", map[string]any{"age": 1}, &stale); !errors.Is(err, client.ErrVersionMismatch) {
		t.Fatalf("replace at a wrong version: %v", err)
	}
	v2, err := c.PatchDoc(ctx, "users", "ann", map[string]any{"age": 32, "city": "Oslo"}, &v)
	if err != nil || v2 <= v {
		t.Fatalf("patch: %d %v", v2, err)
	}
	d, err := c.GetDoc(ctx, "users", "ann")
	if err != nil || d["age"] != json.Number("32") || d["city"] != "Oslo" || d["_version"] != json.Number(jsonUint(v2)) {
		t.Fatalf("get: %v %v", d, err)
	}
	docs, cursor, err := c.FindDocs(ctx, "users", client.FindRequest{Filter: map[string]any{"age": map[string]any{"$gt": 40}}})
	if err != nil || cursor != "" || len(docs) != 1 || docs[0]["_id"] != gen {
		t.Fatalf("find: %v %q %v", docs, cursor, err)
	}
	if names, err := c.Collections(ctx); err != nil || !slices.Equal(names, []string{"users"}) {
		t.Fatalf("collections: %v %v", names, err)
	}
	if state, err := c.CreateIndex(ctx, "users", "by_age", "age"); err != nil || state != "ready" {
		t.Fatalf("create index: %q %v", state, err)
	}
	if list, err := c.Indexes(ctx, "users"); err != nil || len(list) != 1 || list[0].Name != "by_age" || list[0].State != "ready" || !slices.Equal(list[0].Fields, []string{"age"}) {
		t.Fatalf("indexes: %+v %v", list, err)
	}
	docs, _, err = c.FindDocs(ctx, "users", client.FindRequest{Filter: map[string]any{"age": 32}, Hint: "by_age"})
	if err != nil || len(docs) != 1 || docs[0]["_id"] != "ann" {
		t.Fatalf("find by index: %v %v", docs, err)
	}
	// The same page into the caller's struct, and as raw bytes.
	type user struct {
		ID      string `json:"_id"`
		Version uint64 `json:"_version"`
		Age     int    `json:"age"`
		City    string `json:"city"`
		Extra   any    `json:"extra"`
	}
	all := client.FindRequest{Sort: []string{"age"}}
	users, cursor, err := client.FindAs[user](ctx, c, "users", all)
	if err != nil || cursor != "" || len(users) != 2 || users[0] != (user{ID: "ann", Version: v2, Age: 32, City: "Oslo"}) || users[1].ID != gen || users[1].Age != 52 {
		t.Fatalf("find into a struct: %+v %q %v", users, cursor, err)
	}
	raw, _, err := client.FindAs[json.RawMessage](ctx, c, "users", all)
	maps, _, err2 := c.FindDocs(ctx, "users", all)
	if err != nil || err2 != nil || len(raw) != 2 || len(maps) != 2 {
		t.Fatalf("find raw: %d docs %v, as maps %d docs %v", len(raw), err, len(maps), err2)
	}
	for i := range raw {
		var d client.Doc
		dec := json.NewDecoder(strings.NewReader(string(raw[i])))
		dec.UseNumber()
		if err := dec.Decode(&d); err != nil || !reflect.DeepEqual(d, maps[i]) {
			t.Fatalf("raw document %d %s decodes to %v (%v), FindDocs gave %v", i, raw[i], d, err, maps[i])
		}
	}
	if st, err := c.Analyze(ctx, "users"); err != nil || !strings.Contains(string(st), `"docs":2`) {
		t.Fatalf("analyze: %s %v", st, err)
	}
	if ex, err := c.Explain(ctx, "users", client.FindRequest{Filter: map[string]any{"age": 32}}); err != nil || !strings.Contains(string(ex), `"index":"by_age"`) {
		t.Fatalf("explain: %s %v", ex, err)
	}
	if err := c.DropIndex(ctx, "users", "by_age"); err != nil {
		t.Fatal(err)
	}
	if err := c.DropIndex(ctx, "users", "by_age"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("second drop: %v", err)
	}
	if err := c.DeleteDoc(ctx, "users", "ann", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetDoc(ctx, "users", "ann"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if err := c.DropCollection(ctx, "users"); err != nil {
		t.Fatal(err)
	}
	if names, err := c.Collections(ctx); err != nil || len(names) != 0 {
		t.Fatalf("collections after drop: %v %v", names, err)
	}
}

func jsonUint(v uint64) string {
	b, _ := json.Marshal(v)
	return string(b)
}
