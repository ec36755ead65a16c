package docstore_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cairndb/cairn/docstore"
	"github.com/cairndb/cairn/fsm"
)

func filter(t *testing.T, s string) *docstore.Filter {
	t.Helper()
	var v any
	dec := json.NewDecoder(stringsReader(s))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	f, err := docstore.ParseFilter(v)
	if err != nil {
		t.Fatalf("filter %s: %v", s, err)
	}
	return f
}

func TestFilterOperators(t *testing.T) {
	docs := map[string]string{
		"a": `{"n":1,"s":"apple","tags":["x","y"],"o":{"k":1,"deep":{"v":true}},"items":[{"q":1},{"q":5}]}`,
		"b": `{"n":2.0,"s":"banana","tags":[],"o":{"k":2},"items":[{"q":2}]}`,
		"c": `{"n":"3","s":null,"tags":"x","items":[]}`,
		"d": `{"n":1.5,"arr":[[1,2],3]}`,
	}
	parsed := map[string]docstore.Doc{}
	for id, s := range docs {
		parsed[id] = doc(t, s)
	}
	for _, tt := range []struct {
		filter string
		want   []string
	}{
		{`{}`, []string{"a", "b", "c", "d"}},
		{`{"n":1}`, []string{"a"}},
		{`{"n":2}`, []string{"b"}},                       // 2 and 2.0 are one number
		{`{"n":{"$gt":1}}`, []string{"b", "d"}},          // "3" is a string: not compared with numbers
		{`{"n":{"$gte":1,"$lt":2}}`, []string{"a", "d"}}, // both bounds
		{`{"n":{"$lte":"3"}}`, []string{"c"}},            // strings with strings
		{`{"n":{"$ne":1}}`, []string{"b", "c", "d"}},     //
		{`{"n":{"$in":[1,"3"]}}`, []string{"a", "c"}},    //
		{`{"n":{"$nin":[1,"3"]}}`, []string{"b", "d"}},   //
		{`{"tags":"x"}`, []string{"a", "c"}},             // an element of an array, or the value
		{`{"tags":["x","y"]}`, []string{"a"}},            // the whole array
		{`{"tags":{"$exists":true}}`, []string{"a", "b", "c"}},
		{`{"tags":{"$exists":false}}`, []string{"d"}},
		{`{"s":null}`, []string{"c", "d"}},                    // null, or missing
		{`{"s":{"$ne":null}}`, []string{"a", "b"}},            //
		{`{"s":{"$prefix":"ba"}}`, []string{"b"}},             //
		{`{"o.k":2}`, []string{"b"}},                          // dotted path
		{`{"o.deep.v":true}`, []string{"a"}},                  //
		{`{"o":{"k":2}}`, []string{"b"}},                      // an object value, compared whole
		{`{"items.q":5}`, []string{"a"}},                      // through an array of objects
		{`{"items.q":{"$gt":1,"$lt":3}}`, []string{"a", "b"}}, // each bound by some element
		{`{"arr":[1,2]}`, []string{"d"}},                      // an element that is an array
		{`{"$or":[{"n":1},{"s":"banana"}]}`, []string{"a", "b"}},
		{`{"$and":[{"n":{"$gt":0}},{"n":{"$lt":2}}],"s":"apple"}`, []string{"a"}},
	} {
		f := filter(t, tt.filter)
		var got []string
		for id, d := range parsed {
			if f.Match(d) {
				got = append(got, id)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s matched %v, want %v", tt.filter, got, tt.want)
		}
	}
	for _, bad := range []string{`[1]`, `{"$nor":[]}`, `{"$or":[]}`, `{"a":{"$in":1}}`, `{"a":{"$exists":1}}`, `{"a":{"$prefix":1}}`, `{"a":{"$regex":"x"}}`, `{"a..b":1}`, `{".a":1}`} {
		var v any
		_ = json.Unmarshal([]byte(bad), &v)
		if _, err := docstore.ParseFilter(v); !errors.Is(err, fsm.ErrInvalid) {
			t.Errorf("filter %s: %v, want invalid", bad, err)
		}
	}
}

// Pages of any size, followed by their cursors, give exactly the one-page
// answer, in order; sorts order as asked and break ties by _id; fields
// keep what was asked and the managed fields.
func TestFindSortPagesAndFields(t *testing.T) {
	db, _ := newDB(t)
	ctx := t.Context()
	c := db.Collection("people")
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 120 {
		d := docstore.Doc{"_id": fmt.Sprintf("p%03d", i), "group": json.Number(fmt.Sprint(r.IntN(4)))}
		if r.IntN(5) > 0 {
			d["age"] = json.Number(fmt.Sprint(r.IntN(30)))
		}
		if r.IntN(3) == 0 {
			d["nick"] = []any{"z" + fmt.Sprint(r.IntN(9)), "a" + fmt.Sprint(r.IntN(9))}
		}
		if _, _, err := c.Insert(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	for _, sort := range [][]string{nil, {"age"}, {"-age"}, {"group", "-age"}, {"nick"}, {"-nick"}} {
		q := docstore.Query{Filter: filter(t, `{"group":{"$in":[0,1,2]}}`), Sort: sort}
		all, cursor, err := c.Find(ctx, q)
		if err != nil || cursor != "" || len(all) == 0 {
			t.Fatalf("sort %v: %d docs, cursor %q, %v", sort, len(all), cursor, err)
		}
		for i := 1; i < len(all); i++ {
			if before(all[i], all[i-1], sort) {
				t.Fatalf("sort %v: %s before %s", sort, asJSON(all[i]), asJSON(all[i-1]))
			}
		}
		for _, size := range []int{1, 7, 50} {
			var paged []string
			q.Limit, q.Cursor = size, ""
			for {
				page, next, err := c.Find(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range page {
					paged = append(paged, d["_id"].(string))
				}
				if next == "" {
					break
				}
				if len(paged) > len(all) {
					t.Fatalf("sort %v, pages of %d: more documents than exist (%d), cursors do not advance", sort, size, len(paged))
				}
				q.Cursor = next
			}
			var want []string
			for _, d := range all {
				want = append(want, d["_id"].(string))
			}
			if !slices.Equal(paged, want) {
				t.Fatalf("sort %v, pages of %d: %v, want %v", sort, size, paged, want)
			}
		}
	}
	docs, _, err := c.Find(ctx, docstore.Query{Filter: filter(t, `{"_id":"p001"}`), Fields: []string{"age"}})
	if err != nil || len(docs) != 1 {
		t.Fatalf("fields: %v %v", docs, err)
	}
	for k := range docs[0] {
		if k != "age" && k != "_id" && k != "_version" && k != "_created_at" && k != "_updated_at" {
			t.Fatalf("projection kept %q: %s", k, asJSON(docs[0]))
		}
	}
	if _, _, err := c.Find(ctx, docstore.Query{Cursor: "!!"}); !errors.Is(err, fsm.ErrInvalid) {
		t.Fatalf("bad cursor: %v", err)
	}
}

// before reports whether a must come before b under sort (reference
// implementation: numbers, strings, missing as null first; arrays by their
// least element, or greatest when descending; then _id).
func before(a, b docstore.Doc, sort []string) bool {
	for _, s := range sort {
		desc := s[0] == '-'
		if desc {
			s = s[1:]
		}
		va, vb := refSortValue(a[s], desc), refSortValue(b[s], desc)
		if c := refCompare(va, vb); c != 0 {
			return (c < 0) != desc
		}
	}
	return a["_id"].(string) < b["_id"].(string)
}

func refSortValue(v any, desc bool) any {
	arr, ok := v.([]any)
	if !ok {
		return v
	}
	best := arr[0]
	for _, e := range arr[1:] {
		if (refCompare(e, best) < 0) != desc {
			best = e
		}
	}
	return best
}

// refCompare covers the types the test stores: nil, numbers, strings.
func refCompare(a, b any) int {
	rank := func(v any) int {
		switch v.(type) {
		case nil:
			return 0
		case json.Number:
			return 1
		}
		return 2
	}
	if ra, rb := rank(a), rank(b); ra != rb {
		return ra - rb
	}
	switch x := a.(type) {
	case json.Number:
		fa, _ := x.Float64()
		fb, _ := b.(json.Number).Float64()
		switch {
		case fa < fb:
			return -1
		case fa > fb:
			return 1
		}
	case string:
		switch {
		case x < b.(string):
			return -1
		case x > b.(string):
			return 1
		}
	}
	return 0
}
