package load

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// sleeper is a fake driver whose every operation takes d (or until ctx
// ends), and fails every failEvery-th call when failEvery > 0.
type sleeper struct {
	d         time.Duration
	failEvery int64
	calls     atomic.Int64
	maxBusy   atomic.Int64
	busy      atomic.Int64
}

func (s *sleeper) Do(ctx context.Context, worker int, op Op) error {
	n := s.calls.Add(1)
	b := s.busy.Add(1)
	defer s.busy.Add(-1)
	for old := s.maxBusy.Load(); b > old && !s.maxBusy.CompareAndSwap(old, b); old = s.maxBusy.Load() {
	}
	t := time.NewTimer(s.d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	if s.failEvery > 0 && n%s.failEvery == 0 {
		return errors.New("injected")
	}
	return nil
}

func TestOpenLoopMeasuresFromDueTime(t *testing.T) {
	// 200 ops/s due, one client, 10 ms per op: the client serves 100/s, so
	// operation i is sent about 5i ms late and its latency, measured from
	// its due time, keeps growing although every op takes 10 ms.
	d := &sleeper{d: 10 * time.Millisecond}
	cfg := Config{Workload: Get, Clients: 1, Keys: 10, Seed: 1, Duration: 600 * time.Millisecond, Rate: 200}
	res, err := Run(t.Context(), d, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Scheduled != 120 {
		t.Errorf("scheduled %d, want 120 (600 ms × 200/s)", res.Scheduled)
	}
	lat := slices.Sorted(slices.Values(res.Latencies[KindGet]))
	if len(lat) < 30 || len(lat) > 61 {
		t.Fatalf("%d ops done, want about 60 (one client at 10 ms each)", len(lat))
	}
	if res.Dropped < 50 || res.Dropped != res.Scheduled-res.Sent {
		t.Errorf("dropped %d (scheduled %d, sent %d), want about 60 never sent", res.Dropped, res.Scheduled, res.Sent)
	}
	if res.Late < int64(len(lat))-3 {
		t.Errorf("late %d of %d sent, want nearly all", res.Late, res.Sent)
	}
	if last := lat[len(lat)-1]; last < 150*time.Millisecond {
		t.Errorf("largest latency %v, want ≥ 150 ms: queueing behind the due time is not measured", last)
	}
	if p50 := Percentile(lat, 0.5); p50 < 60*time.Millisecond {
		t.Errorf("p50 %v, want ≥ 60 ms (service time is 10 ms, the rest is queueing)", p50)
	}
	if res.MaxSendLag < 150*time.Millisecond {
		t.Errorf("max send lag %v, want ≥ 150 ms", res.MaxSendLag)
	}
}

func TestOpenLoopUnsaturated(t *testing.T) {
	// 100 ops/s with 4 clients of 5 ms each: no queueing, latency ≈ 5 ms,
	// and no more than 4 in flight.
	d := &sleeper{d: 5 * time.Millisecond}
	cfg := Config{Workload: Put, Clients: 4, Keys: 10, ValueSize: 8, Seed: 1, Duration: 500 * time.Millisecond, Rate: 100}
	res, err := Run(t.Context(), d, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Scheduled != 50 || res.Dropped > 2 {
		t.Errorf("scheduled %d dropped %d, want 50 and at most the last ones", res.Scheduled, res.Dropped)
	}
	s := Summarize(res.Latencies[KindPut])
	if s.Ops < 47 || s.P50 < 5*time.Millisecond || s.P50 > 25*time.Millisecond {
		t.Errorf("%d ops, p50 %v; want ≥ 47 ops at about 5 ms", s.Ops, s.P50)
	}
	if m := d.maxBusy.Load(); m > 4 {
		t.Errorf("%d operations in flight at once, want at most 4", m)
	}
}

func TestClosedLoop(t *testing.T) {
	d := &sleeper{d: 10 * time.Millisecond, failEvery: 4}
	cfg := Config{Workload: Mix, Clients: 4, Keys: 100, ValueSize: 8, Seed: 1, Duration: 300 * time.Millisecond}
	res, err := Run(t.Context(), d, cfg)
	if err != nil {
		t.Fatal(err)
	}
	total := int64(res.Ops()) + res.Errors
	if total < 60 || total > 4*30 {
		t.Errorf("%d operations finished, want about 120 (4 clients × 30)", total)
	}
	if res.Errors < total/4-4 || res.Errors > total/4+4 || res.FirstError == nil || !strings.Contains(res.FirstError.Error(), "injected") {
		t.Errorf("errors %d of %d (first %v), want a quarter, injected", res.Errors, total, res.FirstError)
	}
	if d.maxBusy.Load() != 4 {
		t.Errorf("%d in flight at most, want 4 clients", d.maxBusy.Load())
	}
	for _, l := range res.All() {
		if l < 10*time.Millisecond {
			t.Fatalf("latency %v below the 10 ms service time", l)
		}
	}
	if len(res.Latencies[KindGet]) == 0 || len(res.Latencies[KindPut]) == 0 {
		t.Error("mix did not record both gets and puts")
	}
	if res.Elapsed < cfg.Duration || res.Elapsed > cfg.Duration+500*time.Millisecond {
		t.Errorf("elapsed %v for a %v run", res.Elapsed, cfg.Duration)
	}
}

// recorder remembers every operation by client, values copied.
type recorder struct {
	mu  sync.Mutex
	ops map[int][]Op
}

func (r *recorder) Do(_ context.Context, worker int, op Op) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	op.Value = slices.Clone(op.Value)
	r.ops[worker] = append(r.ops[worker], op)
	return nil
}

func TestRunFeedsEachClientItsGenerator(t *testing.T) {
	rec := &recorder{ops: map[int][]Op{}}
	cfg := Config{Workload: Mix, Clients: 3, Keys: 50, ValueSize: 16, Seed: 9, Duration: 50 * time.Millisecond}
	if _, err := Run(t.Context(), rec, cfg); err != nil {
		t.Fatal(err)
	}
	for c := range 3 {
		got := rec.ops[c]
		if len(got) == 0 {
			t.Fatalf("client %d sent nothing", c)
		}
		if want := ops(NewGen(Mix, 9, c, 50, 16), len(got)); !equalOps(got, want) {
			t.Errorf("client %d's operations differ from its generator's", c)
		}
	}
}

func TestPreload(t *testing.T) {
	rec := &recorder{ops: map[int][]Op{}}
	n, err := Preload(t.Context(), rec, Get, 8, 1000, 32, 5)
	if err != nil || n != 1000 {
		t.Fatalf("Preload = %d, %v", n, err)
	}
	seen := map[string]bool{}
	for _, ops := range rec.ops {
		for _, op := range ops {
			if op.Kind != KindPut || seen[op.Key] {
				t.Fatalf("%v %s: not a first put", op.Kind, op.Key)
			}
			seen[op.Key] = true
			var i int
			for j := len(KeyPrefix); j < len(op.Key); j++ {
				i = i*10 + int(op.Key[j]-'0')
			}
			if string(op.Value) != string(PreloadValue(5, i, 32)) {
				t.Fatalf("%s: value is not PreloadValue", op.Key)
			}
		}
	}
	if len(seen) != 1000 {
		t.Errorf("%d keys written, want 1000", len(seen))
	}
	failing := &sleeper{d: time.Millisecond, failEvery: 1}
	if _, err := Preload(t.Context(), failing, Get, 4, 1000, 8, 1); err == nil || failing.calls.Load() > 8 {
		t.Errorf("Preload against a failing driver: %v after %d calls, want an error at once", err, failing.calls.Load())
	}
}

// The document workloads preload one document per key, DocsPerGroup to a
// grp.
func TestPreloadDocuments(t *testing.T) {
	rec := &recorder{ops: map[int][]Op{}}
	if n, err := Preload(t.Context(), rec, DocFind, 4, 100, 32, 5); err != nil || n != 100 {
		t.Fatalf("Preload = %d, %v", n, err)
	}
	ids, groups := map[string]bool{}, map[int]int{}
	for _, ops := range rec.ops {
		for _, op := range ops {
			if op.Kind != KindDocInsert || ids[op.Doc.ID] || op.Key != "" {
				t.Fatalf("%v %q: not a first document insert", op.Kind, op.Doc.ID)
			}
			ids[op.Doc.ID] = true
			groups[op.Doc.Group]++
			var i int
			if _, err := fmt.Sscanf(op.Doc.ID, "p%08d", &i); err != nil || op.Doc != PreloadDoc(5, i, 32) {
				t.Fatalf("%+v is not PreloadDoc of its number", op.Doc)
			}
			if len(op.Doc.Pad) != 32 || op.Doc.Age != i%100 {
				t.Fatalf("%+v: pad of %d characters, want 32; age want %d", op.Doc, len(op.Doc.Pad), i%100)
			}
		}
	}
	if len(ids) != 100 || len(groups) != 100/DocsPerGroup {
		t.Fatalf("%d documents in %d groups, want 100 in %d", len(ids), len(groups), 100/DocsPerGroup)
	}
	for g, n := range groups {
		if n != DocsPerGroup {
			t.Errorf("grp %d has %d documents, want %d", g, n, DocsPerGroup)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	bad := Config{Workload: "nope", Clients: 0, Keys: 0, ValueSize: -1, Duration: 0, Rate: -1}
	err := bad.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"workload", "clients", "keys", "value size", "duration", "rate"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if _, err := Run(t.Context(), &recorder{}, bad); err == nil {
		t.Error("Run accepted an invalid config")
	}
}
