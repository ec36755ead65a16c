package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairndb/cairn/client"
)

// benchConfig is what `kvnode bench` runs.
type benchConfig struct {
	addrs       []string
	clients     int
	duration    time.Duration
	keys        int
	valueSize   int
	readRatio   float64
	consistency string
	seed        uint64
	preload     bool
	jsonOut     bool
	routing     bool // clients send keys to their shard's leader (client.WithRouting)
	batch       int  // get requests in flight per node and client beyond which gets are batched (client.WithBatching)
	// txn: "" (puts and gets), "one-shard" or "cross-shard": every
	// operation is a transaction putting two keys, on one shard or on two.
	txn string
	// pairs[i] is the key written with key i in txn mode.
	pairs []int
	// docs: "" (keys), "insert" (every operation inserts a document into
	// the collection "bench", which has two indexes) or "find" (every
	// operation is an indexed equality query returning 10 of the --keys
	// documents --preload wrote); hint forces the find's plan.
	docs, hint string
	salt       int64 // makes inserted _ids unique across runs
}

// runBench is `kvnode bench`: a closed-loop load of puts and gets against
// one node or several (clients are spread over them), printing a progress
// line every second and a summary at the end.
func runBench(args []string, out io.Writer) error {
	var bc benchConfig
	fs := flag.NewFlagSet("kvnode bench", flag.ContinueOnError)
	addrs := fs.String("addr", "127.0.0.1:7070", "node HTTP address, or several separated by commas (clients are spread over them)")
	fs.IntVar(&bc.clients, "clients", 16, "concurrent clients (each one request at a time)")
	fs.DurationVar(&bc.duration, "duration", 10*time.Second, "how long to run (0 with --preload: only load the keys)")
	fs.IntVar(&bc.keys, "keys", 10000, "distinct keys")
	fs.IntVar(&bc.valueSize, "value-size", 256, "bytes per value")
	fs.Float64Var(&bc.readRatio, "read-ratio", 0.5, "fraction of operations that are gets")
	fs.StringVar(&bc.consistency, "consistency", "linearizable", "gets: linearizable or stale")
	fs.Uint64Var(&bc.seed, "seed", 1, "seed of the key and operation choice")
	fs.BoolVar(&bc.preload, "preload", false, "write every key once before the timed run (not measured)")
	fs.BoolVar(&bc.jsonOut, "json", false, "also print the summary as one JSON line")
	fs.BoolVar(&bc.routing, "routing", false, "keys and documents go straight to the node leading their shard (the client reads the ring and leaders from /v1/cluster)")
	fs.IntVar(&bc.batch, "batch", 0, "gets: each client keeps at most this many get requests in flight per node and sends the gets waiting beyond them together in one POST /v1/batch (0: every get a request of its own)")
	fs.StringVar(&bc.txn, "txn", "", "one-shard or cross-shard: every operation is a transaction putting two keys, on one shard or on two (read-ratio is ignored)")
	fs.StringVar(&bc.docs, "docs", "", "insert or find: every operation inserts a document into the collection bench (indexed by grp and age), or finds the 10 documents of one grp (--preload writes --keys documents first)")
	fs.StringVar(&bc.hint, "hint", "", "with --docs find: the plan, _scan (a scan of the collection) or an index name (default: chosen)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	bc.addrs = strings.Split(*addrs, ",")
	switch {
	case bc.clients < 1 || bc.keys < 1 || bc.valueSize < 0 || bc.duration < 0 || (bc.duration == 0 && !bc.preload):
		return fmt.Errorf("bench: clients, keys and duration must be positive (duration 0 only with --preload), value-size not negative")
	case bc.readRatio < 0 || bc.readRatio > 1:
		return fmt.Errorf("bench: read-ratio must be in [0, 1]")
	case bc.consistency != "linearizable" && bc.consistency != "stale":
		return fmt.Errorf("bench: consistency must be linearizable or stale")
	case bc.txn != "" && bc.txn != "one-shard" && bc.txn != "cross-shard":
		return fmt.Errorf("bench: txn must be one-shard or cross-shard")
	case bc.docs != "" && bc.docs != "insert" && bc.docs != "find" || bc.docs != "" && bc.txn != "":
		return fmt.Errorf("bench: docs must be insert or find, and not with --txn")
	}
	bc.salt = time.Now().UnixNano()
	clients := benchClients(bc)
	if bc.docs != "" {
		for _, idx := range [][2]string{{"by_grp", "grp"}, {"by_age", "age"}} {
			if _, err := clients[0].CreateIndex(context.Background(), benchColl, idx[0], idx[1]); err != nil {
				return fmt.Errorf("bench: create index %s: %w", idx[0], err)
			}
		}
	}
	if bc.txn != "" {
		var err error
		if bc.pairs, err = pairKeys(context.Background(), clients[0], bc.keys, bc.txn == "cross-shard"); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	if bc.preload {
		start := time.Now()
		n, err := preload(context.Background(), clients, bc, func(done int64) {
			fmt.Fprintf(os.Stderr, "\rpreloading %d / %d keys ", done, bc.keys)
		})
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return fmt.Errorf("bench: preload: %w", err)
		}
		fmt.Fprintf(out, "preloaded %d keys in %v (%.0f puts/s)\n", n, time.Since(start).Round(time.Millisecond), float64(n)/time.Since(start).Seconds())
		if bc.duration == 0 {
			return nil
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), bc.duration)
	defer cancel()
	res := bench(ctx, clients, bc, func(done, errs int64, elapsed time.Duration) {
		fmt.Fprintf(os.Stderr, "\r%6.1fs  %10d ops  %9.0f ops/s  %d errors ", elapsed.Seconds(), done, float64(done)/elapsed.Seconds(), errs)
	})
	fmt.Fprintln(os.Stderr)
	res.print(out, bc)
	if bc.jsonOut {
		return json.NewEncoder(out).Encode(res.summary(bc))
	}
	return nil
}

// benchClients returns one client per address (one in all when routed and
// batching), each with enough idle connections for the clients that use
// it (so none are redialled).
func benchClients(bc benchConfig) []*client.Client {
	var out []*client.Client
	per := bc.clients/len(bc.addrs) + 1
	for _, a := range bc.addrs {
		// A routing client talks to every node, so its idle connections
		// are bounded per node, not in all.
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: per, MaxIdleConns: per * len(bc.addrs), IdleConnTimeout: time.Minute}}
		opts := []client.Option{client.WithRetries(0, 0), client.WithHTTPClient(hc)}
		if bc.routing {
			opts = append(opts, client.WithRouting())
		}
		if bc.batch > 0 {
			opts = append(opts, client.WithBatching(bc.batch))
		}
		out = append(out, client.New(a, opts...))
	}
	if bc.routing && bc.batch > 0 {
		// Routed and batching, all clients share one, as the goroutines
		// of one program would, so that the gets waiting for a node
		// gather into one batch rather than one per client.
		out = out[:1]
	}
	return out
}

func benchKey(i int) string { return fmt.Sprintf("bench/%08d", i) }

// preload writes every key once, spread over the clients.
func preload(ctx context.Context, clients []*client.Client, bc benchConfig, progress func(int64)) (int64, error) {
	var next, done atomic.Int64
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var firstErr error
	value := make([]byte, bc.valueSize)
	for i := range bc.clients {
		wg.Go(func() {
			c := clients[i%len(clients)]
			for {
				k := next.Add(1) - 1
				if k >= int64(bc.keys) {
					return
				}
				var err error
				if bc.docs != "" {
					_, _, err = c.InsertDoc(ctx, benchColl, benchDoc(fmt.Sprintf("p%08d", k), int(k), bc.valueSize))
					if errors.Is(err, client.ErrExists) {
						err = nil // preloaded by an earlier run
					}
				} else {
					_, err = c.Put(ctx, benchKey(int(k)), value)
				}
				if err != nil {
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
					return
				}
				if d := done.Add(1); d%10000 == 0 {
					progress(d)
				}
			}
		})
	}
	wg.Wait()
	return done.Load(), firstErr
}

type benchResult struct {
	elapsed    time.Duration
	puts, gets []time.Duration // latencies of successful operations
	errors     int64
	firstError error
}

// bench runs the load until ctx ends; progress is called once a second.
func bench(ctx context.Context, clients []*client.Client, bc benchConfig, progress func(done, errs int64, elapsed time.Duration)) benchResult {
	var done, errs atomic.Int64
	var mu sync.Mutex
	res := benchResult{}
	start := time.Now()
	stopProgress := make(chan struct{})
	var pwg sync.WaitGroup
	pwg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				progress(done.Load(), errs.Load(), time.Since(start))
			case <-stopProgress:
				return
			}
		}
	})
	var wg sync.WaitGroup
	for i := range bc.clients {
		wg.Go(func() {
			c := clients[i%len(clients)]
			rng := rand.New(rand.NewPCG(bc.seed, uint64(i)))
			value := make([]byte, bc.valueSize)
			var puts, gets []time.Duration
			var firstErr error
			n := 0
			for ctx.Err() == nil {
				key := benchKey(rng.IntN(bc.keys))
				isGet := rng.Float64() < bc.readRatio && bc.txn == "" && bc.docs == ""
				t0 := time.Now()
				var err error
				switch {
				case bc.docs == "insert":
					n++
					id := fmt.Sprintf("i%x-%d-%d", bc.salt, i, n)
					_, _, err = c.InsertDoc(ctx, benchColl, benchDoc(id, rng.IntN(1<<30), bc.valueSize))
				case bc.docs == "find":
					grp := rng.IntN(max(bc.keys/10, 1))
					var docs []client.Doc
					docs, _, err = c.FindDocs(ctx, benchColl, client.FindRequest{Filter: map[string]any{"grp": grp}, Hint: bc.hint})
					if err == nil && len(docs) == 0 {
						err = fmt.Errorf("grp %d: no documents (run with --preload first)", grp)
					}
				case bc.txn != "":
					i := rng.IntN(bc.keys)
					for j := range value {
						value[j] = byte(rng.Uint32())
					}
					_, err = c.Txn(ctx, client.Txn{Then: []client.TxnOp{
						client.TxnPut(benchKey(i), value), client.TxnPut(benchKey(bc.pairs[i]), value)}})
				case isGet:
					var opts []client.ReadOption
					if bc.consistency == "stale" {
						opts = append(opts, client.Stale(0))
					}
					_, _, err = c.Get(ctx, key, opts...)
					if err != nil && errors.Is(err, client.ErrNotFound) {
						err = nil // a key not written yet is a valid answer
					}
				default:
					for j := range value {
						value[j] = byte(rng.Uint32())
					}
					_, err = c.Put(ctx, key, value)
				}
				took := time.Since(t0)
				if ctx.Err() != nil {
					break // interrupted by the end of the run: not counted
				}
				if err != nil {
					errs.Add(1)
					if firstErr == nil {
						firstErr = err
					}
					continue
				}
				done.Add(1)
				if isGet {
					gets = append(gets, took)
				} else {
					puts = append(puts, took)
				}
			}
			mu.Lock()
			res.puts = append(res.puts, puts...)
			res.gets = append(res.gets, gets...)
			if res.firstError == nil {
				res.firstError = firstErr
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	close(stopProgress)
	pwg.Wait()
	res.elapsed = time.Since(start)
	res.errors = errs.Load()
	return res
}

func (r benchResult) print(out io.Writer, bc benchConfig) {
	total := len(r.puts) + len(r.gets)
	fmt.Fprintf(out, "%d clients over %d node(s), %v, %d keys, %d-byte values, read ratio %.2f (%s)\n",
		bc.clients, len(bc.addrs), r.elapsed.Round(time.Millisecond), bc.keys, bc.valueSize, bc.readRatio, bc.consistency)
	fmt.Fprintf(out, "%-5s %10s %10s %9s %9s %9s\n", "op", "count", "ops/s", "p50", "p99", "p99.9")
	for _, row := range []struct {
		name string
		lat  []time.Duration
	}{{opName(bc), r.puts}, {"get", r.gets}, {"all", append(slices.Clone(r.puts), r.gets...)}} {
		if len(row.lat) == 0 {
			continue
		}
		slices.Sort(row.lat)
		fmt.Fprintf(out, "%-5s %10d %10.0f %9s %9s %9s\n", row.name, len(row.lat), float64(len(row.lat))/r.elapsed.Seconds(),
			ms(pct(row.lat, 0.50)), ms(pct(row.lat, 0.99)), ms(pct(row.lat, 0.999)))
	}
	if r.errors > 0 {
		fmt.Fprintf(out, "%d errors (%.2f%%); first: %v\n", r.errors, 100*float64(r.errors)/float64(int64(total)+r.errors), r.firstError)
	}
}

// benchSummary is the one-line JSON form of a run, for scripts.
type benchSummary struct {
	Clients     int     `json:"clients"`
	ReadRatio   float64 `json:"read_ratio"`
	Consistency string  `json:"consistency"`
	OpsPerSec   float64 `json:"ops_per_sec"`
	PutP50      float64 `json:"put_p50_ms"`
	PutP99      float64 `json:"put_p99_ms"`
	PutP999     float64 `json:"put_p999_ms"`
	GetP50      float64 `json:"get_p50_ms"`
	GetP99      float64 `json:"get_p99_ms"`
	GetP999     float64 `json:"get_p999_ms"`
	Errors      int64   `json:"errors"`
}

func (r benchResult) summary(bc benchConfig) benchSummary {
	s := benchSummary{
		Clients: bc.clients, ReadRatio: bc.readRatio, Consistency: bc.consistency, Errors: r.errors,
		OpsPerSec: float64(len(r.puts)+len(r.gets)) / r.elapsed.Seconds(),
	}
	msf := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	if len(r.puts) > 0 {
		p := slices.Sorted(slices.Values(r.puts))
		s.PutP50, s.PutP99, s.PutP999 = msf(pct(p, 0.5)), msf(pct(p, 0.99)), msf(pct(p, 0.999))
	}
	if len(r.gets) > 0 {
		g := slices.Sorted(slices.Values(r.gets))
		s.GetP50, s.GetP99, s.GetP999 = msf(pct(g, 0.5)), msf(pct(g, 0.99)), msf(pct(g, 0.999))
	}
	return s
}

func pct(sorted []time.Duration, p float64) time.Duration {
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }

func opName(bc benchConfig) string {
	switch {
	case bc.docs != "":
		return bc.docs
	case bc.txn != "":
		return "txn"
	}
	return "put"
}

// benchColl is the collection of --docs.
const benchColl = "bench"

// benchDoc is document number k: grp k/10 (10 documents per group), age
// k%100, a city, and a padding field of padSize bytes.
func benchDoc(id string, k, padSize int) map[string]any {
	return map[string]any{"_id": id, "grp": k / 10, "age": k % 100, "city": fmt.Sprint("city-", k%50), "pad": strings.Repeat("x", padSize)}
}

// pairKeys pairs every key with another on the same shard (cross false) or
// on a different one, asking the node where each key lives.
func pairKeys(ctx context.Context, c *client.Client, keys int, cross bool) ([]int, error) {
	byShard := map[uint64][]int{}
	shardOf := make([]uint64, keys)
	for i := range keys {
		s, err := c.Locate(ctx, benchKey(i))
		if err != nil {
			return nil, fmt.Errorf("locate %s: %w", benchKey(i), err)
		}
		shardOf[i] = s
		byShard[s] = append(byShard[s], i)
	}
	shards := slices.Sorted(maps.Keys(byShard))
	if cross && len(shards) < 2 {
		return nil, errors.New("cross-shard transactions need a cluster with at least two data shards")
	}
	pairs := make([]int, keys)
	for i := range keys {
		same := byShard[shardOf[i]]
		if !cross {
			if len(same) < 2 {
				return nil, fmt.Errorf("shard %d holds only one of the %d keys", shardOf[i], keys)
			}
			p := same[(slices.Index(same, i)+1)%len(same)]
			pairs[i] = p
			continue
		}
		other := shards[(slices.Index(shards, shardOf[i])+1)%len(shards)]
		list := byShard[other]
		pairs[i] = list[i%len(list)]
	}
	return pairs, nil
}
