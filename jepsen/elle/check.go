package elle

import (
	"fmt"
	"slices"
	"strings"
)

// Check decides whether history could have been produced by a system
// providing opts.Model, and explains every anomaly it finds.
//
// The history must be in the order its events happened (the order a
// harness records them in); that order is the real-time order. Check
// returns an error wrapping ErrMalformed when the history breaks the rules
// in the package documentation, and Validate's error for bad options. It
// never panics on bad input and does not modify history.
func Check(history []Op, opts Options) (Result, error) {
	if err := opts.Validate(); err != nil {
		return Result{}, err
	}
	opts = opts.withDefaults()
	txns, eventTxn, err := parse(history)
	if err != nil {
		return Result{}, err
	}
	c := &checker{
		opts:     opts,
		history:  history,
		useIndex: hasIndexes(history),
		txns:     txns,
		keys:     make(map[string]*keyInfo),
		found:    collector{max: opts.MaxExamples, counts: make(map[AnomalyType]int)},
	}
	if err := c.indexWrites(); err != nil {
		return Result{}, err
	}
	c.checkTxns()
	c.inferOrders()
	c.checkIntermediateReads()

	c.g = newGraph(len(txns))
	c.addDataEdges()
	switch opts.Model {
	case StrongSessionSerializable:
		c.addProcessEdges()
	case StrictSerializable:
		c.addRealtimeEdges(eventTxn)
	}
	c.g.build()
	comps := c.g.components()
	c.findCycles(comps)

	// Group the examples by type, keeping the order they were found in.
	anomalies := append([]Anomaly{}, c.found.anomalies...)
	slices.SortStableFunc(anomalies, func(a, b Anomaly) int { return strings.Compare(string(a.Type), string(b.Type)) })
	res := Result{
		Valid:        len(c.found.counts) == 0,
		Model:        opts.Model,
		AnomalyTypes: c.found.types(),
		Anomalies:    anomalies,
		Counts: Counts{
			Events:     len(history),
			Txns:       len(txns),
			Keys:       len(c.keys),
			Edges:      c.g.edges(),
			Components: len(comps),
			Anomalies:  c.found.counts,
			Omitted:    c.found.omitted,
		},
	}
	for i := range txns {
		switch txns[i].status {
		case OK:
			res.Counts.OK++
		case Fail:
			res.Counts.Fail++
		default:
			res.Counts.Info++
		}
	}
	return res, nil
}

// checker holds the state of one Check call.
type checker struct {
	opts     Options
	history  []Op
	useIndex bool // name events by Op.Index rather than position
	txns     []txn
	keys     map[string]*keyInfo
	keyNames []string // sorted, so results do not depend on map order
	g        *graph
	found    collector
}

// mopRef points at one micro-operation: transaction and position in it.
type mopRef struct {
	txn int32
	mop int32
}

// readRef is a read of a committed transaction.
type readRef struct {
	mopRef
	// external: the transaction had not touched the key before, so the
	// read shows what other transactions left there.
	external bool
	// prefix: the read is a prefix of the key's inferred order.
	prefix bool
}

// keyInfo is what Check knows about one key.
type keyInfo struct {
	name    string
	writers map[int]mopRef // appended value → its append
	reads   []readRef      // reads of committed transactions, in txn order
	// order is the inferred version order: the values of the longest
	// committed read (repeats dropped), oldest first. Appends nobody read
	// have no place in it.
	order []int
	// orderFrom is the read order was taken from.
	orderFrom mopRef
	pos       map[int]int // value → position in order, built on demand
}

func (c *checker) mop(r mopRef) Mop    { return c.txns[r.txn].mops[r.mop] }
func (c *checker) name(t int32) string { return c.txns[t].name }

func (c *checker) key(name string) *keyInfo {
	k, ok := c.keys[name]
	if !ok {
		k = &keyInfo{name: name, writers: make(map[int]mopRef)}
		c.keys[name] = k
		c.keyNames = append(c.keyNames, name)
	}
	return k
}

// writer returns the transaction that appended v to k, and whether any did.
func (k *keyInfo) writer(v int) (int32, bool) {
	w, ok := k.writers[v]
	return w.txn, ok
}

// position returns where v sits in the key's order, or -1.
func (k *keyInfo) position(v int) int {
	if k.pos == nil {
		k.pos = make(map[int]int, len(k.order))
		for i, x := range k.order {
			k.pos[x] = i
		}
	}
	if p, ok := k.pos[v]; ok {
		return p
	}
	return -1
}

// indexWrites records who appended each value, from every transaction
// whatever its outcome, and enforces the uniqueness the workload promises.
func (c *checker) indexWrites() error {
	for t := range c.txns {
		for m, mop := range c.txns[t].mops {
			if mop.F != FuncAppend {
				continue
			}
			k := c.key(mop.Key)
			if prev, dup := k.writers[mop.Value]; dup {
				return fmt.Errorf("%w: %s and %s both append %d to %q; appended values must be unique per key",
					ErrMalformed, c.name(prev.txn), c.txns[t].name, mop.Value, mop.Key)
			}
			k.writers[mop.Value] = mopRef{int32(t), int32(m)}
		}
	}
	// Keys only ever read get an entry too, for garbage reads.
	for t := range c.txns {
		if c.txns[t].status != OK {
			continue
		}
		for _, mop := range c.txns[t].mops {
			c.key(mop.Key)
		}
	}
	slices.Sort(c.keyNames)
	return nil
}

// view is what a transaction knows about a key from its own operations.
type view struct {
	key   string
	known bool  // list holds the key's full value
	list  []int // when known
	tail  []int // when not known: the transaction's own appends so far
	// touched: an earlier read or append of the key exists in the txn.
	touched bool
}

// checkTxns looks at each committed transaction on its own: the reads
// must agree with the transaction's own operations, and every value read
// must come from an append that may have happened.
func (c *checker) checkTxns() {
	var views []view
	for t := range c.txns {
		tx := &c.txns[t]
		if tx.status != OK {
			continue
		}
		views = views[:0]
		find := func(key string) *view {
			for i := range views {
				if views[i].key == key {
					return &views[i]
				}
			}
			views = append(views, view{key: key})
			return &views[len(views)-1]
		}
		for m, mop := range tx.mops {
			v := find(mop.Key)
			ref := mopRef{int32(t), int32(m)}
			if mop.F == FuncAppend {
				if v.known {
					v.list = append(slices.Clip(v.list), mop.Value)
				} else {
					v.tail = append(v.tail, mop.Value)
				}
				v.touched = true
				continue
			}
			k := c.keys[mop.Key]
			k.reads = append(k.reads, readRef{mopRef: ref, external: !v.touched})
			c.checkInternal(ref, v)
			c.checkValuesRead(ref, k)
			v.known, v.list, v.tail, v.touched = true, mop.Read, nil, true
		}
	}
}

// checkInternal compares a read with what the transaction's earlier
// operations on the key imply.
func (c *checker) checkInternal(ref mopRef, v *view) {
	got := c.mop(ref).Read
	var want string
	switch {
	case v.known && !slices.Equal(got, v.list):
		want = "exactly " + shortList(v.list)
	case !v.known && len(v.tail) > 0 && !hasSuffix(got, v.tail):
		want = "a list ending in " + shortList(v.tail) + ", its own appends"
	default:
		return
	}
	tx := &c.txns[ref.txn]
	var before []string
	for _, m := range tx.mops[:ref.mop] {
		if m.Key == v.key {
			before = append(before, c.mopText(tx, m))
		}
	}
	c.report(Internal, func() Anomaly {
		return Anomaly{
			Ops: []Op{c.opOf(ref.txn)},
			Key: v.key,
			Explanation: fmt.Sprintf("%s did %s and then read %s = %s; after its own operations it should have read %s.\n%s",
				tx.name, strings.Join(before, ", then "), v.key, shortList(got), want, c.legend([]string{v.key}, ref.txn)),
		}
	})
}

// checkValuesRead reports values that no transaction that may have
// happened appended: garbage, aborted (G1a) and the reader's own appends
// that come later in the same transaction.
func (c *checker) checkValuesRead(ref mopRef, k *keyInfo) {
	read := c.mop(ref).Read
	var garbage, aborted, future []int
	for _, v := range read {
		w, ok := k.writers[v]
		switch {
		case !ok:
			garbage = append(garbage, v)
		case c.txns[w.txn].status == Fail:
			aborted = append(aborted, v)
		case w.txn == ref.txn && w.mop > ref.mop:
			future = append(future, v)
		}
	}
	reader := c.name(ref.txn)
	if len(garbage) > 0 {
		c.report(GarbageRead, func() Anomaly {
			return Anomaly{
				Ops: []Op{c.opOf(ref.txn)},
				Key: k.name,
				Explanation: fmt.Sprintf("%s read %s = %s, but no transaction ever tried to append %s to %s.\n%s",
					reader, k.name, shortList(read), joinInts(garbage), k.name, c.legend([]string{k.name}, ref.txn)),
			}
		})
	}
	if len(aborted) > 0 {
		c.report(G1a, func() Anomaly {
			ops := []Op{c.opOf(ref.txn)}
			ids := []int32{ref.txn}
			var who []string
			for _, v := range aborted {
				w, _ := k.writer(v)
				who = append(who, fmt.Sprintf("%d was appended by %s, which failed", v, c.name(w)))
				if !slices.Contains(ids, w) {
					ids = append(ids, w)
					ops = append(ops, c.opOf(w))
				}
			}
			return Anomaly{
				Ops: ops,
				Key: k.name,
				Explanation: fmt.Sprintf("%s read %s = %s, but %s: a failed transaction must leave no trace, yet %s observed its write.\n%s",
					reader, k.name, shortList(read), strings.Join(who, "; "), reader, c.legend([]string{k.name}, ids...)),
			}
		})
	}
	if len(future) > 0 {
		c.report(Internal, func() Anomaly {
			return Anomaly{
				Ops: []Op{c.opOf(ref.txn)},
				Key: k.name,
				Explanation: fmt.Sprintf("%s read %s = %s, which holds %s, values %s itself appends only later in the transaction.\n%s",
					reader, k.name, shortList(read), joinInts(future), reader, c.legend([]string{k.name}, ref.txn)),
			}
		})
	}
}

// inferOrders takes, for each key, the longest committed read as the
// key's version order: every other read must be a prefix of it. Reads that
// are not are reported as incompatible-order (and duplicate-elements when
// a value repeats) and are left out of the anti-dependency edges.
func (c *checker) inferOrders() {
	for _, name := range c.keyNames {
		k := c.keys[name]
		longest := -1
		for i, r := range k.reads {
			if longest < 0 || len(c.mop(r.mopRef).Read) > len(c.mop(k.reads[longest].mopRef).Read) {
				longest = i
			}
		}
		if longest < 0 {
			continue
		}
		k.orderFrom = k.reads[longest].mopRef
		k.order = dedupe(c.mop(k.orderFrom).Read)

		var conflicts []mopRef
		for i := range k.reads {
			r := &k.reads[i]
			read := c.mop(r.mopRef).Read
			if isPrefix(read, k.order) {
				r.prefix = true
				continue
			}
			if dups := duplicates(read); len(dups) > 0 {
				c.report(DuplicateElements, func() Anomaly {
					return Anomaly{
						Ops: []Op{c.opOf(r.txn)},
						Key: name,
						Explanation: fmt.Sprintf("%s read %s = %s, in which %s more than once; each value is appended once, so a list can hold it at most once.\n%s",
							c.name(r.txn), name, shortList(read), plural(dups, "appears", "appear"), c.legend([]string{name}, r.txn)),
					}
				})
			}
			if !isPrefix(dedupe(read), k.order) {
				conflicts = append(conflicts, r.mopRef)
			}
		}
		if len(conflicts) > 0 {
			c.reportIncompatible(k, conflicts)
		}
	}
}

func (c *checker) reportIncompatible(k *keyInfo, conflicts []mopRef) {
	ref, first := k.orderFrom, conflicts[0]
	a, b := c.mop(ref).Read, c.mop(first).Read
	at := 0
	for at < len(a) && at < len(b) && a[at] == b[at] {
		at++
	}
	var diff string
	if at < len(b) && at < len(a) {
		diff = fmt.Sprintf("element %d is %d in the first and %d in the second", at+1, a[at], b[at])
	} else {
		diff = "neither is a prefix of the other"
	}
	more := ""
	if len(conflicts) > 1 {
		more = fmt.Sprintf(" %d other reads of %s conflict with %s's the same way.", len(conflicts)-1, k.name, c.name(ref.txn))
	}
	c.report(IncompatibleOrder, func() Anomaly {
		return Anomaly{
			Ops: []Op{c.opOf(ref.txn), c.opOf(first.txn)},
			Key: k.name,
			Explanation: fmt.Sprintf("%s read %s = %s and %s read %s = %s: %s. Appends only add to the end, so every read of %s should be a prefix of every longer one; no single order of appends explains both.%s\n%s",
				c.name(ref.txn), k.name, shortList(a), c.name(first.txn), k.name, shortList(b), diff, k.name, more, c.legend([]string{k.name}, ref.txn, first.txn)),
		}
	})
}

// checkIntermediateReads reports G1b: a read whose last element is a value
// its writer followed with another append to the same key in the same
// transaction, so the list read was never a committed state.
func (c *checker) checkIntermediateReads() {
	for _, name := range c.keyNames {
		k := c.keys[name]
		for _, r := range k.reads {
			read := c.mop(r.mopRef).Read
			if !r.external || len(read) == 0 {
				continue
			}
			last := read[len(read)-1]
			w, ok := k.writers[last]
			if !ok || w.txn == r.txn || c.txns[w.txn].status == Fail {
				continue
			}
			wt := &c.txns[w.txn]
			for _, later := range wt.mops[w.mop+1:] {
				if later.F != FuncAppend || later.Key != name {
					continue
				}
				c.report(G1b, func() Anomaly {
					return Anomaly{
						Ops: []Op{c.opOf(r.txn), c.opOf(w.txn)},
						Key: name,
						Explanation: fmt.Sprintf("%s read %s = %s, ending in %d; but %s appended %d and then %d to %s in one transaction, so a list ending in %d was only ever an intermediate state of %s, never a committed one.\n%s",
							c.name(r.txn), name, shortList(read), last, wt.name, last, later.Value, name, last, wt.name, c.legend([]string{name}, r.txn, w.txn)),
					}
				})
				break
			}
		}
	}
}

// addDataEdges adds the ww, wr and rw edges every key's order implies.
func (c *checker) addDataEdges() {
	for _, name := range c.keyNames {
		k := c.keys[name]
		// ww: consecutive versions in the order.
		for i := 1; i < len(k.order); i++ {
			a, okA := c.nodeWriter(k, k.order[i-1])
			b, okB := c.nodeWriter(k, k.order[i])
			if okA && okB {
				c.g.add(a, b, kindWW)
			}
		}
		for _, r := range k.reads {
			if !r.external {
				continue
			}
			read := c.mop(r.mopRef).Read
			// wr: whoever appended the last element read came first.
			if len(read) > 0 {
				if w, ok := c.nodeWriter(k, read[len(read)-1]); ok {
					c.g.add(w, r.txn, kindWR)
				}
			}
			// rw: whoever appended the element right after what was read
			// came after the reader.
			if r.prefix && len(read) < len(k.order) {
				if w, ok := c.nodeWriter(k, k.order[len(read)]); ok {
					c.g.add(r.txn, w, kindRW)
				}
			}
		}
	}
}

// nodeWriter returns the writer of v if it is a graph node.
func (c *checker) nodeWriter(k *keyInfo, v int) (int32, bool) {
	w, ok := k.writer(v)
	if !ok || !c.txns[w].node() {
		return 0, false
	}
	return w, true
}

// addProcessEdges orders each process's transactions. An unknown
// transaction may take effect later than its successors, so edges leave
// only committed ones; chaining from the last committed one keeps the
// order transitive across unknown ones.
func (c *checker) addProcessEdges() {
	lastOK := make(map[int]int32)
	for t := range c.txns {
		tx := &c.txns[t]
		if !tx.node() {
			continue
		}
		if prev, ok := lastOK[tx.process]; ok {
			c.g.add(prev, int32(t), kindProcess)
		}
		if tx.status == OK {
			lastOK[tx.process] = int32(t)
		}
	}
}

// addRealtimeEdges adds enough real-time edges that their transitive
// closure is "completed before the other was invoked", without the
// quadratic full relation. It walks the events keeping a frontier: the
// committed transactions that completed and are not yet implied by a later
// one. A transaction invoked now follows every frontier member; when it
// completes, it implies those members, which leave the frontier, and it
// joins it. Unknown transactions never complete for this purpose: they may
// take effect any time after their invocation.
func (c *checker) addRealtimeEdges(eventTxn []int32) {
	var frontier []int32
	inFrontier := make([]bool, len(c.txns))
	preds := make(map[int32][]int32)
	for pos, op := range c.history {
		t := eventTxn[pos]
		tx := &c.txns[t]
		if !tx.node() {
			continue
		}
		if op.Type == Invoke {
			live := frontier[:0]
			for _, p := range frontier {
				if inFrontier[p] {
					live = append(live, p)
				}
			}
			frontier = live
			for _, p := range frontier {
				c.g.add(p, t, kindRealtime)
			}
			if tx.status == OK {
				preds[t] = slices.Clone(frontier)
			}
			continue
		}
		if op.Type != OK {
			continue
		}
		for _, p := range preds[t] {
			inFrontier[p] = false
		}
		delete(preds, t)
		frontier = append(frontier, t)
		inFrontier[t] = true
	}
}

// opOf returns the event that stands for a transaction in reports.
func (c *checker) opOf(t int32) Op {
	tx := &c.txns[t]
	pos := tx.invoke
	if tx.complete >= 0 {
		pos = tx.complete
	}
	op := c.history[pos]
	op.Txn = tx.mops
	return op
}

// describe renders a transaction for a legend: "T12 = process 3, ok:
// [append x 3] [r y [1 2]]". Long transactions show only the
// micro-operations on the given keys.
func (c *checker) describe(keys []string, t int32) string {
	const short = 8
	tx := &c.txns[t]
	status := string(tx.status)
	if tx.complete < 0 {
		status = "never completed"
	}
	var parts []string
	for _, m := range tx.mops {
		if len(tx.mops) > short && !slices.Contains(keys, m.Key) {
			continue
		}
		parts = append(parts, "["+c.mopText(tx, m)+"]")
	}
	if n := len(tx.mops) - len(parts); n > 0 {
		parts = append(parts, fmt.Sprintf("(and %d micro-operations on other keys)", n))
	}
	return fmt.Sprintf("%s = process %d, %s: %s", tx.name, tx.process, status, strings.Join(parts, " "))
}

// mopText renders a micro-operation for explanations, eliding the middle
// of long lists. Reads of transactions that did not commit returned
// nothing known and show as "?".
func (c *checker) mopText(tx *txn, m Mop) string {
	switch {
	case m.F == FuncAppend:
		return m.String()
	case tx.status != OK:
		return fmt.Sprintf("r %s ?", m.Key)
	}
	return fmt.Sprintf("r %s %s", m.Key, shortList(m.Read))
}

// legend lists the transactions an explanation mentions; keys are those
// the explanation is about.
func (c *checker) legend(keys []string, ts ...int32) string {
	var b strings.Builder
	b.WriteString("where")
	for _, t := range ts {
		b.WriteString("\n  ")
		b.WriteString(c.describe(keys, t))
	}
	return b.String()
}

// report counts an anomaly and, if it is to be kept, builds it: the
// explanation is only written for anomalies the result will hold.
func (c *checker) report(t AnomalyType, build func() Anomaly) {
	if !c.found.keep(t) {
		return
	}
	a := build()
	a.Type = t
	c.found.anomalies = append(c.found.anomalies, a)
}

func isPrefix(a, b []int) bool { return len(a) <= len(b) && slices.Equal(a, b[:len(a)]) }

func hasSuffix(a, b []int) bool {
	return len(a) >= len(b) && slices.Equal(a[len(a)-len(b):], b)
}

// dedupe returns l without repeated values, keeping first occurrences. It
// returns l itself when nothing repeats.
func dedupe(l []int) []int {
	if len(duplicates(l)) == 0 {
		return l
	}
	seen := make(map[int]bool, len(l))
	out := make([]int, 0, len(l))
	for _, v := range l {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// duplicates returns the values appearing more than once in l, in order
// of their second appearance.
func duplicates(l []int) []int {
	seen := make(map[int]int, len(l))
	var out []int
	for _, v := range l {
		seen[v]++
		if seen[v] == 2 {
			out = append(out, v)
		}
	}
	return out
}

// plural renders "value 3 appears" or "values 3, 4 appear".
func plural(vs []int, one, many string) string {
	if len(vs) == 1 {
		return fmt.Sprintf("value %d %s", vs[0], one)
	}
	return fmt.Sprintf("values %s %s", joinInts(vs), many)
}

func joinInts(vs []int) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = fmt.Sprint(v)
	}
	return strings.Join(parts, ", ")
}
