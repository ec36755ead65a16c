// Package client is a Go client for the kvnode HTTP API.
//
// It reuses connections, retries only when the server said nothing was
// proposed (503 unavailable) or the request never reached it, and reports a
// write whose outcome is unknown as an error matching ErrOutcomeUnknown that
// carries the request ID: retrying with that ID (RequestID) applies the
// write at most once.
package client

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors; an *APIError matches the one for its code with errors.Is.
var (
	ErrBadRequest      = errors.New("client: bad request")
	ErrNotFound        = errors.New("client: not found")
	ErrVersionMismatch = errors.New("client: version mismatch")
	ErrTooLarge        = errors.New("client: too large")
	ErrConflict        = errors.New("client: conflict")
	ErrUnavailable     = errors.New("client: unavailable")
	ErrOutcomeUnknown  = errors.New("client: outcome unknown")
	ErrExists          = errors.New("client: already exists")
	ErrUniqueViolation = errors.New("client: unique index violation")
	// ErrDiskFull: a node's data disk is below its minimum free space, so
	// writes that add data are refused (nothing was written). Not retried:
	// it lasts until someone frees space.
	ErrDiskFull = errors.New("client: disk full")
)

// APIError is an error answer of the server, or a write whose fate the
// client could not learn (Code "outcome_unknown", Status 0).
type APIError struct {
	Status    int
	Code      string
	Message   string
	RequestID string
}

func (e *APIError) Error() string {
	if e.RequestID != "" {
		return fmt.Sprintf("client: %s (%d): %s [request %s]", e.Code, e.Status, e.Message, e.RequestID)
	}
	return fmt.Sprintf("client: %s (%d): %s", e.Code, e.Status, e.Message)
}

// Is matches the sentinel of e's code.
func (e *APIError) Is(target error) bool {
	m := map[string]error{
		"bad_request": ErrBadRequest, "not_found": ErrNotFound, "version_mismatch": ErrVersionMismatch,
		"too_large": ErrTooLarge, "conflict": ErrConflict, "unavailable": ErrUnavailable,
		"outcome_unknown": ErrOutcomeUnknown, "already_exists": ErrExists, "unique_violation": ErrUniqueViolation,
		"disk_full": ErrDiskFull,
	}
	return m[e.Code] == target
}

// Client talks to one node. It is safe for concurrent use.
type Client struct {
	base    string
	hc      *http.Client
	retries int
	backoff time.Duration
	routing *router  // nil unless WithRouting
	batch   *batcher // nil unless WithBatching
}

// Option configures New.
type Option func(*Client)

// WithHTTPClient replaces the default HTTP client.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithRetries sets how often a request that certainly did not take effect is
// retried (default 5), starting at backoff (default 50ms, doubling, with
// jitter).
func WithRetries(n int, backoff time.Duration) Option {
	return func(c *Client) { c.retries, c.backoff = n, backoff }
}

// New returns a client for the node at addr ("127.0.0.1:7070" or a URL).
func New(addr string, opts ...Option) *Client {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	c := &Client{
		base:    strings.TrimRight(addr, "/"),
		hc:      &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second}},
		retries: 5,
		backoff: 50 * time.Millisecond,
	}
	for _, o := range opts {
		o(c)
	}
	if c.routing != nil {
		c.routing.c = c
	}
	return c
}

// WriteOption conditions or identifies a write.
type WriteOption func(*writeOpts)

type writeOpts struct {
	ifVersion *uint64
	requestID string
}

// IfVersion makes the write conditional on the key's version (0: absent).
func IfVersion(v uint64) WriteOption { return func(o *writeOpts) { o.ifVersion = &v } }

// RequestID sets the write's request ID (default: a random one).
func RequestID(id string) WriteOption { return func(o *writeOpts) { o.requestID = id } }

// ReadOption selects a read's consistency.
type ReadOption func(url.Values)

// Stale reads any replica's state, at most maxStaleness old (0: no bound).
func Stale(maxStaleness time.Duration) ReadOption {
	return func(q url.Values) {
		q.Set("consistency", "stale")
		if maxStaleness > 0 {
			q.Set("max_staleness", maxStaleness.String())
		}
	}
}

func keyPath(key string) string { return "/v1/kv/" + url.PathEscape(key) }

func (c *Client) write(ctx context.Context, method, key string, body []byte, opts []WriteOption) ([]byte, error) {
	var o writeOpts
	for _, f := range opts {
		f(&o)
	}
	q := url.Values{}
	if o.ifVersion != nil {
		q.Set("if_version", strconv.FormatUint(*o.ifVersion, 10))
	}
	return c.sendVia(ctx, c.baseFor(key), method, keyPath(key), q, body, requestIDOf(o), nil, true)
}

// requestIDOf returns the write's request ID, a fresh random one if unset.
func requestIDOf(o writeOpts) string {
	if o.requestID != "" {
		return o.requestID
	}
	var b [16]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Put writes key and returns its new version.
func (c *Client) Put(ctx context.Context, key string, value []byte, opts ...WriteOption) (uint64, error) {
	b, err := c.write(ctx, http.MethodPut, key, value, opts)
	if err != nil {
		return 0, err
	}
	var r struct{ Version uint64 }
	if err := unmarshal(b, &r); err != nil {
		return 0, fmt.Errorf("client: put response: %w", err)
	}
	return r.Version, nil
}

// Delete removes key (ErrNotFound if it was absent).
func (c *Client) Delete(ctx context.Context, key string, opts ...WriteOption) error {
	_, err := c.write(ctx, http.MethodDelete, key, nil, opts)
	return err
}

// Get returns key's value and version (linearizable unless Stale is given).
func (c *Client) Get(ctx context.Context, key string, opts ...ReadOption) ([]byte, uint64, error) {
	q := url.Values{}
	for _, f := range opts {
		f(q)
	}
	base := c.baseFor(key)
	if c.batch != nil {
		op := newGetOp(key)
		op.Consistency, op.MaxStaleness = q.Get("consistency"), q.Get("max_staleness")
		r, answered, release, err := c.batchedGet(ctx, base, op)
		if answered {
			if err != nil {
				return nil, 0, err
			}
			if r.Value == nil {
				r.Value = []byte{} // an empty value, as a request of its own returns it
			}
			return r.Value, r.Version, nil
		}
		if release != nil {
			defer release()
		}
	}
	var version uint64
	b, err := c.sendVia(ctx, base, http.MethodGet, keyPath(key), q, nil, "", func(h http.Header) {
		version, _ = strconv.ParseUint(h.Get("Kv-Version"), 10, 64)
	}, false)
	return b, version, err
}

// Item is one key of a scan.
type Item struct {
	Key     string `json:"key"`
	Value   []byte `json:"value"`
	Version uint64 `json:"version"`
}

// ScanRequest selects keys; Cursor continues a previous page.
type ScanRequest struct {
	Prefix, Start, End string
	Limit              int
	Cursor             string
	Reverse            bool // descending key order
}

// ScanPage is one page of a scan; Cursor is empty on the last page.
type ScanPage struct {
	Items  []Item `json:"items"`
	Cursor string `json:"cursor"`
}

// scanAnswer is the body of GET /v1/kv.
type scanAnswer struct {
	Items []struct {
		Item
		KeyBase64 []byte `json:"key_base64"` // the exact key, when it is not UTF-8
	} `json:"items"`
	Cursor string `json:"cursor"`
}

// Scan returns one page of keys in order (descending with Reverse).
func (c *Client) Scan(ctx context.Context, sr ScanRequest, opts ...ReadOption) (ScanPage, error) {
	q := url.Values{}
	for k, v := range map[string]string{"prefix": sr.Prefix, "start": sr.Start, "end": sr.End, "cursor": sr.Cursor} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if sr.Limit > 0 {
		q.Set("limit", strconv.Itoa(sr.Limit))
	}
	if sr.Reverse {
		q.Set("reverse", "true")
	}
	for _, f := range opts {
		f(q)
	}
	var page scanAnswer
	b, err := c.sendVia(ctx, c.baseForAny(), http.MethodGet, "/v1/kv", q, nil, "", nil, false)
	if err == nil {
		err = unmarshal(b, &page)
	}
	if err != nil {
		return ScanPage{}, err
	}
	out := ScanPage{Items: make([]Item, len(page.Items)), Cursor: page.Cursor}
	for i, it := range page.Items {
		out.Items[i] = it.Item
		if it.KeyBase64 != nil {
			// A key that is not valid UTF-8: its exact bytes.
			out.Items[i].Key = string(it.KeyBase64)
		}
	}
	return out, nil
}

// Cluster returns the node's /v1/cluster document.
func (c *Client) Cluster(ctx context.Context) (json.RawMessage, error) {
	b, err := c.do(ctx, http.MethodGet, "/v1/cluster", nil, nil, "")
	return json.RawMessage(b), err
}

// Locate returns the shard that holds key now (it may move when the ring
// changes).
func (c *Client) Locate(ctx context.Context, key string) (uint64, error) {
	b, err := c.do(ctx, http.MethodGet, "/v1/cluster/locate", url.Values{"key": {key}}, nil, "")
	if err != nil {
		return 0, err
	}
	var r struct {
		Shard uint64 `json:"shard"`
	}
	if err := unmarshal(b, &r); err != nil {
		return 0, fmt.Errorf("client: locate: %w", err)
	}
	return r.Shard, nil
}

// TransferLeader hands the leadership of shard to the replica on node to
// (empty: any other replica) and returns the node that leads it afterwards.
func (c *Client) TransferLeader(ctx context.Context, shard uint64, to string) (string, error) {
	q := url.Values{}
	if to != "" {
		q.Set("to", to)
	}
	b, err := c.do(ctx, http.MethodPost, "/v1/cluster/shards/"+strconv.FormatUint(shard, 10)+"/transfer-leader", q, nil, "")
	if err != nil {
		return "", err
	}
	var r struct {
		Leader string `json:"leader"`
	}
	if err := unmarshal(b, &r); err != nil {
		return "", fmt.Errorf("client: transfer-leader answer: %w", err)
	}
	return r.Leader, nil
}

// RemoveNode takes a node that is down for good out of the cluster; its
// replicas move to the remaining nodes.
func (c *Client) RemoveNode(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/cluster/nodes/"+url.PathEscape(name), nil, nil, "")
	return err
}

// Ready returns nil once the node knows the cluster's layout and a leader
// for every shard (GET /readyz), or the error that says why not.
func (c *Client) Ready(ctx context.Context) error {
	_, err := c.do(ctx, http.MethodGet, "/readyz", nil, nil, "")
	return err
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body []byte, requestID string) ([]byte, error) {
	return c.doHeader(ctx, method, path, q, body, requestID, nil)
}

// doHeader sends a request, retrying while nothing can have taken effect:
// the server answered 503, or the connection failed before the request was
// sent. A write whose request may have reached the server without an answer
// is outcome_unknown.
func (c *Client) doHeader(ctx context.Context, method, path string, q url.Values, body []byte, requestID string, onHeader func(http.Header)) ([]byte, error) {
	return c.send(ctx, method, path, q, body, requestID, onHeader, method != http.MethodGet)
}

func (c *Client) send(ctx context.Context, method, path string, q url.Values, body []byte, requestID string, onHeader func(http.Header), isWrite bool) ([]byte, error) {
	return c.sendVia(ctx, c.base, method, path, q, body, requestID, onHeader, isWrite)
}

// sendVia is send to the node at base. If base is a routed node (not the
// one given to New) that cannot be reached, the request goes to New's node
// instead, and the routes are read again.
func (c *Client) sendVia(ctx context.Context, base, method, path string, q url.Values, body []byte, requestID string, onHeader func(http.Header), isWrite bool) ([]byte, error) {
	query := ""
	if len(q) > 0 {
		query = "?" + q.Encode()
	}
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, base+path+query, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		if requestID != "" {
			req.Header.Set("Request-Id", requestID)
		}
		resp, err := c.hc.Do(req)
		if err != nil && base != c.base && neverSent(err) {
			c.routing.forget()
			base = c.base
			continue
		}
		if err != nil {
			if isWrite && !neverSent(err) {
				return nil, &APIError{Code: "outcome_unknown", Message: err.Error(), RequestID: requestID}
			}
			if attempt >= c.retries || ctx.Err() != nil {
				return nil, &APIError{Code: "unavailable", Message: err.Error(), RequestID: requestID}
			}
			c.sleep(ctx, attempt)
			continue
		}
		b, err := readBody(resp)
		resp.Body.Close()
		if err != nil {
			if isWrite {
				return nil, &APIError{Status: resp.StatusCode, Code: "outcome_unknown", Message: err.Error(), RequestID: requestID}
			}
			return nil, fmt.Errorf("client: read response: %w", err)
		}
		if resp.StatusCode < 300 {
			if onHeader != nil {
				onHeader(resp.Header)
			}
			return b, nil
		}
		apiErr := decodeError(resp.StatusCode, b, requestID)
		if resp.StatusCode == http.StatusServiceUnavailable && attempt < c.retries && ctx.Err() == nil {
			c.sleep(ctx, attempt)
			continue
		}
		return nil, apiErr
	}
}

// readBody reads a response's body, in one buffer of its declared length
// when the server gave one (no growing and copying for large scan pages).
func readBody(resp *http.Response) ([]byte, error) {
	if n := resp.ContentLength; n > 0 && n <= 64<<20 {
		b := make([]byte, n)
		if _, err := io.ReadFull(resp.Body, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	return io.ReadAll(resp.Body)
}

func decodeError(status int, b []byte, requestID string) *APIError {
	var e struct {
		Error struct {
			Code      string `json:"code"`
			Message   string `json:"message"`
			RequestID string `json:"request_id"`
		} `json:"error"`
	}
	if err := unmarshal(b, &e); err != nil || e.Error.Code == "" {
		return &APIError{Status: status, Code: fmt.Sprintf("http_%d", status), Message: strings.TrimSpace(string(b)), RequestID: requestID}
	}
	if e.Error.RequestID != "" {
		requestID = e.Error.RequestID
	}
	return &APIError{Status: status, Code: e.Error.Code, Message: e.Error.Message, RequestID: requestID}
}

// neverSent reports errors that prove the request did not reach a server:
// the connection could not be made.
func neverSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func (c *Client) sleep(ctx context.Context, attempt int) {
	d := c.backoff << min(attempt, 6)
	d = d/2 + rand.N(d/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
