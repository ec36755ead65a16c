package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/node"
)

// Documents with a secondary and a unique index on three kvnode processes,
// written by four writers while two nodes are SIGKILLed and restarted in
// turn. Afterwards every shard's replicas converge (equal state hashes at
// equal applied indexes: documents and index entries alike), and through
// every node each index answers exactly as a scan does and no two
// documents share a unique value.
func TestProcessDocIndexesSurviveKills(t *testing.T) {
	pc := startProcCluster(t, 3, 4)
	ctx := t.Context()
	c1 := pc.procs["n1"].client
	if _, err := c1.CreateIndex(ctx, "docs", "by_n", "n"); err != nil {
		t.Fatal(err)
	}
	if _, err := c1.CreateUniqueIndex(ctx, "docs", "by_email", "email"); err != nil {
		t.Fatal(err)
	}
	var down sync.Map // name → true while killed
	alive := func(r *rand.Rand) *client.Client {
		for {
			name := pc.names[r.IntN(len(pc.names))]
			if _, isDown := down.Load(name); !isDown {
				return pc.procs[name].client
			}
		}
	}
	var stop atomic.Bool
	var acked, refused atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 77))
			for !stop.Load() {
				c := alive(r)
				id := fmt.Sprintf("d%03d", r.IntN(150))
				octx, cancel := context.WithTimeout(ctx, 3*time.Second)
				var err error
				switch r.IntN(4) {
				case 0, 1:
					_, _, err = c.InsertDoc(octx, "docs", map[string]any{"_id": id, "n": r.IntN(10), "email": fmt.Sprint("e", r.IntN(300))})
				case 2:
					_, err = c.PatchDoc(octx, "docs", id, map[string]any{"n": r.IntN(10), "email": fmt.Sprint("e", r.IntN(300))}, nil)
				default:
					err = c.DeleteDoc(octx, "docs", id, nil)
				}
				cancel()
				switch {
				case err == nil:
					acked.Add(1)
				case errors.Is(err, client.ErrExists), errors.Is(err, client.ErrUniqueViolation), errors.Is(err, client.ErrNotFound):
					refused.Add(1)
				}
			}
		})
	}
	// Faults are spaced by progress, not time: each phase waits until the
	// writers have had more writes acknowledged (a slow machine just takes
	// longer), and the load ends once it has exercised the indexes.
	progress := func(what string, more int64, done func() bool) {
		t.Helper()
		want := acked.Load() + more
		deadline := time.Now().Add(60 * time.Second)
		for acked.Load() < want || !done() {
			if time.Now().After(deadline) {
				stop.Store(true)
				wg.Wait()
				t.Fatalf("%s: %d writes acknowledged, %d refused after a minute (wanted %d acknowledged)", what, acked.Load(), refused.Load(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	always := func() bool { return true }
	for _, victim := range []string{"n2", "n3"} {
		progress("before killing "+victim, 40, always)
		down.Store(victim, true)
		pc.procs[victim].kill()
		progress("while "+victim+" is down", 30, always)
		pc.procs[victim].start()
		pc.waitReady(60 * time.Second)
		down.Delete(victim)
	}
	progress("after the restarts", 30, func() bool { return acked.Load() >= 150 && refused.Load() > 0 })
	stop.Store(true)
	wg.Wait()
	t.Logf("%d writes acknowledged, %d refused (taken _id, taken email, absent)", acked.Load(), refused.Load())

	waitConverged(t, pc, 60*time.Second)
	for _, name := range pc.names {
		c := pc.procs[name].client
		all, cursor, err := c.FindDocs(ctx, "docs", client.FindRequest{Hint: "_scan"})
		if err != nil || cursor != "" || len(all) == 0 {
			t.Fatalf("%s: scan: %d docs, %v", name, len(all), err)
		}
		emails := map[any]string{}
		for _, d := range all {
			if other, dup := emails[d["email"]]; dup {
				t.Fatalf("%s: %s and %s share email %v", name, other, d["_id"], d["email"])
			}
			emails[d["email"]] = d["_id"].(string)
		}
		for n := range 10 {
			f := map[string]any{"n": n}
			scan, _, err1 := c.FindDocs(ctx, "docs", client.FindRequest{Filter: f, Hint: "_scan"})
			byN, _, err2 := c.FindDocs(ctx, "docs", client.FindRequest{Filter: f, Hint: "by_n"})
			if err1 != nil || err2 != nil || !slices.Equal(docIDs(scan), docIDs(byN)) {
				t.Fatalf("%s: n=%d: by_n %v, scan %v (%v %v)", name, n, docIDs(byN), docIDs(scan), err1, err2)
			}
		}
		for email, id := range emails {
			got, _, err := c.FindDocs(ctx, "docs", client.FindRequest{Filter: map[string]any{"email": email}, Hint: "by_email"})
			if err != nil || len(got) != 1 || got[0]["_id"] != id {
				t.Fatalf("%s: email %v: %v, want %s (%v)", name, email, docIDs(got), id, err)
			}
		}
	}
}

func docIDs(docs []client.Doc) []string {
	var out []string
	for _, d := range docs {
		out = append(out, d["_id"].(string))
	}
	return out
}

// waitConverged waits until every shard's replicas, across all nodes,
// report one applied index and one state hash.
func waitConverged(t *testing.T, pc *procCluster, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var problem string
	for time.Now().Before(deadline) {
		byShard := map[uint64][]node.ReplicaState{}
		problem = ""
		for _, name := range pc.names {
			resp, err := http.Get("http://" + pc.procs[name].http + "/v1/cluster/replicas")
			if err != nil {
				problem = err.Error()
				break
			}
			var body struct{ Replicas []node.ReplicaState }
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if err != nil {
				problem = err.Error()
				break
			}
			for _, r := range body.Replicas {
				byShard[r.Shard] = append(byShard[r.Shard], r)
			}
		}
		for shard, rs := range byShard {
			for _, r := range rs[1:] {
				if r.Applied != rs[0].Applied || r.StateHash != rs[0].StateHash || r.StateHash == "" {
					problem = fmt.Sprintf("shard %d: %+v", shard, rs)
				}
			}
		}
		if problem == "" && len(byShard) == 5 {
			return
		}
		time.Sleep(200 * time.Millisecond) // poll until the replicas catch up
	}
	t.Fatalf("replicas did not converge within %v: %s", timeout, problem)
}
