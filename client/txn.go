package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Compare is one condition of a transaction, on a key's state before it.
// Build it with VersionIs, VersionBelow, VersionAbove, Exists, Absent or
// ValueIs.
type Compare struct {
	Key       string  `json:"key"`
	Version   *uint64 `json:"version,omitempty"`
	VersionLt *uint64 `json:"version_lt,omitempty"`
	VersionGt *uint64 `json:"version_gt,omitempty"`
	Exists    *bool   `json:"exists,omitempty"`
	Value     *[]byte `json:"value,omitempty"` // base64; may be empty
}

// VersionIs holds when key is at version v (0: absent).
func VersionIs(key string, v uint64) Compare { return Compare{Key: key, Version: &v} }

// VersionBelow holds when key's version is below v (an absent key is at 0).
func VersionBelow(key string, v uint64) Compare { return Compare{Key: key, VersionLt: &v} }

// VersionAbove holds when key's version is above v.
func VersionAbove(key string, v uint64) Compare { return Compare{Key: key, VersionGt: &v} }

// Exists holds when key is present.
func Exists(key string) Compare { t := true; return Compare{Key: key, Exists: &t} }

// Absent holds when key is absent.
func Absent(key string) Compare { f := false; return Compare{Key: key, Exists: &f} }

// ValueIs holds when key is present with value v.
func ValueIs(key string, v []byte) Compare {
	if v == nil {
		v = []byte{} // the empty value, not "no value comparison"
	}
	return Compare{Key: key, Value: &v}
}

// TxnOp is one operation of a transaction: TxnPut, TxnDelete or TxnGet.
type TxnOp struct {
	Put    *txnPut `json:"put,omitempty"`
	Delete *txnKey `json:"delete,omitempty"`
	Get    *txnKey `json:"get,omitempty"`
}

type txnPut struct {
	Key   string `json:"key"`
	Value []byte `json:"value"` // base64; "" for an empty value
}

type txnKey struct {
	Key string `json:"key"`
}

// TxnPut writes key.
func TxnPut(key string, value []byte) TxnOp {
	if value == nil {
		value = []byte{}
	}
	return TxnOp{Put: &txnPut{Key: key, Value: value}}
}

// TxnDelete removes key.
func TxnDelete(key string) TxnOp { return TxnOp{Delete: &txnKey{Key: key}} }

// TxnGet reads key, seeing the transaction's earlier writes.
func TxnGet(key string) TxnOp { return TxnOp{Get: &txnKey{Key: key}} }

// Txn is a compare-and-write transaction (POST /v1/txn): when every
// comparison in If holds, Then runs, otherwise Else.
type Txn struct {
	If   []Compare `json:"if,omitempty"`
	Then []TxnOp   `json:"then,omitempty"`
	Else []TxnOp   `json:"else,omitempty"`
}

// checkKeys refuses keys that are not valid UTF-8: a transaction's keys
// travel as JSON strings, and encoding one would replace its invalid bytes
// with U+FFFD, naming another key. Put, Get and Delete carry any bytes.
func checkKeys(keys []string) error {
	for _, k := range keys {
		if !utf8.ValidString(k) {
			return fmt.Errorf("%w: transaction key %q is not valid UTF-8 (keys travel as JSON strings); nothing was sent", ErrBadRequest, k)
		}
	}
	return nil
}

// keys returns the keys of t's comparisons, then of its operations.
func (t Txn) keys() []string {
	var keys []string
	for _, c := range t.If {
		keys = append(keys, c.Key)
	}
	for _, op := range slices.Concat(t.Then, t.Else) {
		switch {
		case op.Put != nil:
			keys = append(keys, op.Put.Key)
		case op.Delete != nil:
			keys = append(keys, op.Delete.Key)
		case op.Get != nil:
			keys = append(keys, op.Get.Key)
		}
	}
	return keys
}

// TxnResult is the outcome of one operation of the branch that ran: Version
// for a put (and a found get), Deleted for a delete, Found and Value for a
// get.
type TxnResult struct {
	Version uint64 `json:"version"`
	Deleted bool   `json:"deleted"`
	Found   bool   `json:"found"`
	Value   []byte `json:"value"`
}

// TxnResponse says which branch ran. Duplicate: the request ID had applied
// before and Results are that first outcome (gets are not repeated).
type TxnResponse struct {
	Succeeded bool        `json:"succeeded"`
	Results   []TxnResult `json:"results"`
	Duplicate bool        `json:"duplicate"`
}

// Txn runs t atomically. RequestID makes a retry after ErrOutcomeUnknown
// apply at most once.
func (c *Client) Txn(ctx context.Context, t Txn, opts ...WriteOption) (TxnResponse, error) {
	var o writeOpts
	for _, f := range opts {
		f(&o)
	}
	if o.ifVersion != nil {
		return TxnResponse{}, fmt.Errorf("%w: IfVersion does not apply to a transaction (use a comparison)", ErrBadRequest)
	}
	keys := t.keys()
	if err := checkKeys(keys); err != nil {
		return TxnResponse{}, err
	}
	body, err := json.Marshal(t)
	if err != nil {
		return TxnResponse{}, err
	}
	// With routing, to the leader of the first key's shard: a transaction
	// on one shard runs there without a forward, and the coordination of
	// those on several spreads with their keys. A request ID dedupes on
	// the shard whichever node sends the command.
	base := c.base
	if len(keys) > 0 {
		base = c.baseFor(keys[0])
	}
	b, err := c.sendVia(ctx, base, http.MethodPost, "/v1/txn", nil, body, requestIDOf(o), nil, true)
	if err != nil {
		return TxnResponse{}, err
	}
	var r TxnResponse
	if err := unmarshal(b, &r); err != nil {
		return TxnResponse{}, fmt.Errorf("client: txn response: %w", err)
	}
	return r, nil
}

// Intent is a lock a cross-shard transaction holds (GET /v1/txn/intents).
type Intent struct {
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

// Intents lists the intents on the shards the node leads, oldest first.
func (c *Client) Intents(ctx context.Context) ([]Intent, error) {
	b, err := c.do(ctx, http.MethodGet, "/v1/txn/intents", nil, nil, "")
	if err != nil {
		return nil, err
	}
	var r struct {
		Intents []Intent `json:"intents"`
	}
	if err := unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("client: intents: %w", err)
	}
	return r.Intents, nil
}

// ResolveTxn decides transaction id now (aborting it if still pending) and
// returns its status: "committed" or "aborted". recordShard is the shard
// holding its record (Intent.RecordShard).
func (c *Client) ResolveTxn(ctx context.Context, id string, recordShard uint64) (string, error) {
	q := url.Values{"record_shard": {strconv.FormatUint(recordShard, 10)}}
	b, err := c.do(ctx, http.MethodPost, "/v1/txn/"+url.PathEscape(id)+"/resolve", q, nil, "")
	if err != nil {
		return "", err
	}
	var r struct {
		Status string `json:"status"`
	}
	if err := unmarshal(b, &r); err != nil {
		return "", fmt.Errorf("client: resolve: %w", err)
	}
	return r.Status, nil
}
