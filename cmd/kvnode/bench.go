package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairndb/cairn/client"
)

// benchConfig is what `kvnode bench` runs.
type benchConfig struct {
	addr        string
	clients     int
	duration    time.Duration
	keys        int
	valueSize   int
	readRatio   float64
	consistency string
	seed        uint64
}

// runBench is `kvnode bench`: a closed-loop load of puts and gets against a
// node, printing a progress line every second and a summary at the end.
func runBench(args []string, out io.Writer) error {
	var bc benchConfig
	fs := flag.NewFlagSet("kvnode bench", flag.ContinueOnError)
	fs.StringVar(&bc.addr, "addr", "127.0.0.1:7070", "node HTTP address")
	fs.IntVar(&bc.clients, "clients", 16, "concurrent clients")
	fs.DurationVar(&bc.duration, "duration", 10*time.Second, "how long to run")
	fs.IntVar(&bc.keys, "keys", 10000, "distinct keys")
	fs.IntVar(&bc.valueSize, "value-size", 256, "bytes per value")
	fs.Float64Var(&bc.readRatio, "read-ratio", 0.5, "fraction of operations that are gets")
	fs.StringVar(&bc.consistency, "consistency", "linearizable", "gets: linearizable or stale")
	fs.Uint64Var(&bc.seed, "seed", 1, "seed of the key and operation choice")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case bc.clients < 1 || bc.keys < 1 || bc.valueSize < 0 || bc.duration <= 0:
		return fmt.Errorf("bench: clients, keys and duration must be positive, value-size not negative")
	case bc.readRatio < 0 || bc.readRatio > 1:
		return fmt.Errorf("bench: read-ratio must be in [0, 1]")
	case bc.consistency != "linearizable" && bc.consistency != "stale":
		return fmt.Errorf("bench: consistency must be linearizable or stale")
	}
	ctx, cancel := context.WithTimeout(context.Background(), bc.duration)
	defer cancel()
	res := bench(ctx, client.New(bc.addr, client.WithRetries(0, 0)), bc, func(done, errs int64, elapsed time.Duration) {
		fmt.Fprintf(os.Stderr, "\r%6.1fs  %10d ops  %9.0f ops/s  %d errors ", elapsed.Seconds(), done, float64(done)/elapsed.Seconds(), errs)
	})
	fmt.Fprintln(os.Stderr)
	res.print(out, bc)
	return nil
}

type benchResult struct {
	elapsed    time.Duration
	puts, gets []time.Duration // latencies of successful operations
	errors     int64
	firstError error
}

// bench runs the load until ctx ends; progress is called once a second.
func bench(ctx context.Context, c *client.Client, bc benchConfig, progress func(done, errs int64, elapsed time.Duration)) benchResult {
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
			rng := rand.New(rand.NewPCG(bc.seed, uint64(i)))
			value := make([]byte, bc.valueSize)
			var puts, gets []time.Duration
			var firstErr error
			for ctx.Err() == nil {
				key := fmt.Sprintf("bench/%08d", rng.IntN(bc.keys))
				isGet := rng.Float64() < bc.readRatio
				t0 := time.Now()
				var err error
				if isGet {
					var opts []client.ReadOption
					if bc.consistency == "stale" {
						opts = append(opts, client.Stale(0))
					}
					_, _, err = c.Get(ctx, key, opts...)
					if err != nil && errorsIsNotFound(err) {
						err = nil // a key not written yet is a valid answer
					}
				} else {
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

func errorsIsNotFound(err error) bool { return errors.Is(err, client.ErrNotFound) }

func (r benchResult) print(out io.Writer, bc benchConfig) {
	total := len(r.puts) + len(r.gets)
	fmt.Fprintf(out, "%d clients, %v, %d keys, %d-byte values, read ratio %.2f (%s)\n",
		bc.clients, r.elapsed.Round(time.Millisecond), bc.keys, bc.valueSize, bc.readRatio, bc.consistency)
	fmt.Fprintf(out, "%-5s %10s %10s %9s %9s %9s\n", "op", "count", "ops/s", "p50", "p99", "p99.9")
	for _, row := range []struct {
		name string
		lat  []time.Duration
	}{{"put", r.puts}, {"get", r.gets}, {"all", append(slices.Clone(r.puts), r.gets...)}} {
		if len(row.lat) == 0 {
			continue
		}
		slices.Sort(row.lat)
		fmt.Fprintf(out, "%-5s %10d %10.0f %9s %9s %9s\n", row.name, len(row.lat), float64(len(row.lat))/r.elapsed.Seconds(),
			pct(row.lat, 0.50), pct(row.lat, 0.99), pct(row.lat, 0.999))
	}
	if r.errors > 0 {
		fmt.Fprintf(out, "%d errors (%.2f%%); first: %v\n", r.errors, 100*float64(r.errors)/float64(int64(total)+r.errors), r.firstError)
	}
}

func pct(sorted []time.Duration, p float64) string {
	d := sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
	return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000)
}
