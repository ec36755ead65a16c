package elle

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// simConfig shapes a simulated run.
type simConfig struct {
	processes int
	txns      int
	keys      int // keys in use at any time
	perKey    int // appends before a key is retired and a fresh one used
}

// simulate runs a strictly serializable in-memory list-append store: each
// transaction takes effect atomically at one instant between its
// invocation and completion, and processes interleave at random. About one
// transaction in ten fails (no effect) and one in ten ends unknown (half of
// those took effect). A final transaction reads every key ever used.
func simulate(seed uint64, cfg simConfig) []Op {
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	type proc struct {
		id      int
		busy    bool
		mops    []Mop
		outcome OpType
		apply   bool // the transaction will take effect
		applied bool
	}
	var (
		h       []Op
		state   = make(map[string][]int)
		counts  = make(map[string]int)
		active  = make([]string, cfg.keys)
		allKeys []string
		nextKey int
		nextVal int
		procs   = make([]*proc, cfg.processes)
		nextPID = cfg.processes
		started int
	)
	freshKey := func() string {
		nextKey++
		k := fmt.Sprintf("k%d", nextKey)
		allKeys = append(allKeys, k)
		return k
	}
	for i := range active {
		active[i] = freshKey()
	}
	for i := range procs {
		procs[i] = &proc{id: i}
	}
	record := func(pid int, typ OpType, mops []Mop) {
		h = append(h, Op{Index: len(h) + 1, Process: pid, Type: typ, Time: int64(len(h)+1) * 10, Txn: mops})
	}
	busy := 0
	for started < cfg.txns || busy > 0 {
		p := procs[rng.IntN(len(procs))]
		switch {
		case !p.busy:
			if started == cfg.txns {
				continue
			}
			started++
			busy++
			p.busy, p.applied = true, false
			p.mops = nil
			for range 1 + rng.IntN(4) {
				slot := rng.IntN(len(active))
				if rng.IntN(2) == 0 {
					p.mops = append(p.mops, Read(active[slot], nil))
					continue
				}
				if counts[active[slot]] >= cfg.perKey {
					active[slot] = freshKey()
				}
				k := active[slot]
				counts[k]++
				nextVal++
				p.mops = append(p.mops, Append(k, nextVal))
			}
			switch x := rng.IntN(10); {
			case x == 0:
				p.outcome, p.apply = Fail, false
			case x == 1:
				p.outcome, p.apply = Info, rng.IntN(2) == 0
			default:
				p.outcome, p.apply = OK, true
			}
			record(p.id, Invoke, slices.Clone(p.mops))
		case p.apply && !p.applied:
			// The instant the transaction takes effect.
			for i, m := range p.mops {
				if m.F == FuncAppend {
					state[m.Key] = append(state[m.Key], m.Value)
				} else {
					p.mops[i].Read = slices.Clone(state[m.Key])
				}
			}
			p.applied = true
		default:
			busy--
			p.busy = false
			if p.outcome == OK {
				record(p.id, OK, p.mops)
				continue
			}
			inv := slices.Clone(p.mops)
			for i := range inv {
				inv[i].Read = nil
			}
			record(p.id, p.outcome, inv)
			if p.outcome == Info && rng.IntN(2) == 0 {
				// Like the harness: the process retires and a fresh
				// number takes over the worker.
				p.id = nextPID
				nextPID++
			}
		}
	}
	final := make([]Mop, len(allKeys))
	for i, k := range allKeys {
		final[i] = Read(k, nil)
	}
	record(nextPID, Invoke, slices.Clone(final))
	for i, k := range allKeys {
		final[i].Read = slices.Clone(state[k])
	}
	record(nextPID, OK, final)
	return h
}

// cloneHistory copies a history deeply enough that reads can be edited.
func cloneHistory(h []Op) []Op {
	out := slices.Clone(h)
	for i := range out {
		out[i].Txn = slices.Clone(out[i].Txn)
		for j := range out[i].Txn {
			out[i].Txn[j].Read = slices.Clone(out[i].Txn[j].Read)
		}
	}
	return out
}

// readSite is one read of an ok completion, by history position and mop.
type readSite struct{ pos, mop int }

// reads lists the reads of ok completions, except the final transaction's,
// whose result has at least minLen values.
func reads(h []Op, minLen int) []readSite {
	var out []readSite
	for pos, op := range h[:len(h)-1] {
		if op.Type != OK {
			continue
		}
		for j, m := range op.Txn {
			if m.F == FuncRead && len(m.Read) >= minLen {
				out = append(out, readSite{pos, j})
			}
		}
	}
	return out
}

func randomConfig(rng *rand.Rand) simConfig {
	return simConfig{
		processes: 2 + rng.IntN(9),
		txns:      100 + rng.IntN(300),
		keys:      2 + rng.IntN(6),
		perKey:    4 + rng.IntN(12),
	}
}

// TestRandomValid: simulated strictly serializable runs pass every model.
func TestRandomValid(t *testing.T) {
	for seed := range uint64(40) {
		cfg := randomConfig(rand.New(rand.NewPCG(seed, 1)))
		h := simulate(seed, cfg)
		for _, m := range models() {
			res := check(t, h, m)
			if !res.Valid {
				t.Fatalf("seed %d, %+v, %s: want valid\n%s", seed, cfg, m, res.String())
			}
		}
	}
}

// TestRandomCorrupted edits one read of a valid simulated run and checks
// the damage is caught. Dropping an element from inside a read, or
// swapping two, makes it disagree with the final read of the same key
// (incompatible-order) under every model. Dropping the last element of a
// read that began after that element's append committed is a stale read
// that strict serializability must reject.
func TestRandomCorrupted(t *testing.T) {
	stale := 0
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 2))
		cfg := randomConfig(rand.New(rand.NewPCG(seed, 1)))
		h := simulate(seed, cfg)
		sites := reads(h, 2)
		if len(sites) == 0 {
			t.Fatalf("seed %d: no read with two values to corrupt", seed)
		}
		corruptions := map[string]func(l []int) []int{
			"drop": func(l []int) []int {
				i := rng.IntN(len(l) - 1)
				return slices.Delete(l, i, i+1)
			},
			"swap": func(l []int) []int {
				i := rng.IntN(len(l) - 1)
				l[i], l[i+1] = l[i+1], l[i]
				return l
			},
		}
		for _, name := range []string{"drop", "swap"} {
			bad := cloneHistory(h)
			s := sites[rng.IntN(len(sites))]
			m := &bad[s.pos].Txn[s.mop]
			before := formatList(m.Read)
			m.Read = corruptions[name](m.Read)
			for _, model := range models() {
				res := check(t, bad, model)
				if res.Valid || !slices.Contains(res.AnomalyTypes, IncompatibleOrder) {
					t.Fatalf("seed %d, %s of event %d %s → %s, %s: types %v, want incompatible-order",
						seed, name, s.pos, before, formatList(m.Read), model, res.AnomalyTypes)
				}
			}
		}

		site, ok := staleReadSite(h)
		if !ok {
			continue
		}
		bad := cloneHistory(h)
		m := &bad[site.pos].Txn[site.mop]
		m.Read = m.Read[:len(m.Read)-1]
		stale++
		res := check(t, bad, StrictSerializable)
		if res.Valid {
			t.Fatalf("seed %d: stale read at event %d not caught under strict serializability", seed, site.pos)
		}
	}
	if stale < 20 {
		t.Fatalf("only %d of 40 runs had a read to make stale", stale)
	}
}

// staleReadSite finds a read whose last value was appended by a
// transaction that committed before the reader was invoked.
func staleReadSite(h []Op) (readSite, bool) {
	written := make(map[string]map[int]int) // key → value → completion position
	open := make(map[int]int)               // process → invocation position
	invokedAt := make(map[int]int)          // completion position → invocation position
	for pos, op := range h {
		if op.Type == Invoke {
			open[op.Process] = pos
			continue
		}
		invokedAt[pos] = open[op.Process]
		if op.Type == OK {
			for _, m := range op.Txn {
				if m.F != FuncAppend {
					continue
				}
				if written[m.Key] == nil {
					written[m.Key] = make(map[int]int)
				}
				written[m.Key][m.Value] = pos
			}
		}
	}
	for _, s := range reads(h, 1) {
		op := h[s.pos]
		m := op.Txn[s.mop]
		done, ok := written[m.Key][m.Read[len(m.Read)-1]]
		if ok && done < invokedAt[s.pos] {
			return s, true
		}
	}
	return readSite{}, false
}

// TestLargeHistory checks the speed on a run of 100k transactions.
func TestLargeHistory(t *testing.T) {
	if testing.Short() {
		t.Skip("large history")
	}
	h := simulate(7, simConfig{processes: 20, txns: 100_000, keys: 16, perKey: 64})
	for _, m := range []Model{Serializable, StrictSerializable} {
		start := time.Now()
		res := check(t, h, m)
		t.Logf("%s: %d events, %d edges, %v", m, len(h), res.Counts.Edges, time.Since(start))
		if !res.Valid {
			t.Fatalf("%s: want valid\n%s", m, res.String())
		}
	}
	// One stale read in the middle must be found in the big graph too.
	bad := cloneHistory(h)
	site, ok := staleReadSite(bad[:len(bad)/2])
	if !ok {
		t.Fatal("no stale read site")
	}
	m := &bad[site.pos].Txn[site.mop]
	m.Read = m.Read[:len(m.Read)-1]
	start := time.Now()
	res := check(t, bad, StrictSerializable)
	t.Logf("corrupted: %v, %v", res.AnomalyTypes, time.Since(start))
	if res.Valid {
		t.Fatal("stale read not caught")
	}
}

func BenchmarkCheck(b *testing.B) {
	h := simulate(7, simConfig{processes: 20, txns: 100_000, keys: 16, perKey: 64})
	for b.Loop() {
		if _, err := Check(h, Options{Model: StrictSerializable}); err != nil {
			b.Fatal(err)
		}
	}
}
