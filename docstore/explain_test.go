package docstore_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cairndb/cairn/docstore"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// explainFixture is a fixed data set: 400 documents, status split in
// two, email unique per document, age over 80 values, indexes on the
// three, analyzed.
func explainFixture(t *testing.T) *docstore.Collection {
	t.Helper()
	db, _ := newDB(t)
	ctx := t.Context()
	c := db.Collection("people")
	for i := range 400 {
		status := "active"
		if i%2 == 1 {
			status = "closed"
		}
		d := docstore.Doc{"_id": fmt.Sprintf("p%03d", i), "status": status, "email": fmt.Sprintf("u%03d@x", i), "age": json.Number(fmt.Sprint(i % 80))}
		if _, _, err := c.Insert(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"status", "email", "age"} {
		if err := c.CreateIndex(ctx, docstore.IndexSpec{Name: "by_" + f, Fields: []string{f}}); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// The planner picks an index when it is selective and the scan when it is
// not, with statistics; its estimates are checked against golden files
// (go test -run TestExplainGolden -update rewrites them), and every
// chosen plan returns what the scan returns.
func TestExplainGolden(t *testing.T) {
	c := explainFixture(t)
	ctx := t.Context()
	queries := []struct {
		name, filter, want string
		sort               []string
		limit              int
	}{
		{"selective equality", `{"email":"u007@x"}`, "by_email", nil, 0},
		{"unselective equality", `{"status":"active"}`, "full_scan", nil, 0},
		{"selective range", `{"age":{"$gte":76}}`, "by_age", nil, 0},
		{"unselective range", `{"age":{"$gte":10}}`, "full_scan", nil, 0},
		{"two indexed conditions", `{"status":"closed","email":{"$in":["u001@x","u003@x"]}}`, "by_email", nil, 0},
		{"two unselective conditions, selective together", `{"status":"closed","age":{"$gte":72}}`, "by_status,by_age", nil, 0},
		{"the youngest five", `{}`, "by_age", []string{"age"}, 5},
		{"the youngest five closed", `{"status":"closed"}`, "by_age", []string{"age"}, 5},
		{"the youngest five of a rare email", `{"email":"u123@x"}`, "by_email", []string{"age"}, 5},
		{"the oldest five", `{}`, "by_age", []string{"-age"}, 5},
		{"the oldest five closed", `{"status":"closed"}`, "by_age", []string{"-age", "email"}, 5},
	}
	// Without statistics the fixed rule picks any serving index.
	ex, err := c.Explain(ctx, docstore.Query{Filter: filter(t, `{"status":"active"}`)})
	if err != nil || ex.Statistics || ex.Chosen.Index != "by_status" {
		t.Fatalf("before analyze: %+v %v", ex, err)
	}
	st, err := c.Analyze(ctx)
	if err != nil || st.Docs != 400 || st.Indexes["by_status"].Distinct != 2 || st.Indexes["by_email"].Distinct != 400 || st.Indexes["by_age"].Distinct != 80 {
		t.Fatalf("analyze: %+v %v", st, err)
	}
	var golden bytes.Buffer
	for _, q := range queries {
		query := docstore.Query{Filter: filter(t, q.filter), Sort: q.sort, Limit: q.limit}
		ex, err := c.Explain(ctx, query)
		if err != nil {
			t.Fatal(err)
		}
		chosen := ex.Chosen.Index
		if chosen == "" {
			chosen = ex.Chosen.Access
		}
		if chosen != q.want || !ex.Statistics {
			t.Errorf("%s: chose %s, want %s (%+v)", q.name, chosen, q.want, ex)
		}
		var actual int64
		for _, s := range ex.Shards {
			actual += s.Actual
		}
		if actual != ex.ActualRows || len(ex.Shards) != 3 {
			t.Errorf("%s: shard rows %+v do not add up to %d", q.name, ex.Shards, ex.ActualRows)
		}
		forced := query
		forced.Hint = docstore.HintScan
		scan, scanCursor, _ := c.Find(ctx, forced)
		got, cursor, _ := c.Find(ctx, query)
		if !slices.Equal(ids(got), ids(scan)) || (cursor == "") != (scanCursor == "") || ex.Returned != len(scan) {
			t.Errorf("%s: the chosen plan returned %v, the scan %v (explain returned %d)", q.name, ids(got), ids(scan), ex.Returned)
		}
		ex.AnalyzedAt = "" // a time
		shown := map[string]any{"query": q.filter, "explain": ex}
		if q.sort != nil {
			shown["sort"], shown["limit"] = q.sort, q.limit
		}
		b, _ := json.MarshalIndent(shown, "", "  ")
		golden.Write(append(b, '\n'))
	}
	// A page after a cursor reads the index from the cursor's sort value:
	// the tenth page costs what the first does, in either direction.
	for _, sort := range []string{"age", "-age"} {
		q := docstore.Query{Sort: []string{sort}, Limit: 5}
		var rows []int64
		for page := 0; page < 10; page++ {
			ex, err := c.Explain(ctx, q)
			if err != nil || ex.Chosen.Access != "sort_index" || ex.Chosen.Reverse != (sort == "-age") || ex.Returned != 5 {
				t.Fatalf("sort %s, page %d: %+v %v", sort, page, ex, err)
			}
			rows = append(rows, ex.ActualRows)
			if _, q.Cursor, err = c.Find(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		if rows[9] > rows[0] {
			t.Errorf("sort %s: documents read per page %v: the tenth page read more than the first", sort, rows)
		}
	}
	path := filepath.Join("testdata", "explain.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, golden.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(golden.Bytes(), want) {
		t.Errorf("explain differs from %s (run with -update after checking):\n%s", path, golden.String())
	}
}
