package node

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cairndb/cairn/docstore"
)

// BenchmarkDocFind: indexed finds of ten documents each on a one-node
// cluster of four shards (every read local, each shard's first read a
// leadership round), run in parallel as the HTTP handler runs them but
// without HTTP. It shows what a find costs the node; go test -bench
// DocFind -benchtime 5s -count 5 ./node/ reports ns and allocations per
// find.
func BenchmarkDocFind(b *testing.B) {
	cfg := testNodeConfig(b.TempDir())
	n, err := Start(b.Context(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithTimeout(b.Context(), 30*time.Second)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	c := n.Docs().Collection("bench")
	const docs, perGroup = 2000, 10
	pad := make([]byte, 200)
	for i := range pad {
		pad[i] = 'a' + byte(i%26)
	}
	batch := make([]docstore.Doc, 0, 100)
	for i := range docs {
		batch = append(batch, docstore.Doc{"_id": fmt.Sprintf("d%05d", i), "grp": json.Number(fmt.Sprint(i / perGroup)),
			"age": json.Number(fmt.Sprint(i % 97)), "pad": string(pad)})
		if len(batch) == cap(batch) {
			for _, r := range c.InsertMany(ctx, batch) {
				if r.Err != nil {
					b.Fatal(r.Err)
				}
			}
			batch = batch[:0]
		}
	}
	for _, idx := range []string{"grp", "age"} {
		if err := c.CreateIndex(ctx, docstore.IndexSpec{Name: "by_" + idx, Fields: []string{idx}}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
		for pb.Next() {
			f, err := docstore.ParseFilter(map[string]any{"grp": json.Number(fmt.Sprint(rng.IntN(docs / perGroup)))})
			if err != nil {
				b.Fatal(err)
			}
			got, _, err := c.Find(b.Context(), docstore.Query{Filter: f})
			if err != nil || len(got) != perGroup {
				b.Fatalf("find: %d documents, %v", len(got), err)
			}
		}
	})
}
