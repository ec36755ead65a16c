package txn

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/shard"
)

// Errors. ErrConflict: the transaction kept losing races (nothing of it
// applied; retry). ErrPending: a transaction holding a key is still running.
var (
	ErrConflict = errors.New("txn: conflict")
	ErrPending  = errors.New("txn: transaction still pending")
)

// OutcomeUnknownError: the decision was proposed but its fate could not be
// learned, or it committed and the answer with its versions was lost (Err
// says which). The transaction may have committed; TxnID names it.
type OutcomeUnknownError struct {
	TxnID string
	Err   error
}

func (e *OutcomeUnknownError) Error() string {
	return fmt.Sprintf("txn: outcome of transaction %s unknown: %v", e.TxnID, e.Err)
}

func (e *OutcomeUnknownError) Unwrap() error { return e.Err }

// Cluster is what a coordinator needs from the node it runs in.
type Cluster interface {
	// Locate returns the shard that holds key.
	Locate(ctx context.Context, key []byte) (fsm.ShardID, error)
	// Propose runs cmd on the leader of shard id, retrying what certainly
	// did not apply; errors are the node's (unavailable, outcome unknown).
	Propose(ctx context.Context, id fsm.ShardID, cmd fsm.Command) (fsm.Result, error)
	// Read returns key linearizably (found false when absent), settling any
	// intent in its way first.
	Read(ctx context.Context, key []byte) (it fsm.Item, found bool, err error)
	// Shards lists every data shard (a scanned range spans them all).
	Shards(ctx context.Context) ([]fsm.ShardID, error)
}

// Failpoint names a step at which tests make the coordinator stop as if it
// had crashed (Config.Failpoint).
type Failpoint string

const (
	// AfterPrepareOne: one participant other than the record's shard
	// prepared, the rest not yet asked; no record.
	AfterPrepareOne Failpoint = "after-prepare-one"
	// BeforeDecide: every participant but the record's shard prepared;
	// the record's shard not asked, no record.
	BeforeDecide Failpoint = "before-decide"
	// AfterDecide: the record's shard committed (its writes applied, the
	// record committed); no other participant resolved.
	AfterDecide Failpoint = "after-decide"
	// AfterResolveOne: the answer went back (the record committed), and
	// then, resolving in the background, one participant besides the
	// record's shard resolved, any others not.
	AfterResolveOne Failpoint = "after-resolve-one"
)

// Config configures a Coordinator.
type Config struct {
	// TTL bounds how long a transaction may take from its first prepare
	// to its commit: an intent older than that whose record was never
	// written is aborted by whoever meets it (or by the resolver), so a
	// crashed coordinator's locks go about TTL after it prepared. Every
	// node of a cluster should use the same TTL. Default 3s.
	TTL time.Duration
	// Attempts bounds how often a transaction that lost a race is run
	// again before ErrConflict. Default 8.
	Attempts int
	// Now is the clock stamped into intents and compared with their age
	// (default time.Now).
	Now func() time.Time
	// Metrics: where outcomes and step times go (nil: nowhere).
	Metrics *Metrics
	// Failpoint, for tests: when it returns an error at a step, the
	// coordinator returns that error at once and does nothing more, as if
	// its process had died there.
	Failpoint func(Failpoint) error
}

// Coordinator runs cross-shard transactions. It is safe for concurrent use.
type Coordinator struct {
	c   Cluster
	cfg Config
	// Work after answers (resolving committed transactions' other
	// participants, forgetting records) runs under bg; Close ends it.
	bg       context.Context
	bgCancel context.CancelFunc
	bgWG     sync.WaitGroup
	bgMu     sync.Mutex // guards closed against bgWG.Go after Close
	closed   bool
	// resolves and forgets batch the work after answers by shard
	// (resolveLater, forgetLater).
	resolves *shardBatcher[queuedResolve]
	forgets  *shardBatcher[string]
}

// queuedResolve is one committed transaction's part on one shard, waiting
// to be resolved; left counts its parts not resolved yet (its record is
// forgotten when none is left).
type queuedResolve struct {
	id          string
	recordShard fsm.ShardID
	keys        [][]byte
	left        *atomic.Int32
}

// background runs fn under the coordinator's background work, unless it
// is closed.
func (co *Coordinator) background(fn func()) bool {
	co.bgMu.Lock()
	defer co.bgMu.Unlock()
	if co.closed {
		return false
	}
	co.bgWG.Go(fn)
	return true
}

// Close stops the background work and waits for it: records not forgotten
// yet stay (decided, harmless), and so do intents of committed transactions
// not resolved yet (settled later from their records).
func (co *Coordinator) Close() {
	co.bgMu.Lock()
	co.closed = true
	co.bgMu.Unlock()
	co.bgCancel()
	co.bgWG.Wait()
}

// TTL returns the records' time to live (Config.TTL with its default).
func (co *Coordinator) TTL() time.Duration { return co.cfg.TTL }

// New returns a coordinator over c.
func New(c Cluster, cfg Config) *Coordinator {
	if cfg.TTL <= 0 {
		cfg.TTL = 3 * time.Second
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 8
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	co := &Coordinator{c: c, cfg: cfg}
	co.bg, co.bgCancel = context.WithCancel(context.Background())
	co.resolves = newShardBatcher(co.background, co.resolveQueued)
	co.forgets = newShardBatcher(co.background, co.forgetQueued)
	return co
}

// Request is a compare-and-write transaction: when every comparison in If
// holds, Then runs, otherwise Else. Ops are fsm.Put, fsm.Delete and fsm.Get.
type Request struct {
	If         []fsm.Compare
	Then, Else []fsm.Op
	// Scans: ranges read before (by a Tx), each with every key in it and
	// its version (fsm.ScanRead, across all shards). Each must still hold
	// exactly that when the transaction takes effect, else nothing applies
	// and Execute returns ErrChanged. Their ranges stay locked against
	// writers from prepare to resolve, so no key appears in them
	// meanwhile.
	Scans []fsm.ScanRead
}

// Response says which branch ran and, per op of it, what it did: the new
// version of a put, whether a delete found the key, what a get read.
type Response struct {
	Succeeded bool
	Results   []fsm.OpResult
	TxnID     string
}

var errRetry = errors.New("txn: lost a race")

// Execute runs req atomically across shards (strictly serializable). Errors:
// ErrConflict (nothing applied; retry), *OutcomeUnknownError (the commit
// went unanswered and an abort proposed after it did not settle its fate,
// or found it committed), the node's unavailable errors (nothing applied;
// also when a prepare went unanswered, since the transaction then never
// reaches its commit point, and when the abort that followed an unanswered
// commit won), a failpoint's error.
func (co *Coordinator) Execute(ctx context.Context, req Request) (resp Response, err error) {
	defer func() { co.cfg.Metrics.Done(kindOf(resp, err), outcomeOf(err)) }()
	var lastErr error
	for attempt := 0; attempt < co.cfg.Attempts; attempt++ {
		if attempt > 0 && !sleep(ctx, attempt) {
			break
		}
		resp, err := co.attempt(ctx, req)
		if !errors.Is(err, errRetry) {
			return resp, err
		}
		lastErr = err
	}
	if lastErr == nil {
		lastErr = ctx.Err()
	}
	return Response{}, fmt.Errorf("%w: %w", ErrConflict, lastErr)
}

func kindOf(r Response, err error) string {
	if err == nil && r.TxnID == "" {
		return "read_only"
	}
	return "cross_shard"
}

// outcomeOf names a transaction's outcome for the metrics.
func outcomeOf(err error) string {
	var unknown *OutcomeUnknownError
	switch {
	case err == nil:
		return "committed"
	case errors.Is(err, ErrConflict), errors.Is(err, fsm.ErrConflict):
		return "conflict"
	case errors.As(err, &unknown):
		return "unknown"
	}
	return "error"
}

// sleep waits a jittered, growing backoff before attempt; false if ctx ended.
func sleep(ctx context.Context, attempt int) bool {
	d := min(2*time.Millisecond<<min(attempt, 6), 100*time.Millisecond)
	t := time.NewTimer(d/2 + rand.N(d/2+1))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// plan is one attempt's view: what was read, the branch, its writes.
type plan struct {
	succeeded bool
	ops       []fsm.Op
	results   []fsm.OpResult
	reads     map[string]uint64 // key → version read (0: absent)
	writes    map[string]fsm.Op // key → final write
	order     [][]byte          // every key, in first-use order
}

func (co *Coordinator) plan(ctx context.Context, req Request) (*plan, error) {
	p := &plan{reads: map[string]uint64{}, writes: map[string]fsm.Op{}}
	seen := map[string]bool{}
	use := func(k []byte) {
		if !seen[string(k)] {
			seen[string(k)] = true
			p.order = append(p.order, k)
		}
	}
	var toRead [][]byte
	for _, c := range req.If {
		use(c.Key)
		toRead = append(toRead, c.Key)
	}
	for _, op := range slices.Concat(req.Then, req.Else) {
		use(op.Key)
		if op.Type == fsm.OpGet || op.Type == fsm.OpDelete {
			toRead = append(toRead, op.Key)
		}
	}
	start := time.Now()
	items, err := co.readAll(ctx, toRead)
	if err != nil {
		return nil, err
	}
	co.cfg.Metrics.observe("read", start)
	for k, it := range items {
		p.reads[k] = it.Version
	}
	p.succeeded = true
	for _, c := range req.If {
		if it := items[string(c.Key)]; !c.Holds(it.Version, it.Value) {
			p.succeeded = false
			break
		}
	}
	p.ops = req.Then
	if !p.succeeded {
		p.ops = req.Else
	}
	// The branch's gets see its earlier writes.
	overlay := map[string]*fsm.Item{}
	p.results = make([]fsm.OpResult, len(p.ops))
	for i, op := range p.ops {
		k := string(op.Key)
		cur, written := overlay[k]
		if !written {
			if it, ok := items[k]; ok && it.Version != 0 {
				cur = &it
			}
		}
		switch op.Type {
		case fsm.OpGet:
			if cur != nil {
				p.results[i] = fsm.OpResult{Found: true, Version: cur.Version, Value: cur.Value}
			}
		case fsm.OpPut:
			overlay[k] = &fsm.Item{Key: op.Key, Value: op.Value}
			p.writes[k] = op
		case fsm.OpDelete:
			p.results[i].Existed = cur != nil
			overlay[k] = nil
			p.writes[k] = op
		}
	}
	return p, nil
}

// readAll reads keys in parallel; absent keys map to a zero Item.
func (co *Coordinator) readAll(ctx context.Context, keys [][]byte) (map[string]fsm.Item, error) {
	out := make(map[string]fsm.Item, len(keys))
	unique := make([][]byte, 0, len(keys))
	for _, k := range keys {
		if _, dup := out[string(k)]; !dup {
			out[string(k)] = fsm.Item{}
			unique = append(unique, k)
		}
	}
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for _, k := range unique {
		wg.Go(func() {
			it, found, err := co.c.Read(ctx, k)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil && firstErr == nil:
				firstErr = err
			case found:
				out[string(k)] = it
			}
		})
	}
	wg.Wait()
	return out, firstErr
}

// sameReads reports whether two rounds of reads of a transaction found
// every key at the same version. For a lockFree plan every key then held
// its value from its first read to its second, so all of them held their
// values together at any moment between the end of the first round and the
// start of the second: the transaction takes effect there, without locks.
func sameReads(p, q *plan) bool {
	for k, v := range p.reads {
		if q.reads[k] != v {
			return false
		}
	}
	return len(p.reads) == len(q.reads)
}

// lockFree reports whether a plan may take effect without locks once a
// second round of reads agrees with it: it writes nothing, scans nothing,
// and every key it read exists. A key absent twice may have been created
// and deleted in between (deletes leave no version behind), so reads of
// absent keys take the locking path.
func lockFree(p *plan, scans []fsm.ScanRead) bool {
	if len(p.writes) > 0 || len(scans) > 0 {
		return false
	}
	for _, v := range p.reads {
		if v == 0 {
			return false
		}
	}
	return true
}

// participant is one shard's share of a transaction.
type participant struct {
	id     fsm.ShardID
	reads  []fsm.Compare
	writes []fsm.Op
	keys   [][]byte
	scans  []fsm.ScanRead
}

// lockFreeRounds is how many times a transaction that writes nothing reads
// its keys again, looking for two rounds in a row that agree, before it
// takes locks. Each round is compared with the one before it, so a round
// that changed starts the next comparison.
const lockFreeRounds = 8

func (co *Coordinator) attempt(ctx context.Context, req Request) (Response, error) {
	p, err := co.plan(ctx, req)
	if err != nil {
		return Response{}, err
	}
	for round := 0; round < lockFreeRounds && lockFree(p, req.Scans); round++ {
		q, err := co.plan(ctx, req)
		if err != nil {
			return Response{}, err
		}
		if sameReads(p, q) {
			return Response{Succeeded: q.succeeded, Results: q.results}, nil
		}
		p = q
	}
	parts, byKey, err := co.split(ctx, p, req.Scans)
	if err != nil {
		return Response{}, err
	}
	if len(parts) == 0 {
		return Response{}, fmt.Errorf("%w: a transaction with no keys and no scans", fsm.ErrInvalid)
	}
	id := newID()
	recordShard := parts[0].id
	shards := make([]fsm.ShardID, len(parts))
	for i, pt := range parts {
		shards[i] = pt.id
	}
	now := uint64(co.cfg.Now().UnixMilli())

	// Every participant but the record's shard prepares first, all at
	// once: their intents name the record's shard and carry the time, so
	// that whoever meets one before the record exists treats it as
	// pending, and as abandoned once it is older than the TTL. Then the
	// record's shard checks, writes and decides in one step (Commit):
	// that step is the commit point.
	others := parts[1:]
	outcomes := make([]outcome, len(others))
	prepare := func(i int) {
		pt := others[i]
		ph := &fsm.Phase{Kind: fsm.PhasePrepare, TxnID: id, RecordShard: recordShard, Now: now,
			Reads: pt.reads, Writes: pt.writes, Scans: pt.scans}
		r, err := co.c.Propose(ctx, pt.id, fsm.Command{RequestID: fmt.Sprintf("%s/prepare/%d", id, pt.id), Phase: ph})
		outcomes[i] = outcome{r, err}
	}
	// Cleaning up must not stop because the caller's context did: locks
	// left behind would wait for the TTL.
	cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), co.cfg.TTL)
	defer cancel()
	prepStart := time.Now()
	first := 0
	if len(others) > 0 && co.cfg.Failpoint != nil {
		prepare(0)
		if o := outcomes[0]; o.err == nil && o.res.Code == fsm.OK {
			if fp := co.failpoint(AfterPrepareOne); fp != nil {
				return Response{}, fp
			}
		}
		first = 1
	}
	var wg sync.WaitGroup
	for i := first; i < len(others); i++ {
		wg.Go(func() { prepare(i) })
	}
	wg.Wait()
	if len(others) > 0 {
		co.cfg.Metrics.observe("prepare", prepStart)
	}
	for _, o := range outcomes {
		if o.err != nil || o.res.Code != fsm.OK {
			return Response{}, co.prepareFailed(cleanup, true, id, recordShard, others, outcomes, byKey)
		}
	}
	// The prepares fixed the versions their puts take on commit.
	versions := map[string]uint64{}
	for i, pt := range others {
		preparedVersions(versions, pt.writes, outcomes[i].res)
	}

	if fp := co.failpoint(BeforeDecide); fp != nil {
		return Response{}, fp
	}
	decStart := time.Now()
	p0 := parts[0]
	res, err := co.proposeRetrying(ctx, recordShard, fsm.Command{RequestID: id + "/commit", Phase: &fsm.Phase{
		Kind: fsm.PhaseCommit, TxnID: id, RecordShard: recordShard, Now: now, Participants: shards,
		Reads: p0.reads, Writes: p0.writes, Scans: p0.scans}})
	co.cfg.Metrics.observe("decide", decStart)
	if err != nil {
		return Response{}, co.commitUnanswered(cleanup, id, recordShard, others, err)
	}
	if res.Status != fsm.TxnCommitted {
		// Its checks failed, or someone who met an intent of ours gave it
		// up first: nothing applied; the others' intents are dropped.
		co.abort(cleanup, id, recordShard, others)
		if res.Code == fsm.OK {
			return Response{}, errRetry
		}
		return Response{}, co.prepareFailed(cleanup, false, id, recordShard, parts[:1], []outcome{{res, nil}}, byKey)
	}
	for i, w := range p0.writes {
		if i < len(res.Ops) && res.Ops[i].Version != 0 {
			versions[string(w.Key)] = res.Ops[i].Version
		}
	}
	if fp := co.failpoint(AfterDecide); fp != nil {
		return Response{}, fp
	}
	if len(others) == 0 {
		co.forgetLater(id, recordShard)
	} else {
		// Committed, with every version known: the answer goes back now,
		// and the other shards resolve behind it. Until they have, whoever
		// meets one of their intents learns the decision from the record.
		co.resolveLater(id, recordShard, others)
	}
	for i, op := range p.ops {
		if op.Type == fsm.OpPut {
			p.results[i].Version = versions[string(op.Key)]
		}
	}
	return Response{Succeeded: p.succeeded, Results: p.results, TxnID: id}, nil
}

// outcome is what one participant's prepare returned.
type outcome struct {
	res fsm.Result
	err error
}

// prepareFailed cleans up after prepares that did not all succeed and
// returns the error for the attempt: errRetry when the transaction lost a
// race, ErrChanged when a scanned range changed, else the first error. A
// prepare whose outcome is unknown is reported as shard.ErrUnavailable:
// the commit is never proposed, so the transaction certainly did not
// apply.
// With mayHold, something may be locked: the record is aborted and the
// prepared participants resolved.
func (co *Coordinator) prepareFailed(ctx context.Context, mayHold bool, id string, recordShard fsm.ShardID, parts []*participant, outcomes []outcome, byKey map[string]fsm.ShardID) error {
	var prepErr error
	var holders []fsm.Result
	scanChanged := false
	for i, o := range outcomes {
		switch {
		case o.err != nil && errors.Is(o.err, shard.ErrOutcomeUnknown):
			// This prepare may have applied, but the transaction stops
			// here, short of its commit point, and is aborted below:
			// nothing of it applies, whatever the prepare did.
			prepErr = cmpErr(prepErr, fmt.Errorf("%w: transaction aborted, nothing applied: the prepare on %v went unanswered: %v",
				shard.ErrUnavailable, parts[i].id, o.err))
		case o.err != nil:
			prepErr = cmpErr(prepErr, o.err)
		case o.res.Code == fsm.Conflict:
			holders = append(holders, o.res)
			prepErr = cmpErr(prepErr, errRetry)
		case o.res.Code == fsm.VersionMismatch && o.res.FailedOp >= len(parts[i].reads):
			// A scanned range changed: running again cannot help, the
			// caller has to read it again.
			scanChanged = true
			prepErr = cmpErr(prepErr, errRetry)
		case o.res.Code != fsm.OK:
			prepErr = cmpErr(prepErr, errRetry)
		}
	}
	if mayHold {
		co.abort(ctx, id, recordShard, parts)
	}
	for _, h := range holders {
		// Someone holds our keys: if they were abandoned (older than the
		// TTL, with no record), release them now rather than on our next
		// attempt.
		on, ok := byKey[string(h.Key)]
		if !ok {
			// A key of the holder in one of our scanned ranges.
			var err error
			if on, err = co.c.Locate(ctx, h.Key); err != nil {
				continue
			}
		}
		_ = co.Settle(ctx, h.Holder, h.HolderShard, on, h.HolderSince, h.Key)
	}
	if scanChanged && errors.Is(prepErr, errRetry) {
		return ErrChanged
	}
	return prepErr
}

// commitUnanswered settles a transaction whose commit went unanswered
// (cause) by proposing an abort on the record's shard. That shard's log
// orders the abort and the commit (if the commit is still on its way, or
// got there at all), and whichever applies first decides: a commit that
// comes later finds the record aborted and applies nothing, an abort that
// comes later finds it committed. So the abort's result is the
// transaction's fate. Aborted: nothing applied, the other participants'
// intents are dropped, and the error wraps shard.ErrUnavailable; the
// record is kept (not forgotten), since a commit still on its way must
// find it. Otherwise *OutcomeUnknownError: with no answer again, or
// committed (the versions the record's shard gave its puts are not known
// here; the error says it committed, and the other participants resolve
// in the background).
func (co *Coordinator) commitUnanswered(ctx context.Context, id string, recordShard fsm.ShardID, others []*participant, cause error) error {
	res, err := co.decide(ctx, id, recordShard, false, nil)
	switch {
	case err != nil:
		return &OutcomeUnknownError{TxnID: id, Err: cause}
	case res.Status == fsm.TxnAborted:
		_, _ = co.resolveAll(ctx, id, others, false)
		return fmt.Errorf("%w: transaction %s aborted, nothing applied: its commit went unanswered (%v) and the abort proposed after it applied first",
			shard.ErrUnavailable, id, cause)
	case res.Status == fsm.TxnCommitted:
		if len(others) == 0 {
			co.forgetLater(id, recordShard)
		} else {
			co.resolveLater(id, recordShard, others)
		}
		return &OutcomeUnknownError{TxnID: id, Err: fmt.Errorf("committed, but the commit's answer, with the versions written, was lost: %w", cause)}
	}
	return &OutcomeUnknownError{TxnID: id, Err: cause}
}

// preparedVersions records the versions a prepare fixed for its puts.
func preparedVersions(versions map[string]uint64, writes []fsm.Op, res fsm.Result) {
	for i, w := range writes {
		if w.Type == fsm.OpPut && i < len(res.Ops) {
			versions[string(w.Key)] = res.Ops[i].Version
		}
	}
}

// resolveLater resolves a committed transaction's other participants in
// the background and then forgets its record. Resolves queue by shard; a
// shard gets one Resolve command at a time (at most resolveBatchTxns
// transactions), carrying every transaction queued for it meanwhile
// (fsm.Phase.More), so under load a transaction's resolve costs a small
// part of a command. If the coordinator closes first, the intents stay
// until the resolver or a reader settles them from the record, which is
// kept.
func (co *Coordinator) resolveLater(id string, recordShard fsm.ShardID, parts []*participant) {
	if co.cfg.Failpoint == nil {
		left := new(atomic.Int32)
		left.Store(int32(len(parts)))
		for _, pt := range parts {
			co.resolves.add(pt.id, queuedResolve{id: id, recordShard: recordShard, keys: pt.keys, left: left})
		}
		return
	}
	// With failpoints (tests), each transaction resolves on its own, so
	// AfterResolveOne stops exactly one transaction half-way.
	co.background(func() {
		ctx, cancel := context.WithTimeout(co.bg, co.cfg.TTL)
		defer cancel()
		start := time.Now()
		all, err := co.resolveAll(ctx, id, parts, true)
		if err != nil {
			return // a failpoint: the coordinator stops here
		}
		co.cfg.Metrics.observe("resolve", start)
		if all {
			co.forgetLater(id, recordShard)
		}
	})
}

// cmpErr keeps the first error, preferring a retryable one.
func cmpErr(cur, next error) error {
	if cur == nil || errors.Is(next, errRetry) && !errors.Is(cur, errRetry) {
		return next
	}
	return cur
}

// split groups the plan's keys by shard. A scanned range goes to every
// shard, each with the items read from it.
func (co *Coordinator) split(ctx context.Context, p *plan, scans []fsm.ScanRead) ([]*participant, map[string]fsm.ShardID, error) {
	byShard := map[fsm.ShardID]*participant{}
	byKey := map[string]fsm.ShardID{}
	var parts []*participant
	part := func(id fsm.ShardID) *participant {
		pt := byShard[id]
		if pt == nil {
			pt = &participant{id: id}
			byShard[id] = pt
			parts = append(parts, pt)
		}
		return pt
	}
	for _, k := range p.order {
		id, err := co.c.Locate(ctx, k)
		if err != nil {
			return nil, nil, err
		}
		byKey[string(k)] = id
		pt := part(id)
		pt.keys = append(pt.keys, k)
		if v, read := p.reads[string(k)]; read {
			pt.reads = append(pt.reads, fsm.Compare{Kind: fsm.CompareVersion, Key: k, Version: v})
		}
		if w, written := p.writes[string(k)]; written {
			pt.writes = append(pt.writes, w)
		}
	}
	// A key only written still has to be locked, so that the transaction
	// is serialized against writers of it: prepare locks writes anyway.
	if len(scans) == 0 {
		return parts, byKey, nil
	}
	shards, err := co.c.Shards(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, sc := range scans {
		per := map[fsm.ShardID]*fsm.ScanRead{}
		for _, id := range shards {
			per[id] = &fsm.ScanRead{Start: sc.Start, End: sc.End}
		}
		for _, it := range sc.Items {
			id, err := co.c.Locate(ctx, it.Key)
			if err != nil {
				return nil, nil, err
			}
			r, ok := per[id]
			if !ok {
				return nil, nil, fmt.Errorf("txn: key %q is on %v, not a shard of the ring", it.Key, id)
			}
			r.Items = append(r.Items, it)
		}
		for _, id := range shards {
			pt := part(id)
			pt.scans = append(pt.scans, *per[id])
		}
	}
	return parts, byKey, nil
}

// decide proposes the decision until its result is known or ctx ends;
// keys, of the record's shard, are resolved in the same step.
func (co *Coordinator) decide(ctx context.Context, id string, recordShard fsm.ShardID, commit bool, keys [][]byte) (fsm.Result, error) {
	return co.proposeRetrying(ctx, recordShard, fsm.Command{RequestID: id + "/decide", Phase: &fsm.Phase{
		Kind: fsm.PhaseDecide, TxnID: id, Commit: commit, Keys: keys}})
}

// proposeRetrying proposes cmd (idempotent under its request ID) on shard
// until its result is known or ctx ends.
func (co *Coordinator) proposeRetrying(ctx context.Context, shard fsm.ShardID, cmd fsm.Command) (fsm.Result, error) {
	for attempt := 0; ; attempt++ {
		res, err := co.c.Propose(ctx, shard, cmd)
		if err == nil {
			return res, nil
		}
		if ctx.Err() != nil || !sleep(ctx, attempt) {
			return fsm.Result{}, err
		}
	}
}

// abort decides abort and drops the intents that prepares may have left;
// failures leave intents that anyone who meets them settles.
func (co *Coordinator) abort(ctx context.Context, id string, recordShard fsm.ShardID, parts []*participant) {
	res, err := co.decide(ctx, id, recordShard, false, nil)
	if err != nil || res.Status == fsm.TxnPending {
		return
	}
	if all, err := co.resolveAll(ctx, id, parts, res.Status == fsm.TxnCommitted); err == nil && all {
		co.forgetLater(id, recordShard)
	}
}

// resolveAll resolves every participant at once and reports whether every
// one resolved. A participant that did not keeps its intents until someone
// who meets them resolves them from the record (so the record must then be
// kept). The error is a failpoint's.
func (co *Coordinator) resolveAll(ctx context.Context, id string, parts []*participant, commit bool) (bool, error) {
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	resolve := func(pt *participant) {
		_, err := co.resolve(ctx, id, pt.id, pt.keys, commit)
		mu.Lock()
		defer mu.Unlock()
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	for i, pt := range parts {
		if i == 0 && commit && co.cfg.Failpoint != nil {
			resolve(pt)
			if fp := co.failpoint(AfterResolveOne); fp != nil {
				return false, fp
			}
			continue
		}
		wg.Go(func() { resolve(pt) })
	}
	wg.Wait()
	return firstErr == nil, nil
}

func (co *Coordinator) resolve(ctx context.Context, id string, shard fsm.ShardID, keys [][]byte, commit bool) (fsm.Result, error) {
	return co.proposeRetrying(ctx, shard, fsm.Command{RequestID: fmt.Sprintf("%s/resolve/%d", id, shard), Phase: &fsm.Phase{
		Kind: fsm.PhaseResolve, TxnID: id, Commit: commit, Keys: keys}})
}

// Bounds of one batched Resolve: transactions, and keys in all (a single
// transaction with more keys goes alone).
const (
	resolveBatchTxns = 128
	resolveBatchKeys = 256
)

// resolveQueued resolves queued transactions on shard, as few commands as
// the bounds allow, and forgets the records of transactions with no part
// left.
func (co *Coordinator) resolveQueued(shard fsm.ShardID, queued []queuedResolve) {
	for len(queued) > 0 {
		n, keys := 0, 0
		for n < len(queued) && n < resolveBatchTxns && (n == 0 || keys+len(queued[n].keys) <= resolveBatchKeys) {
			keys += len(queued[n].keys)
			n++
		}
		batch := queued[:n]
		queued = queued[n:]
		ctx, cancel := context.WithTimeout(co.bg, co.cfg.TTL)
		start := time.Now()
		ph := &fsm.Phase{Kind: fsm.PhaseResolve, TxnID: batch[0].id, Commit: true, Keys: batch[0].keys}
		for _, q := range batch[1:] {
			ph.More = append(ph.More, fsm.Resolution{TxnID: q.id, Commit: true, Keys: q.keys})
		}
		cmd := fsm.Command{Phase: ph}
		_, err := co.c.Propose(ctx, shard, cmd)
		switch {
		case errors.Is(err, fsm.ErrTooLarge) && len(batch) > 1:
			// Too much for one command after all: one each.
			err = nil
			for _, q := range batch {
				if _, e := co.resolve(ctx, q.id, shard, q.keys, true); e != nil {
					err = e
				}
			}
		case err != nil:
			// Resolving again is harmless, whatever became of this one.
			_, err = co.proposeRetrying(ctx, shard, cmd)
		}
		cancel()
		if err != nil {
			continue // the intents wait for the resolver; the records stay
		}
		co.cfg.Metrics.observe("resolve", start)
		for _, q := range batch {
			if q.left.Add(-1) == 0 {
				co.forgetLater(q.id, q.recordShard)
			}
		}
	}
}

// forgetBatch bounds the records one Forget deletes.
const forgetBatch = 256

// forgetLater queues transaction id's record (on recordShard) to be
// deleted, with one Forget per shard for what queued while the previous
// one was in flight: under load a transaction's Forget costs a small part
// of a command. Records not forgotten stay, decided and harmless.
func (co *Coordinator) forgetLater(id string, recordShard fsm.ShardID) {
	co.forgets.add(recordShard, id)
}

// forgetQueued forgets queued records of shard, forgetBatch a command.
func (co *Coordinator) forgetQueued(shard fsm.ShardID, ids []string) {
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), forgetBatch)]
		ids = ids[len(chunk):]
		ctx, cancel := context.WithTimeout(co.bg, co.cfg.TTL)
		co.forget(ctx, shard, chunk)
		cancel()
	}
}

// forget deletes the decided records of ids, all on shard, in one command.
func (co *Coordinator) forget(ctx context.Context, shard fsm.ShardID, ids []string) {
	ph := &fsm.Phase{Kind: fsm.PhaseForget, TxnID: ids[0]}
	for _, id := range ids[1:] {
		ph.Keys = append(ph.Keys, []byte(id))
	}
	_, _ = co.c.Propose(ctx, shard, fsm.Command{Phase: ph})
}

func (co *Coordinator) failpoint(f Failpoint) error {
	if co.cfg.Failpoint == nil {
		return nil
	}
	return co.cfg.Failpoint(f)
}

// Settle settles the intents of transaction holder on keys (on shard on),
// locked at since (unix milliseconds, from the intent; 0: not known): if
// its record (on recordShard) is decided, the intents are resolved
// accordingly. A record not written yet belongs to a transaction still
// preparing, until since plus the TTL: then it is aborted now (as it is at
// once when since is 0). ErrPending: the holder may still commit; wait and
// retry, or, for a read, read again and, if the same intent is still
// there, return what was committed (the holder had not committed when
// Settle looked).
func (co *Coordinator) Settle(ctx context.Context, holder string, recordShard, on fsm.ShardID, since uint64, keys ...[]byte) error {
	ph := &fsm.Phase{Kind: fsm.PhaseDecide, TxnID: holder, Now: uint64(co.cfg.Now().UnixMilli())}
	if since > 0 {
		ph.Deadline = since + uint64(co.cfg.TTL.Milliseconds())
	}
	res, err := co.c.Propose(ctx, recordShard, fsm.Command{Phase: ph})
	if err != nil {
		return err
	}
	if res.Status == fsm.TxnPending {
		return fmt.Errorf("%w: %s", ErrPending, holder)
	}
	_, err = co.c.Propose(ctx, on, fsm.Command{Phase: &fsm.Phase{
		Kind: fsm.PhaseResolve, TxnID: holder, Commit: res.Status == fsm.TxnCommitted, Keys: keys}})
	return err
}

func newID() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}
