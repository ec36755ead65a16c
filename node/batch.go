package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/ring"
	"github.com/cairndb/cairn/shard"
)

// POST /v1/batch carries several independent key-value operations (gets,
// puts, deletes) in one HTTP request. Each is done exactly as its own
// request would be (routing, consistency, conditions, request IDs,
// retries), concurrently with the others, and answered with its own status;
// nothing orders them against each other and nothing makes them atomic
// together (POST /v1/txn does). The Go client sends one when its callers
// have more operations waiting for the same node than it keeps requests in
// flight to it, so that those operations share a request's system calls.
//
// The whole batch is checked before any of it is proposed: one bad
// operation answers 400 (or 413) for the batch, naming it, and nothing is
// done.

// batchOp is one operation of a batch request. The key is Key, or
// KeyBase64 when its bytes are not UTF-8 (a JSON string cannot carry them).
type batchOp struct {
	Op           string  `json:"op"` // get, put, delete
	Key          string  `json:"key"`
	KeyBase64    []byte  `json:"key_base64"`
	Value        []byte  `json:"value"` // base64, puts only
	IfVersion    *uint64 `json:"if_version"`
	RequestID    string  `json:"request_id"`
	Consistency  string  `json:"consistency"`   // gets: linearizable (default) or stale
	MaxStaleness string  `json:"max_staleness"` // gets: with stale, a duration
}

// batchResult answers one operation: Status is the HTTP status its own
// request would have had, Error the error body it would have had.
type batchResult struct {
	Status    int       `json:"status"`
	Version   uint64    `json:"version,omitempty"`
	Value     []byte    `json:"value,omitempty"`
	Deleted   bool      `json:"deleted,omitempty"`
	RequestID string    `json:"request_id,omitempty"`
	Error     *apiError `json:"error,omitempty"`
}

// batchCall is a checked operation, ready to run.
type batchCall struct {
	kind  fsm.OpType
	key   []byte
	value []byte
	write WriteOptions
	read  shard.ReadOptions
}

// checkBatchOp turns op into a call, or says what is wrong with it (an
// error wrapping fsm.ErrInvalid or fsm.ErrTooLarge).
func (n *Node) checkBatchOp(op batchOp) (batchCall, error) {
	var c batchCall
	switch {
	case op.KeyBase64 != nil && op.Key != "":
		return c, fmt.Errorf("%w: key and key_base64 both given", fsm.ErrInvalid)
	case op.KeyBase64 != nil:
		c.key = op.KeyBase64
	default:
		c.key = []byte(op.Key)
	}
	if len(c.key) == 0 {
		return c, fmt.Errorf("%w: empty key", fsm.ErrInvalid)
	}
	if c.key[0] == ring.RoutedPrefix {
		return c, fmt.Errorf("%w: %v", fsm.ErrInvalid, errReservedKey)
	}
	if l := n.store.Limits().MaxKeySize; len(c.key) > l {
		return c, fmt.Errorf("%w: key of %d bytes, limit %d", fsm.ErrTooLarge, len(c.key), l)
	}
	switch op.Op {
	case "get":
		c.kind = fsm.OpGet
		if op.Value != nil || op.IfVersion != nil || op.RequestID != "" {
			return c, fmt.Errorf("%w: a get takes no value, if_version or request_id", fsm.ErrInvalid)
		}
		switch op.Consistency {
		case "", "linearizable":
		case "stale":
			c.read.Consistency = shard.Stale
		default:
			return c, fmt.Errorf("%w: consistency must be linearizable or stale", fsm.ErrInvalid)
		}
		if op.MaxStaleness != "" {
			d, err := time.ParseDuration(op.MaxStaleness)
			if err != nil || d < 0 {
				return c, fmt.Errorf("%w: max_staleness must be a duration such as 2s", fsm.ErrInvalid)
			}
			if c.read.Consistency != shard.Stale {
				return c, fmt.Errorf("%w: max_staleness needs consistency stale", fsm.ErrInvalid)
			}
			c.read.MaxStaleness = d
		}
		return c, nil
	case "put", "delete":
		if op.Consistency != "" || op.MaxStaleness != "" {
			return c, fmt.Errorf("%w: a %s takes no consistency or max_staleness", fsm.ErrInvalid, op.Op)
		}
		c.write = WriteOptions{IfVersion: op.IfVersion, RequestID: op.RequestID}
		if c.write.RequestID == "" {
			c.write.RequestID = newRequestID()
		}
		o := fsm.Delete(c.key)
		c.kind = fsm.OpDelete
		if op.Op == "put" {
			o = fsm.Put(c.key, op.Value)
			c.kind, c.value = fsm.OpPut, op.Value
		} else if op.Value != nil {
			return c, fmt.Errorf("%w: a delete takes no value", fsm.ErrInvalid)
		}
		o.IfVersion = op.IfVersion
		return c, n.store.Check(fsm.Command{RequestID: c.write.RequestID, Ops: []fsm.Op{o}})
	case "":
		return c, fmt.Errorf("%w: op is required (get, put or delete)", fsm.ErrInvalid)
	default:
		return c, fmt.Errorf("%w: op %q is not get, put or delete", fsm.ErrInvalid, op.Op)
	}
}

// run does c as its own request would, and answers as that request would.
func (n *Node) runBatchCall(ctx context.Context, c batchCall) batchResult {
	var r batchResult
	var err error
	switch c.kind {
	case fsm.OpGet:
		var it fsm.Item
		if it, err = n.Get(ctx, c.key, c.read); err == nil {
			r.Value, r.Version = it.Value, it.Version
		}
	case fsm.OpPut:
		r.RequestID = c.write.RequestID
		r.Version, err = n.Put(ctx, c.key, c.value, c.write)
	case fsm.OpDelete:
		r.RequestID = c.write.RequestID
		err = n.Delete(ctx, c.key, c.write)
		r.Deleted = err == nil
	}
	if err != nil {
		status, code := errorStatus(err)
		r.Status, r.Error = status, &apiError{Code: code, Message: err.Error(), RequestID: r.RequestID}
		return r
	}
	r.Status = http.StatusOK
	return r
}

// MaxBatchOps bounds the operations of one POST /v1/batch.
const MaxBatchOps = 1000

func (n *Node) handleBatch(w http.ResponseWriter, r *http.Request) {
	body, err := readRequestBody(w, r)
	if err != nil {
		writeErr(w, err, "")
		return
	}
	if err := checkJSONText(body, maxJSONDepth); err != nil {
		badRequest(w, err.Error())
		return
	}
	var req struct {
		Ops []batchOp `json:"ops"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		badRequest(w, "body must be a JSON object {\"ops\": [...]}: "+err.Error())
		return
	}
	switch {
	case len(req.Ops) == 0:
		badRequest(w, "ops must hold at least one operation")
		return
	case len(req.Ops) > MaxBatchOps:
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("%d operations, limit %d", len(req.Ops), MaxBatchOps), "")
		return
	}
	calls := make([]batchCall, len(req.Ops))
	for i, op := range req.Ops {
		if calls[i], err = n.checkBatchOp(op); err != nil {
			status, code := errorStatus(err)
			writeError(w, status, code, "ops["+strconv.Itoa(i)+"]: "+err.Error(), "")
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.RequestTimeout)
	defer cancel()
	out := struct {
		Results []batchResult `json:"results"`
	}{Results: make([]batchResult, len(calls))}
	n.runBatch(ctx, calls, out.Results)
	writeJSON(w, http.StatusOK, out)
}

// runBatch runs calls concurrently and puts their answers in res.
//
// Linearizable gets of one shard share a freshness check: the first runs
// alone, and once this node's replica has proved fresh for it (the leader
// confirmed its leadership, or a follower caught up to the read index),
// the others read that replica at once, at that point or later (a read
// session, as a document query's reads share one). Each of them is still
// linearizable: the check began after the batch arrived, so after every
// get in it was sent, and reflects every write acknowledged before that;
// and it ends before the batch is answered. Without this, each get of a
// busy shard would ask for a leadership round of its own, and a round is a
// message to every other replica.
func (n *Node) runBatch(ctx context.Context, calls []batchCall, res []batchResult) {
	if len(calls) == 1 {
		res[0] = n.runBatchCall(ctx, calls[0])
		return
	}
	ctx = withReadSession(ctx)
	shardOf := func(key []byte) (fsm.ShardID, bool) {
		v := n.view.Load()
		if v == nil || v.ring == nil {
			return 0, false
		}
		return v.ring.Locate(key), true
	}
	groups := map[fsm.ShardID][]int{} // linearizable gets by shard, in order
	var wg sync.WaitGroup
	for i, c := range calls {
		if c.kind == fsm.OpGet && c.read.Consistency == shard.Linearizable {
			if id, ok := shardOf(c.key); ok {
				groups[id] = append(groups[id], i)
				continue
			}
		}
		wg.Go(func() { res[i] = n.runBatchCall(ctx, c) })
	}
	for _, idx := range groups {
		wg.Go(func() {
			first := idx[0]
			res[first] = n.runBatchCall(ctx, calls[first])
			for _, i := range idx[1:] {
				wg.Go(func() { res[i] = n.runBatchCall(ctx, calls[i]) })
			}
		})
	}
	wg.Wait()
}
