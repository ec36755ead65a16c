package load

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Driver sends operations to one system.
//
// Do is called from Config.Clients goroutines at once; worker (0 ≤ worker <
// Clients) identifies the calling client, so a driver can give each client
// a connection of its own. Do returns nil when the system answered the
// operation successfully; a get of an absent key is a success (an empty
// answer), not an error. Do must return promptly once ctx is done.
type Driver interface {
	Do(ctx context.Context, worker int, op Op) error
}

// LateAfter is how far past its due time an open-loop operation may be sent
// before it counts as late.
const LateAfter = time.Millisecond

// Config is one cell of the benchmark.
type Config struct {
	Workload  Workload
	Clients   int           // closed loop: concurrent clients; open loop: most operations in flight
	Keys      int           // distinct keys, chosen uniformly
	ValueSize int           // bytes per put
	Seed      uint64        // seeds every generator
	Duration  time.Duration // how long the timed run lasts
	Rate      float64       // open loop: operations per second in total; 0: closed loop
	// DocSalt starts the IDs of inserted documents, so that runs against
	// one cluster do not insert the same IDs (sidebyside: the time).
	DocSalt string
}

// DefaultConfig returns the defaults of sidebyside: put, 16 clients,
// 10,000 keys, 256-byte values, seed 1, 10 s, closed loop.
func DefaultConfig() Config {
	return Config{Workload: Put, Clients: 16, Keys: 10000, ValueSize: 256, Seed: 1, Duration: 10 * time.Second}
}

// Validate reports every problem of c.
func (c Config) Validate() error {
	var errs []error
	if _, err := ParseWorkload(string(c.Workload)); err != nil {
		errs = append(errs, err)
	}
	if c.Clients < 1 {
		errs = append(errs, errors.New("load: clients must be at least 1"))
	}
	if c.Keys < 1 {
		errs = append(errs, errors.New("load: keys must be at least 1"))
	}
	if c.Workload == Txn && c.Keys < 2 {
		errs = append(errs, errors.New("load: txn needs at least 2 keys"))
	}
	if c.ValueSize < 0 {
		errs = append(errs, errors.New("load: value size must not be negative"))
	}
	if c.Duration <= 0 {
		errs = append(errs, errors.New("load: duration must be positive"))
	}
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		errs = append(errs, errors.New("load: rate must be a finite number ≥ 0"))
	}
	return errors.Join(errs...)
}

// Result is what a run measured.
type Result struct {
	Elapsed    time.Duration
	Latencies  map[Kind][]time.Duration // successful operations, unsorted
	Errors     int64
	FirstError error

	// Open loop only.
	Scheduled  int64         // operations due during the run
	Sent       int64         // of them, sent
	Dropped    int64         // due during the run but never sent (every client was busy until the end)
	Late       int64         // sent more than LateAfter after their due time
	MaxSendLag time.Duration // the most any operation waited for a free client
}

// Ops is the number of successful operations.
func (r Result) Ops() int {
	n := 0
	for _, l := range r.Latencies {
		n += len(l)
	}
	return n
}

// All returns the latencies of every successful operation.
func (r Result) All() []time.Duration {
	var all []time.Duration
	for _, k := range []Kind{KindPut, KindGet, KindScan, KindTxn, KindDocInsert, KindDocFind} {
		all = append(all, r.Latencies[k]...)
	}
	return all
}

// worker is what one client goroutine collected.
type worker struct {
	lat      map[Kind][]time.Duration
	errors   int64
	firstErr error
}

func (w *worker) record(k Kind, took time.Duration, err error) {
	if err != nil {
		w.errors++
		if w.firstErr == nil {
			w.firstErr = fmt.Errorf("%s: %w", k, err)
		}
		return
	}
	w.lat[k] = append(w.lat[k], took)
}

// Run drives d with cfg's load until cfg.Duration has passed or ctx ends.
// With cfg.Rate 0 every client sends its next operation as soon as the last
// one is answered (closed loop); otherwise operation i is due at
// start + i/Rate and is sent by the first free client (open loop).
func Run(ctx context.Context, d Driver, cfg Config) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	start := time.Now()
	workers := make([]worker, cfg.Clients)
	var sched *openLoop
	if cfg.Rate > 0 {
		sched = &openLoop{start: start, end: start.Add(cfg.Duration), interval: float64(time.Second) / cfg.Rate}
	}
	var wg sync.WaitGroup
	for i := range cfg.Clients {
		workers[i].lat = map[Kind][]time.Duration{}
		gen := NewGen(cfg.Workload, cfg.Seed, i, cfg.Keys, cfg.ValueSize)
		gen.salt = cfg.DocSalt
		wg.Go(func() {
			if cfg.Rate > 0 {
				sched.work(ctx, d, i, gen, &workers[i])
				return
			}
			closedLoop(ctx, d, i, gen, &workers[i])
		})
	}
	wg.Wait()
	res := Result{Elapsed: time.Since(start), Latencies: map[Kind][]time.Duration{}}
	for _, w := range workers {
		for k, l := range w.lat {
			res.Latencies[k] = append(res.Latencies[k], l...)
		}
		res.Errors += w.errors
		if res.FirstError == nil {
			res.FirstError = w.firstErr
		}
	}
	if cfg.Rate > 0 {
		res.Scheduled = sched.due()
		res.Sent = sched.sent.Load()
		res.Dropped = res.Scheduled - res.Sent
		res.Late = sched.late.Load()
		res.MaxSendLag = time.Duration(sched.maxLag.Load())
	}
	return res, nil
}

func closedLoop(ctx context.Context, d Driver, id int, gen *Gen, w *worker) {
	for ctx.Err() == nil {
		op := gen.Next()
		t0 := time.Now()
		err := d.Do(ctx, id, op)
		took := time.Since(t0)
		if ctx.Err() != nil {
			return // cut short by the end of the run: not counted
		}
		w.record(op.Kind, took, err)
	}
}

// openLoop hands out due times: the clients take tickets 0, 1, 2, … in
// turn, ticket i being due at start + i·interval.
type openLoop struct {
	start, end time.Time
	interval   float64 // nanoseconds between two due times
	next       atomic.Int64
	sent, late atomic.Int64
	maxLag     atomic.Int64
}

// due is the number of tickets due before the end of the run.
func (s *openLoop) due() int64 {
	return int64(math.Ceil(float64(s.end.Sub(s.start)) / s.interval))
}

func (s *openLoop) work(ctx context.Context, d Driver, id int, gen *Gen, w *worker) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		ticket := s.next.Add(1) - 1
		due := s.start.Add(time.Duration(float64(ticket) * s.interval))
		if !due.Before(s.end) {
			return
		}
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		op := gen.Next()
		lag := time.Since(due)
		s.sent.Add(1)
		if lag > LateAfter {
			s.late.Add(1)
		}
		for old := s.maxLag.Load(); int64(lag) > old && !s.maxLag.CompareAndSwap(old, int64(lag)); old = s.maxLag.Load() {
		}
		err := d.Do(ctx, id, op)
		took := time.Since(due) // from the due time: queueing included
		if ctx.Err() != nil {
			return
		}
		w.record(op.Kind, took, err)
	}
}

// Preload writes every key once with PreloadValue (for the document
// workloads: inserts PreloadDoc for every key), spread over clients
// goroutines, and returns how many it wrote. It stops at the first error.
func Preload(ctx context.Context, d Driver, w Workload, clients, keys, valueSize int, seed uint64) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next, done atomic.Int64
	var once sync.Once
	var firstErr error
	var wg sync.WaitGroup
	for id := range clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				k := next.Add(1) - 1
				if k >= int64(keys) {
					return
				}
				op := Op{Kind: KindPut, Key: Key(int(k)), Value: PreloadValue(seed, int(k), valueSize)}
				if w.Documents() {
					op = Op{Kind: KindDocInsert, Doc: PreloadDoc(seed, int(k), valueSize)}
				}
				if err := d.Do(ctx, id, op); err != nil {
					once.Do(func() { firstErr = fmt.Errorf("load: preload %s%s: %w", op.Key, op.Doc.ID, err); cancel() })
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return done.Load(), firstErr
}
