package node

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/internal/jsonx"
	"github.com/cairndb/cairn/shard"
	"github.com/cairndb/cairn/txn"
)

// TxnRequest is a compare-and-write transaction: when every comparison in
// If holds, Then runs, otherwise Else; both may hold puts, deletes and gets
// (fsm.Put, fsm.Delete, fsm.Get). An empty If takes Then.
type TxnRequest struct {
	If         []fsm.Compare
	Then, Else []fsm.Op
	// RequestID makes a retried transaction apply at most once (the node
	// picks one when empty).
	RequestID string
	// scans: ranges a Tx read (Commit); they take the cross-shard path.
	scans []fsm.ScanRead
}

// TxnResponse says which branch ran and what each of its ops did, in order.
type TxnResponse struct {
	Succeeded bool
	Results   []fsm.OpResult
	// Duplicate: the request ID had applied before; Results are that
	// first outcome, without what its gets read (one-shard transactions).
	Duplicate bool
	// TxnID names a cross-shard transaction (empty for one shard).
	TxnID string
}

// errSpansShards: the keys of a would-be one-shard transaction are not on
// one shard (any more).
var errSpansShards = errors.New("node: keys span shards")

// Transact runs req atomically: comparisons, the chosen branch's writes and
// its gets take effect at one point in time (strictly serializable). Keys
// on one shard take one raft entry; keys on several go through two-phase
// commit (package txn), where RequestID is not used: a cross-shard
// transaction whose outcome is unknown is reported with its transaction ID
// (a *txn.OutcomeUnknownError) rather than retried.
//
// Errors: fsm.ErrInvalid / fsm.ErrTooLarge (nothing proposed), ErrDiskFull
// (the transaction puts while a node's data disk is below MinFreeDisk;
// nothing proposed), txn.ErrConflict
// (lost races with other transactions until the context or the attempts
// ran out; nothing applied), shard.ErrUnavailable, shard.ErrOutcomeUnknown
// or *txn.OutcomeUnknownError.
func (n *Node) Transact(ctx context.Context, req TxnRequest) (TxnResponse, error) {
	cmd := fsm.Command{RequestID: req.RequestID, Txn: true, If: req.If, Ops: req.Then, Else: req.Else}
	keys := cmd.Keys()
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	if len(req.scans) > 0 {
		return n.transactScans(ctx, req)
	}
	if len(keys) == 0 {
		return TxnResponse{}, fmt.Errorf("%w: a transaction needs at least one operation", fsm.ErrInvalid)
	}
	if err := n.store.Check(cmd); err != nil {
		return TxnResponse{}, err
	}
	if err := n.checkDiskFor(req.Then, req.Else); err != nil {
		return TxnResponse{}, err
	}
	locate := n.oneShardTarget(keys)
	if _, err := locate(ctx); err == nil {
		res, err := n.proposeSettling(ctx, locate, cmd)
		if !errors.Is(err, errSpansShards) {
			if err == nil {
				err = res.Err()
			}
			n.txnMetrics.Done("one_shard", oneShardOutcome(err))
			if err != nil {
				return TxnResponse{}, err
			}
			return TxnResponse{Succeeded: res.Succeeded, Results: res.Ops, Duplicate: res.Duplicate}, nil
		}
	} else if !errors.Is(err, errSpansShards) {
		return TxnResponse{}, err
	}
	return n.execute(ctx, txn.Request{If: req.If, Then: req.Then, Else: req.Else})
}

// execute runs a transaction through the coordinator.
func (n *Node) execute(ctx context.Context, req txn.Request) (TxnResponse, error) {
	r, err := n.coord.Execute(ctx, req)
	if err != nil {
		return TxnResponse{}, err
	}
	return TxnResponse{Succeeded: r.Succeeded, Results: r.Results, TxnID: r.TxnID}, nil
}

// transactScans commits a Tx that scanned: every shard takes part, to
// check and lock its share of each range.
func (n *Node) transactScans(ctx context.Context, req TxnRequest) (TxnResponse, error) {
	if len(req.Then) > 0 {
		cmd := fsm.Command{Txn: true, If: req.If, Ops: req.Then}
		if err := n.store.Check(cmd); err != nil {
			return TxnResponse{}, err
		}
		if err := n.checkDiskFor(req.Then); err != nil {
			return TxnResponse{}, err
		}
	}
	return n.execute(ctx, txn.Request{If: req.If, Then: req.Then, Scans: req.scans})
}

// Txn runs fn as an interactive transaction and commits what it did:
// tx.Get and tx.Scan read (linearizably, seeing the transaction's own
// writes), tx.Put and tx.Delete buffer writes, and the commit applies the
// writes, across shards if need be, only if every key read is still at the
// version read and every range scanned still holds exactly what the scan
// returned (no phantoms), so the whole transaction takes effect at one
// moment during the call (strictly serializable). A transaction that
// scanned involves every shard in its commit. When it lost a race (a key read changed, or
// conflicts with other transactions), fn runs again on a fresh Tx after a
// jittered, growing pause, until ctx ends. An error from fn aborts the
// transaction: nothing is written and the error is returned.
//
// fn may run several times, so it must not have effects outside tx.
func (n *Node) Txn(ctx context.Context, fn func(tx *txn.Tx) error) error {
	for attempt := 0; ; attempt++ {
		if attempt > 0 && !n.pause(ctx, attempt) {
			return fmt.Errorf("%w: gave up after %d attempts: %w", txn.ErrConflict, attempt, ctx.Err())
		}
		tx := n.Begin()
		err := fn(tx)
		if err == nil {
			err = n.Commit(ctx, tx)
		}
		if !txn.Retryable(err) {
			return err
		}
	}
}

// Begin starts a transaction for the low-level form: read and write
// through the returned Tx, then Commit it (or drop it to abort: nothing is
// written before Commit).
func (n *Node) Begin() *txn.Tx {
	return txn.NewTx(txnCluster{n}.Read, func(ctx context.Context, start, end []byte, limit int) ([]fsm.Item, bool, error) {
		items, cursor, err := n.Scan(withoutReadSession(ctx), ScanOptions{Start: start, End: end, Limit: limit}, shard.ReadOptions{})
		return items, cursor != nil, err
	})
}

// Commit applies tx's writes, across shards if need be, if every key it
// read is still at the version read. A transaction that lost a race
// returns an error for which txn.Retryable is true (nothing was written);
// run it again from Begin.
func (n *Node) Commit(ctx context.Context, tx *txn.Tx) error {
	req, ok := tx.Request()
	if !ok {
		return nil // read nothing, wrote nothing
	}
	r, err := n.Transact(ctx, TxnRequest{If: req.If, Then: req.Then, scans: req.Scans})
	switch {
	case err != nil:
		return err
	case !r.Succeeded:
		return txn.ErrChanged
	}
	return nil
}

func oneShardOutcome(err error) string {
	switch {
	case err == nil:
		return "committed"
	case errors.Is(err, fsm.ErrConflict):
		return "conflict"
	case errors.Is(err, shard.ErrOutcomeUnknown):
		return "unknown"
	}
	return "error"
}

// oneShardTarget routes a request whose keys must all live on one shard.
func (n *Node) oneShardTarget(keys [][]byte) func(context.Context) (target, error) {
	return func(ctx context.Context) (target, error) {
		v, err := n.routingView(ctx)
		if err != nil {
			return target{}, err
		}
		id := v.ring.Locate(keys[0])
		for _, k := range keys[1:] {
			if v.ring.Locate(k) != id {
				return target{}, errSpansShards
			}
		}
		return target{id: id, epoch: v.ring.Epoch()}, nil
	}
}

// proposeSettling proposes cmd and, while it meets intents of cross-shard
// transactions (a Conflict result, which applied nothing and is not
// remembered under the request ID), settles them and tries again until
// ctx ends.
func (n *Node) proposeSettling(ctx context.Context, locate func(context.Context) (target, error), cmd fsm.Command) (fsm.Result, error) {
	for attempt := 0; ; attempt++ {
		res, err := n.propose(ctx, locate, cmd)
		if err != nil || res.Code != fsm.Conflict {
			return res, err
		}
		t, err := locate(ctx)
		if err != nil {
			return res, err
		}
		if err := n.coord.Settle(ctx, res.Holder, res.HolderShard, t.id, res.HolderSince, res.Key); err != nil && !errors.Is(err, txn.ErrPending) {
			return res, err
		}
		if !n.pause(ctx, attempt) {
			return res, nil // the conflict stands
		}
	}
}

// txnCluster gives the coordinator the node's routing.
type txnCluster struct{ n *Node }

func (c txnCluster) Locate(ctx context.Context, key []byte) (fsm.ShardID, error) {
	t, err := c.n.keyTarget(key)(ctx)
	return t.id, err
}

func (c txnCluster) Propose(ctx context.Context, id fsm.ShardID, cmd fsm.Command) (fsm.Result, error) {
	return c.n.propose(ctx, func(ctx context.Context) (target, error) {
		v, err := c.n.routingView(ctx)
		if err != nil {
			return target{}, err
		}
		return target{id: id, epoch: v.ring.Epoch()}, nil
	}, cmd)
}

func (c txnCluster) Shards(ctx context.Context) ([]fsm.ShardID, error) {
	v, err := c.n.routingView(ctx)
	if err != nil {
		return nil, err
	}
	return v.ring.Shards(), nil
}

func (c txnCluster) Read(ctx context.Context, key []byte) (fsm.Item, bool, error) {
	it, err := c.n.Get(withoutReadSession(ctx), key, shard.ReadOptions{})
	if errors.Is(err, fsm.ErrNotFound) {
		return fsm.Item{}, false, nil
	}
	return it, err == nil, err
}

// ledShards returns the data shard replicas this node leads now.
func (n *Node) ledShards() []*shard.Shard {
	n.mu.RLock()
	defer n.mu.RUnlock()
	var led []*shard.Shard
	for _, s := range n.shards {
		if _, _, self := s.Leader(); self {
			led = append(led, s)
		}
	}
	return led
}

// resolveLoop settles, on the shards this node leads, intents whose
// transactions are decided or abandoned (their coordinator died, or gave up
// resolving them).
func (n *Node) resolveLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.ResolveInterval)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		for _, s := range n.ledShards() {
			intents, err := s.FSM().Intents(256)
			if err != nil {
				continue
			}
			var oldest time.Duration
			for _, in := range intents {
				if age := time.Since(time.UnixMilli(int64(in.Since))); in.Since > 0 && age > oldest {
					oldest = age
				}
			}
			n.txnMetrics.Intents(strconv.FormatUint(uint64(s.ID()), 10), len(intents), oldest)
			// One settle per transaction, for intents at least a TTL old:
			// younger ones belong to transactions that are running (or
			// whose coordinator has not been gone a TTL yet); whoever
			// meets them settles them sooner.
			keys := map[string][][]byte{}
			var order []fsm.IntentInfo
			for _, in := range intents {
				if time.Since(time.UnixMilli(int64(in.Since))) < n.coord.TTL() {
					continue
				}
				if _, seen := keys[in.TxnID]; !seen {
					order = append(order, in)
					keys[in.TxnID] = nil
				}
				if !in.Range { // a resolve releases range locks by themselves
					keys[in.TxnID] = append(keys[in.TxnID], in.Key)
				}
			}
			for _, in := range order {
				ctx, cancel := context.WithTimeout(n.ctx, n.cfg.RequestTimeout)
				err := n.coord.Settle(ctx, in.TxnID, in.RecordShard, s.ID(), in.Since, keys[in.TxnID]...)
				cancel()
				if err != nil && !errors.Is(err, txn.ErrPending) {
					n.logger.Debug("settling intents", "shard", uint64(s.ID()), "txn", in.TxnID, "error", err)
				}
			}
		}
	}
}

// The JSON form of POST /v1/txn (ARCHITECTURE §7).
type (
	txnBody struct {
		If   []txnCompare `json:"if"`
		Then []txnOp      `json:"then"`
		Else []txnOp      `json:"else"`
	}
	txnCompare struct {
		Key       *string `json:"key"`
		Version   *uint64 `json:"version"`
		VersionLt *uint64 `json:"version_lt"`
		VersionGt *uint64 `json:"version_gt"`
		Exists    *bool   `json:"exists"`
		Value     *[]byte `json:"value"` // base64
	}
	txnOp struct {
		Put    *txnKV `json:"put"`
		Delete *txnKV `json:"delete"`
		Get    *txnKV `json:"get"`
	}
	txnKV struct {
		Key   *string `json:"key"`
		Value *[]byte `json:"value"` // base64; put only
	}
	txnResult struct {
		Version *uint64 `json:"version,omitempty"`
		Deleted *bool   `json:"deleted,omitempty"`
		Found   *bool   `json:"found,omitempty"`
		Value   []byte  `json:"value,omitempty"`
	}
)

// maxJSONDepth bounds the nesting of JSON bodies (ARCHITECTURE §7).
const maxJSONDepth = 64

// checkJSONText rejects a body that is not valid UTF-8, as JSON text must
// be (decoding would replace each invalid byte with U+FFFD, turning a key
// or a value into another), or that nests deeper than max.
func checkJSONText(b []byte, max int) error {
	if !utf8.Valid(b) {
		return errors.New("body is not valid UTF-8 (JSON text must be; binary keys and values go base64 where the API says so)")
	}
	return checkJSONDepth(b, max)
}

// checkJSONDepth rejects documents nested deeper than max, before they are
// decoded.
func checkJSONDepth(b []byte, max int) error {
	depth, inString, escaped := 0, false, false
	for _, c := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			if depth++; depth > max {
				return fmt.Errorf("JSON nested deeper than %d levels", max)
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return nil
}

// parseTxn turns a POST /v1/txn body into a request; errors describe the
// first problem found, by position.
func parseTxn(body []byte) (TxnRequest, error) {
	if err := checkJSONText(body, maxJSONDepth); err != nil {
		return TxnRequest{}, err
	}
	var b txnBody
	if err := jsonx.Decode(body, &b, jsonx.Options{Strict: true}); err != nil {
		return TxnRequest{}, fmt.Errorf("body is not a transaction: %v", err)
	}
	var req TxnRequest
	for i, c := range b.If {
		cmp, err := c.compare()
		if err != nil {
			return TxnRequest{}, fmt.Errorf("if[%d]: %v", i, err)
		}
		req.If = append(req.If, cmp)
	}
	var err error
	if req.Then, err = parseTxnOps("then", b.Then); err != nil {
		return TxnRequest{}, err
	}
	if req.Else, err = parseTxnOps("else", b.Else); err != nil {
		return TxnRequest{}, err
	}
	if len(req.Then)+len(req.Else) == 0 {
		return TxnRequest{}, errors.New("a transaction needs at least one operation in then or else")
	}
	return req, nil
}

func (c txnCompare) compare() (fsm.Compare, error) {
	if c.Key == nil || *c.Key == "" {
		return fsm.Compare{}, errors.New("a comparison needs a non-empty key")
	}
	if reservedKey(*c.Key) {
		return fsm.Compare{}, errReservedKey
	}
	cmp := fsm.Compare{Key: []byte(*c.Key)}
	set := 0
	if c.Version != nil {
		cmp.Kind, cmp.Version, set = fsm.CompareVersion, *c.Version, set+1
	}
	if c.VersionLt != nil {
		cmp.Kind, cmp.Version, set = fsm.CompareVersionLt, *c.VersionLt, set+1
	}
	if c.VersionGt != nil {
		cmp.Kind, cmp.Version, set = fsm.CompareVersionGt, *c.VersionGt, set+1
	}
	if c.Exists != nil {
		cmp.Kind, set = fsm.CompareAbsent, set+1
		if *c.Exists {
			cmp.Kind = fsm.CompareExists
		}
	}
	if c.Value != nil {
		cmp.Kind, cmp.Value, set = fsm.CompareValue, *c.Value, set+1
	}
	if set != 1 {
		return fsm.Compare{}, errors.New("a comparison needs exactly one of version, version_lt, version_gt, exists, value")
	}
	return cmp, nil
}

func parseTxnOps(branch string, in []txnOp) ([]fsm.Op, error) {
	var ops []fsm.Op
	for i, o := range in {
		var op fsm.Op
		var kv *txnKV
		set := 0
		if o.Put != nil {
			kv, op.Type, set = o.Put, fsm.OpPut, set+1
		}
		if o.Delete != nil {
			kv, op.Type, set = o.Delete, fsm.OpDelete, set+1
		}
		if o.Get != nil {
			kv, op.Type, set = o.Get, fsm.OpGet, set+1
		}
		switch {
		case set != 1:
			return nil, fmt.Errorf("%s[%d]: an operation needs exactly one of put, delete, get", branch, i)
		case kv.Key == nil || *kv.Key == "":
			return nil, fmt.Errorf("%s[%d]: %s needs a non-empty key", branch, i, op.Type)
		case reservedKey(*kv.Key):
			return nil, fmt.Errorf("%s[%d]: %w", branch, i, errReservedKey)
		case op.Type == fsm.OpPut && kv.Value == nil:
			return nil, fmt.Errorf("%s[%d]: put needs a value (base64)", branch, i)
		case op.Type != fsm.OpPut && kv.Value != nil:
			return nil, fmt.Errorf("%s[%d]: %s takes no value", branch, i, op.Type)
		}
		op.Key = []byte(*kv.Key)
		if kv.Value != nil {
			op.Value = *kv.Value
		}
		ops = append(ops, op)
	}
	return ops, nil
}

func (n *Node) handleTxn(w http.ResponseWriter, r *http.Request) {
	o, err := parseWriteOptions(r)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	body, err := readRequestBody(w, r)
	if err != nil {
		writeErr(w, err, "")
		return
	}
	req, err := parseTxn(body)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	req.RequestID = o.RequestID
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.RequestTimeout)
	defer cancel()
	w.Header().Set("Request-Id", o.RequestID)
	resp, err := n.Transact(ctx, req)
	var unknown *txn.OutcomeUnknownError
	if errors.As(err, &unknown) {
		writeError(w, http.StatusGatewayTimeout, "outcome_unknown", err.Error(), unknown.TxnID)
		return
	}
	if err != nil {
		writeErr(w, err, o.RequestID)
		return
	}
	ops := req.Then
	if !resp.Succeeded {
		ops = req.Else
	}
	out := struct {
		Succeeded bool        `json:"succeeded"`
		Results   []txnResult `json:"results"`
		Duplicate bool        `json:"duplicate,omitempty"`
		TxnID     string      `json:"txn_id,omitempty"`
	}{Succeeded: resp.Succeeded, Results: make([]txnResult, len(resp.Results)), Duplicate: resp.Duplicate, TxnID: resp.TxnID}
	for i, res := range resp.Results {
		switch ops[i].Type {
		case fsm.OpPut:
			out.Results[i].Version = &res.Version
		case fsm.OpDelete:
			out.Results[i].Deleted = &res.Existed
		case fsm.OpGet:
			if !resp.Duplicate {
				out.Results[i].Found = &res.Found
			}
			if res.Found {
				out.Results[i].Version, out.Results[i].Value = &res.Version, slices.Clip(res.Value)
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// IntentStatus is one lock of a cross-shard transaction on a replica this
// node leads.
type IntentStatus struct {
	Shard       uint64 `json:"shard"`
	Key         string `json:"key"`
	TxnID       string `json:"txn_id"`
	RecordShard uint64 `json:"record_shard"`
	Write       bool   `json:"write"`
	AgeMillis   int64  `json:"age_ms"`
	// Range: a scanned range [Key, End) locked against writers (End
	// empty: no upper bound).
	Range bool   `json:"range,omitempty"`
	End   string `json:"end,omitempty"`
}

// Intents lists up to limit intents on the replicas this node leads (the
// in-doubt or in-flight transactions' locks), oldest first.
func (n *Node) Intents(limit int) []IntentStatus {
	out := []IntentStatus{}
	now := time.Now()
	for _, s := range n.ledShards() {
		ins, err := s.FSM().Intents(limit)
		if err != nil {
			continue
		}
		for _, in := range ins {
			out = append(out, IntentStatus{Shard: uint64(s.ID()), Key: string(in.Key), TxnID: in.TxnID,
				RecordShard: uint64(in.RecordShard), Write: in.Write, AgeMillis: now.Sub(time.UnixMilli(int64(in.Since))).Milliseconds(),
				Range: in.Range, End: string(in.End)})
		}
	}
	slices.SortFunc(out, func(a, b IntentStatus) int { return int(b.AgeMillis - a.AgeMillis) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

// ForceResolve decides transaction id now: one not committed yet (its
// record, on recordShard, missing or pending) is aborted even before its
// TTL; a decided one keeps its decision. The intents on the replicas this
// node leads are settled at once; every other node's resolver settles its
// own within its interval.
// It returns the decision.
func (n *Node) ForceResolve(ctx context.Context, id string, recordShard fsm.ShardID) (fsm.TxnStatus, error) {
	if id == "" {
		return 0, fmt.Errorf("%w: empty transaction ID", fsm.ErrInvalid)
	}
	res, err := txnCluster{n}.Propose(ctx, recordShard, fsm.Command{Phase: &fsm.Phase{
		Kind: fsm.PhaseDecide, TxnID: id, Now: math.MaxUint64}})
	if err != nil {
		return 0, err
	}
	for _, in := range n.Intents(100000) {
		if in.TxnID == id {
			var keys [][]byte
			if !in.Range { // a resolve releases range locks by themselves
				keys = append(keys, []byte(in.Key))
			}
			err = errors.Join(err, n.coord.Settle(ctx, id, recordShard, fsm.ShardID(in.Shard), 0, keys...))
		}
	}
	return res.Status, err
}

func (n *Node) handleIntents(w http.ResponseWriter, r *http.Request) {
	limit := 1000
	if s := r.URL.Query().Get("limit"); s != "" {
		l, err := strconv.Atoi(s)
		if err != nil || l < 1 || l > 100000 {
			badRequest(w, "limit must be between 1 and 100000")
			return
		}
		limit = l
	}
	writeJSON(w, http.StatusOK, map[string]any{"node": n.cfg.Name, "intents": n.Intents(limit)})
}

func (n *Node) handleForceResolve(w http.ResponseWriter, r *http.Request) {
	rs, err := strconv.ParseUint(r.URL.Query().Get("record_shard"), 10, 64)
	if err != nil || rs == uint64(MetaShard) {
		badRequest(w, "record_shard must name the data shard holding the transaction's record (kvnode txn list shows it)")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.RequestTimeout)
	defer cancel()
	status, err := n.ForceResolve(ctx, r.PathValue("id"), fsm.ShardID(rs))
	if err != nil {
		writeErr(w, err, "")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"txn_id": r.PathValue("id"), "status": status.String()})
}
