package jepsen

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/jepsen/elle"
	"github.com/cairndb/cairn/jepsen/history"
)

// Transactions in these workloads read first and then commit with a
// comparison on the version of every key they read: POST /v1/txn makes the
// commit atomic across shards, and the comparisons make the reads hold at
// the commit. A commit whose comparisons fail applied nothing (fail).

// readKeys reads keys in one transaction; values and versions by key.
func readKeys(ctx context.Context, c *client.Client, keys []string) (map[string][]byte, map[string]uint64, error) {
	ops := make([]client.TxnOp, len(keys))
	for i, k := range keys {
		ops[i] = client.TxnGet(k)
	}
	r, err := c.Txn(ctx, client.Txn{Then: ops})
	if err != nil {
		return nil, nil, err
	}
	if r.Duplicate {
		// A duplicate does not repeat its reads: nothing was read here.
		return nil, nil, fmt.Errorf("a read answered as a duplicate carries no values")
	}
	if len(r.Results) != len(keys) {
		return nil, nil, fmt.Errorf("read of %d keys returned %d results", len(keys), len(r.Results))
	}
	vals, vers := map[string][]byte{}, map[string]uint64{}
	for i, k := range keys {
		if r.Results[i].Found {
			vals[k], vers[k] = r.Results[i].Value, r.Results[i].Version
		}
	}
	return vals, vers, nil
}

// commitIf writes puts if every key in vers is still at its version
// (absent keys at 0); false when a comparison failed (nothing applied).
func commitIf(ctx context.Context, c *client.Client, vers map[string]uint64, keys []string, puts []client.TxnOp) (bool, error) {
	var cmps []client.Compare
	for _, k := range keys {
		cmps = append(cmps, client.VersionIs(k, vers[k]))
	}
	r, err := c.Txn(ctx, client.Txn{If: cmps, Then: puts})
	if err != nil {
		return false, err
	}
	return r.Succeeded, nil
}

// appendWorkload is the list-append workload of the Elle checker: each key
// holds a JSON list of ints; a transaction of 1 to 4 micro-operations
// appends unique values to, or reads, a few of a small set of keys.
type appendWorkload struct {
	e    *env
	keys int
}

func newAppend(e *env, keys int) *appendWorkload { return &appendWorkload{e: e, keys: keys} }

func (w *appendWorkload) key(i int) string { return fmt.Sprintf("la/%d", i) }

func (w *appendWorkload) step(ctx context.Context, wk *worker) history.Type {
	i := wk.node(w.e)
	n := 1 + wk.rng.IntN(4)
	mops := make([]elle.Mop, n)
	for j := range mops {
		k := w.key(wk.rng.IntN(w.keys))
		if wk.rng.IntN(2) == 0 {
			mops[j] = elle.Append(k, w.e.value())
		} else {
			mops[j] = elle.Read(k, nil)
		}
	}
	inv := w.e.rec.Invoke(wk.process, history.Op{F: "txn", Txn: mops, Node: w.e.names[i]})
	octx, cancel := w.e.opCtx(ctx)
	defer cancel()
	done, t, err := w.run(octx, w.e.clients[i], mops)
	w.e.rec.Complete(inv, t, func(op *history.Op) {
		op.Error = errText(err)
		if t == history.OK {
			op.Txn = done
		}
	})
	return t
}

// run executes mops: it reads every key involved, works out the lists,
// and (if anything is appended) commits the new lists provided no key
// changed since the read.
func (w *appendWorkload) run(ctx context.Context, c *client.Client, mops []elle.Mop) ([]elle.Mop, history.Type, error) {
	var keys []string
	seen := map[string]bool{}
	appends := false
	for _, m := range mops {
		if !seen[m.Key] {
			seen[m.Key] = true
			keys = append(keys, m.Key)
		}
		appends = appends || m.F == elle.FuncAppend
	}
	vals, vers, err := readKeys(ctx, c, keys)
	if err != nil {
		return nil, history.Fail, err // a read applies nothing
	}
	lists := map[string][]int{}
	for _, k := range keys {
		var l []int
		if v, ok := vals[k]; ok {
			if err := json.Unmarshal(v, &l); err != nil {
				return nil, history.Fail, fmt.Errorf("key %s holds %q: %w", k, v, err)
			}
		}
		lists[k] = l
	}
	done := make([]elle.Mop, len(mops))
	for j, m := range mops {
		if m.F == elle.FuncAppend {
			lists[m.Key] = append(lists[m.Key], m.Value)
			done[j] = m
		} else {
			done[j] = elle.Read(m.Key, append([]int{}, lists[m.Key]...))
		}
	}
	if !appends {
		return done, history.OK, nil
	}
	var puts []client.TxnOp
	for _, k := range keys {
		b, _ := json.Marshal(lists[k])
		puts = append(puts, client.TxnPut(k, b))
	}
	ok, err := commitIf(ctx, c, vers, keys, puts)
	switch {
	case err != nil:
		return nil, writeOutcome(err), err
	case !ok:
		return nil, history.Fail, fmt.Errorf("a key changed since the read")
	}
	return done, history.OK, nil
}

// final reads every key through every node (as read-only transactions).
func (w *appendWorkload) final(ctx context.Context) error {
	for i := range w.e.clients {
		var mops []elle.Mop
		for k := range w.keys {
			mops = append(mops, elle.Read(w.key(k), nil))
		}
		p := w.e.process()
		for {
			inv := w.e.rec.Invoke(p, history.Op{F: "txn", Txn: mops, Node: w.e.names[i]})
			octx, cancel := w.e.opCtx(ctx)
			done, t, err := w.run(octx, w.e.clients[i], mops)
			cancel()
			w.e.rec.Complete(inv, t, func(op *history.Op) {
				op.Error = errText(err)
				if t == history.OK {
					op.Txn = done
				}
			})
			if t == history.OK {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("append: final read through %s: %v", w.e.names[i], err)
			}
			time.Sleep(200 * time.Millisecond) // between retries of a node still recovering
		}
	}
	return nil
}

// checkAppend runs the Elle checker (strict serializability) over the
// append transactions of ops.
func checkAppend(ops []history.Op) (*elle.Result, error) {
	var h []elle.Op
	for _, op := range ops {
		if op.F != "txn" || op.Process == history.NemesisProcess {
			continue
		}
		h = append(h, elle.Op{Index: op.Index, Process: op.Process, Type: elle.OpType(op.Type), Time: op.Time, Txn: op.Txn})
	}
	r, err := elle.Check(h, elle.DefaultOptions())
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// bankWorkload moves money between accounts that live on different shards
// and reads all balances in one transaction; the total must never change.
type bankWorkload struct {
	e        *env
	accounts int
	initial  int
}

func newBank(e *env, accounts, initial int) *bankWorkload {
	return &bankWorkload{e: e, accounts: accounts, initial: initial}
}

func (w *bankWorkload) total() int { return w.accounts * w.initial }

func (w *bankWorkload) keys() []string {
	k := make([]string, w.accounts)
	for i := range k {
		k[i] = "bank/" + strconv.Itoa(i)
	}
	return k
}

// setup opens every account with the initial balance, once.
func (w *bankWorkload) setup(ctx context.Context) error {
	var cmps []client.Compare
	var puts []client.TxnOp
	for _, k := range w.keys() {
		cmps = append(cmps, client.Absent(k))
		puts = append(puts, client.TxnPut(k, []byte(strconv.Itoa(w.initial))))
	}
	for {
		octx, cancel := w.e.opCtx(ctx)
		_, err := w.e.clients[0].Txn(octx, client.Txn{If: cmps, Then: puts})
		cancel()
		if err == nil {
			// Opened now, or by an earlier attempt whose answer was lost
			// (then the comparisons failed and nothing changed).
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("bank: open accounts: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (w *bankWorkload) step(ctx context.Context, wk *worker) history.Type {
	i := wk.node(w.e)
	if wk.rng.IntN(4) == 0 {
		return w.read(ctx, wk.process, i, "bank-read")
	}
	from, to := wk.rng.IntN(w.accounts), wk.rng.IntN(w.accounts-1)
	if to >= from {
		to++
	}
	amount := 1 + wk.rng.IntN(5)
	inv := w.e.rec.Invoke(wk.process, history.Op{F: "transfer", Accounts: []int{from, to}, Amount: amount, Node: w.e.names[i]})
	octx, cancel := w.e.opCtx(ctx)
	defer cancel()
	t, err := w.transfer(octx, w.e.clients[i], from, to, amount)
	w.e.rec.Complete(inv, t, func(op *history.Op) { op.Error = errText(err) })
	return t
}

func (w *bankWorkload) transfer(ctx context.Context, c *client.Client, from, to, amount int) (history.Type, error) {
	keys := []string{w.keys()[from], w.keys()[to]}
	vals, vers, err := readKeys(ctx, c, keys)
	if err != nil {
		return history.Fail, err
	}
	a, errA := strconv.Atoi(string(vals[keys[0]]))
	b, errB := strconv.Atoi(string(vals[keys[1]]))
	if errA != nil || errB != nil {
		return history.Fail, fmt.Errorf("balances %q, %q", vals[keys[0]], vals[keys[1]])
	}
	if a < amount {
		return history.Fail, fmt.Errorf("insufficient funds")
	}
	ok, err := commitIf(ctx, c, vers, keys, []client.TxnOp{
		client.TxnPut(keys[0], []byte(strconv.Itoa(a-amount))),
		client.TxnPut(keys[1], []byte(strconv.Itoa(b+amount))),
	})
	switch {
	case err != nil:
		return writeOutcome(err), err
	case !ok:
		return history.Fail, fmt.Errorf("a balance changed since the read")
	}
	return history.OK, nil
}

func (w *bankWorkload) read(ctx context.Context, process, i int, f string) history.Type {
	inv := w.e.rec.Invoke(process, history.Op{F: f, Node: w.e.names[i]})
	octx, cancel := w.e.opCtx(ctx)
	defer cancel()
	vals, _, err := readKeys(octx, w.e.clients[i], w.keys())
	if err != nil {
		w.e.rec.Complete(inv, history.Fail, func(op *history.Op) { op.Error = errText(err) })
		return history.Fail
	}
	bal := make([]int, w.accounts)
	for j, k := range w.keys() {
		v, err := strconv.Atoi(string(vals[k]))
		if err != nil {
			v = -1 << 30 // a missing or garbled account: the checker reports it
		}
		bal[j] = v
	}
	w.e.rec.Complete(inv, history.OK, func(op *history.Op) { op.Balances = bal })
	return history.OK
}

func (w *bankWorkload) final(ctx context.Context) error {
	for i := range w.e.clients {
		p := w.e.process()
		for w.read(ctx, p, i, "bank-final-read") != history.OK {
			if ctx.Err() != nil {
				return fmt.Errorf("bank: final read through %s failed", w.e.names[i])
			}
			time.Sleep(200 * time.Millisecond) // between retries of a node still recovering
		}
	}
	return nil
}
