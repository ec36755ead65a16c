package checker

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cairndb/cairn/jepsen/history"
)

// simRegister produces the history of simulated clients using an in-memory
// linearizable store. Steps are interleaved at random: each operation takes
// effect atomically at one step between its invocation and its completion.
// Some operations end as info, whether or not they took effect; some of
// those not yet applied take effect later, after their client gave up, and
// some never do. Some end as fail before taking effect.
type simRegister struct {
	rng      *rand.Rand
	ops      []history.Op
	now      int64
	store    map[string]int
	nextVal  int
	nextProc int
	acked    map[string][]int // values of puts and cas acknowledged ok
}

type simClient struct {
	proc    int
	busy    bool
	inv     history.Op
	applied bool
	read    *int
	swapped bool
}

func (s *simRegister) emit(op history.Op) history.Op {
	s.now += 1 + s.rng.Int64N(5)
	op.Index, op.Time = len(s.ops), s.now
	s.ops = append(s.ops, op)
	return op
}

// apply performs op on the store, returning what a get read and whether a
// cas swapped.
func (s *simRegister) apply(op history.Op) (read *int, swapped bool) {
	cur, present := s.store[op.Key]
	switch op.F {
	case FGet:
		if present {
			return history.Int(cur), false
		}
	case FPut:
		s.store[op.Key] = *op.Value
	case FDelete:
		delete(s.store, op.Key)
	case FCas:
		if present && op.From != nil && cur == *op.From || !present && op.From == nil {
			s.store[op.Key] = *op.Value
			return nil, true
		}
	}
	return nil, false
}

func (s *simRegister) newOp(keys []string) history.Op {
	k := keys[s.rng.IntN(len(keys))]
	val := func() *int { s.nextVal++; return history.Int(s.nextVal) }
	switch r := s.rng.IntN(100); {
	case r < 35:
		return history.Op{F: FGet, Key: k}
	case r < 65:
		return history.Op{F: FPut, Key: k, Value: val()}
	case r < 90:
		// Expect the current value half the time, else some value
		// that may or may not be there.
		var from *int
		if cur, ok := s.store[k]; ok && s.rng.IntN(2) == 0 {
			from = history.Int(cur)
		} else {
			from = history.Int(1 + s.rng.IntN(s.nextVal+1))
		}
		return history.Op{F: FCas, Key: k, From: from, Value: val()}
	default:
		return history.Op{F: FDelete, Key: k}
	}
}

func simulateRegister(seed uint64, keys []string, clients, n int) *simRegister {
	s := &simRegister{
		rng:      rand.New(rand.NewPCG(seed, seed^0x5eed)),
		store:    map[string]int{},
		nextProc: clients,
		acked:    map[string][]int{},
	}
	cs := make([]*simClient, clients)
	for i := range cs {
		cs[i] = &simClient{proc: i}
	}
	var orphans []history.Op // writes whose client gave up, not yet applied
	faulty := false
	invoked, busy := 0, 0
	for invoked < n || busy > 0 {
		if len(orphans) > 0 && s.rng.IntN(10) == 0 {
			i := s.rng.IntN(len(orphans))
			s.apply(orphans[i])
			orphans = slices.Delete(orphans, i, i+1)
		}
		if s.rng.IntN(50) == 0 {
			if faulty {
				s.emit(history.Op{Process: history.NemesisProcess, Type: history.Info, F: "stop-partition"})
			} else {
				s.emit(history.Op{Process: history.NemesisProcess, Type: history.Info, F: "start-partition", Desc: "random halves"})
			}
			faulty = !faulty
		}
		c := cs[s.rng.IntN(clients)]
		complete := func(t history.Type, fill func(*history.Op)) {
			op := history.Op{Process: c.proc, Type: t, F: c.inv.F, Key: c.inv.Key, Value: c.inv.Value, From: c.inv.From}
			if fill != nil {
				fill(&op)
			}
			s.emit(op)
			c.busy = false
			busy--
			if t == history.Info {
				// The process may still be running the operation:
				// the client continues as a new process.
				c.proc = s.nextProc
				s.nextProc++
			}
		}
		switch {
		case !c.busy:
			if invoked == n {
				continue
			}
			op := s.newOp(keys)
			op.Process, op.Type = c.proc, history.Invoke
			c.inv = s.emit(op)
			c.busy, c.applied = true, false
			invoked++
			busy++
		case !c.applied:
			switch r := s.rng.IntN(100); {
			case r < 4: // timed out before it took effect
				if c.inv.F != FGet && s.rng.IntN(2) == 0 {
					orphans = append(orphans, c.inv)
				}
				complete(history.Info, nil)
			case r < 7: // refused
				complete(history.Fail, func(o *history.Op) { o.Error = "unavailable" })
			default:
				c.read, c.swapped = s.apply(c.inv)
				c.applied = true
			}
		default:
			if s.rng.IntN(100) < 4 { // took effect, but the answer was lost
				complete(history.Info, nil)
				continue
			}
			switch c.inv.F {
			case FGet:
				read := c.read
				complete(history.OK, func(o *history.Op) { o.Value = read })
			case FCas:
				if !c.swapped {
					complete(history.Fail, func(o *history.Op) { o.Error = ErrorVersionMismatch })
					continue
				}
				s.acked[c.inv.Key] = append(s.acked[c.inv.Key], *c.inv.Value)
				complete(history.OK, nil)
			case FPut:
				s.acked[c.inv.Key] = append(s.acked[c.inv.Key], *c.inv.Value)
				complete(history.OK, nil)
			default:
				complete(history.OK, nil)
			}
		}
	}
	return s
}

// injectStaleRead appends, on key k, a put of a fresh value followed by a
// get returning old, a value written and acknowledged earlier.
func (s *simRegister) injectStaleRead(k string, old int) {
	p := s.nextProc
	s.nextProc++
	s.nextVal++
	put := history.Op{Process: p, F: FPut, Key: k, Value: history.Int(s.nextVal)}
	put.Type = history.Invoke
	s.emit(put)
	put.Type = history.OK
	s.emit(put)
	get := history.Op{Process: p, Type: history.Invoke, F: FGet, Key: k}
	s.emit(get)
	get.Type, get.Value = history.OK, history.Int(old)
	s.emit(get)
}

func TestRegisterRandomized(t *testing.T) {
	keys := []string{"k1", "k2", "k3"}
	for seed := range uint64(30) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			s := simulateRegister(seed, keys, 5, 450)
			infos := 0
			for _, op := range s.ops {
				if op.Type == history.Info && op.Process != history.NemesisProcess {
					infos++
				}
			}
			res, err := CheckRegister(s.ops, RegisterOptions{Timeout: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			if !res.Valid || res.Keys != len(keys) || res.Indeterminate == 0 {
				t.Fatalf("seed %d: simulated linearizable history (%d events, %d info) rejected: %s", seed, len(s.ops), infos, res)
			}

			// Now a stale read on one key: that key alone must fail.
			k := keys[int(seed)%len(keys)]
			if len(s.acked[k]) == 0 {
				t.Skipf("seed %d: no acknowledged write on %s", seed, k)
			}
			s.injectStaleRead(k, s.acked[k][s.rng.IntN(len(s.acked[k]))])
			res, err = CheckRegister(s.ops, RegisterOptions{Timeout: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			if res.Valid || res.Unknown || !slices.Equal(res.FailedKeys, []string{k}) {
				t.Fatalf("seed %d: stale read on %s not pinned on it: %s", seed, k, res)
			}
		})
	}
}

// Real goroutines against a mutex-protected map, recorded with the
// history Recorder: invocations are recorded before the operation takes
// effect and completions after, so the history is linearizable.
func TestRegisterRecorderConcurrent(t *testing.T) {
	rec := history.NewRecorder(nil)
	var mu sync.Mutex
	store := map[string]int{}
	var nextVal struct {
		sync.Mutex
		v int
	}
	fresh := func() *int {
		nextVal.Lock()
		defer nextVal.Unlock()
		nextVal.v++
		return history.Int(nextVal.v)
	}
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			proc := w
			for range 80 {
				k := []string{"a", "b"}[rng.IntN(2)]
				var op history.Op
				switch rng.IntN(4) {
				case 0, 1:
					op = history.Op{F: FGet, Key: k}
				case 2:
					op = history.Op{F: FPut, Key: k, Value: fresh()}
				default:
					op = history.Op{F: FCas, Key: k, From: history.Int(rng.IntN(40)), Value: fresh()}
				}
				inv := rec.Invoke(proc, op)
				mu.Lock()
				cur, present := store[k]
				swapped := false
				switch op.F {
				case FPut:
					store[k] = *op.Value
				case FCas:
					if present && cur == *op.From {
						store[k], swapped = *op.Value, true
					}
				}
				mu.Unlock()
				if rng.IntN(20) == 0 {
					rec.Complete(inv, history.Info, nil)
					proc += 100
					continue
				}
				switch {
				case op.F == FGet:
					rec.Complete(inv, history.OK, func(o *history.Op) {
						if present {
							o.Value = history.Int(cur)
						}
					})
				case op.F == FCas && !swapped:
					rec.Complete(inv, history.Fail, func(o *history.Op) { o.Error = ErrorVersionMismatch })
				default:
					rec.Complete(inv, history.OK, nil)
				}
			}
		})
	}
	wg.Wait()
	res, err := CheckRegister(rec.Ops(), RegisterOptions{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Valid || res.Keys != 2 || res.Ops < 400 {
		t.Fatalf("recorded linearizable history rejected: %s", res)
	}
}
