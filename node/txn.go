package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"

	"github.com/cairndb/cairn/fsm"
)

// ErrCrossShard: a transaction's keys live on more than one shard. Only
// one-shard transactions exist so far; the cross-shard protocol (two-phase
// commit over the shard leaders) is not built yet.
var ErrCrossShard = errors.New("node: transaction spans shards")

// TxnRequest is a compare-and-write transaction: when every comparison in
// If holds, Then runs, otherwise Else; both may hold puts, deletes and gets
// (fsm.Put, fsm.Delete, fsm.Get). An empty If takes Then.
type TxnRequest struct {
	If         []fsm.Compare
	Then, Else []fsm.Op
	// RequestID makes a retried transaction apply at most once (the node
	// picks one when empty).
	RequestID string
}

// TxnResponse says which branch ran and what each of its ops did, in order.
type TxnResponse struct {
	Succeeded bool
	Results   []fsm.OpResult
	// Duplicate: the request ID had applied before; Results are that
	// first outcome, without what its gets read.
	Duplicate bool
}

// Transact runs req atomically: comparisons, the chosen branch's writes and
// its gets happen at one point in the shard's history (strictly
// serializable). Every key must live on one shard; otherwise the error
// wraps ErrCrossShard and nothing is proposed. Other errors are those of
// Put.
func (n *Node) Transact(ctx context.Context, req TxnRequest) (TxnResponse, error) {
	cmd := fsm.Command{RequestID: req.RequestID, Txn: true, If: req.If, Ops: req.Then, Else: req.Else}
	keys := cmd.Keys()
	if len(keys) == 0 {
		return TxnResponse{}, fmt.Errorf("%w: a transaction needs at least one operation", fsm.ErrInvalid)
	}
	locate := n.keysTarget(keys)
	if _, err := locate(ctx); err != nil {
		return TxnResponse{}, err // spans shards, or no layout yet
	}
	res, err := n.propose(ctx, locate, cmd)
	if err != nil {
		return TxnResponse{}, err
	}
	if err := res.Err(); err != nil {
		return TxnResponse{}, err
	}
	return TxnResponse{Succeeded: res.Succeeded, Results: res.Ops, Duplicate: res.Duplicate}, nil
}

// keysTarget routes a request whose keys must all live on one shard.
func (n *Node) keysTarget(keys [][]byte) func(context.Context) (target, error) {
	return func(ctx context.Context) (target, error) {
		v, err := n.routingView(ctx)
		if err != nil {
			return target{}, err
		}
		id := v.ring.Locate(keys[0])
		for _, k := range keys[1:] {
			if other := v.ring.Locate(k); other != id {
				return target{}, fmt.Errorf("%w: key %q is on %v, key %q on %v; cross-shard transactions are not available yet",
					ErrCrossShard, keys[0], id, k, other)
			}
		}
		return target{id: id, epoch: v.ring.Epoch()}, nil
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
	if err := checkJSONDepth(body, maxJSONDepth); err != nil {
		return TxnRequest{}, err
	}
	var b txnBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return TxnRequest{}, fmt.Errorf("body is not a transaction: %v", err)
	}
	if dec.More() {
		return TxnRequest{}, errors.New("body holds more than one JSON value")
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
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", "body larger than "+strconv.Itoa(maxBodyBytes)+" bytes", "")
		return
	}
	if err != nil {
		badRequest(w, "read body: "+err.Error())
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
	if errors.Is(err, ErrCrossShard) {
		writeError(w, http.StatusNotImplemented, "not_implemented", err.Error(), "")
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
	}{Succeeded: resp.Succeeded, Results: make([]txnResult, len(resp.Results)), Duplicate: resp.Duplicate}
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
