package node

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/ring"
	"github.com/cairndb/cairn/shard"
	"github.com/cairndb/cairn/txn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// HTTP limits, checked before anything is proposed.
const (
	maxBodyBytes = 4 << 20
)

// Handler returns the node's HTTP API (KV, cluster status, health, metrics).
// gatherer serves /metrics; nil serves none.
func (n *Node) Handler(gatherer prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern, route string, h http.HandlerFunc) {
		mux.Handle(pattern, n.http.instrument(route, h))
	}
	handle("PUT /v1/kv/{key...}", "/v1/kv/{key}", n.handlePut)
	handle("GET /v1/kv/{key...}", "/v1/kv/{key}", n.handleGet)
	handle("DELETE /v1/kv/{key...}", "/v1/kv/{key}", n.handleDelete)
	handle("GET /v1/kv", "/v1/kv", n.handleScan)
	handle("POST /v1/batch", "/v1/batch", n.handleBatch)
	handle("POST /v1/txn", "/v1/txn", n.handleTxn)
	handle("GET /v1/txn/intents", "/v1/txn/intents", n.handleIntents)
	handle("POST /v1/txn/{id}/resolve", "/v1/txn/{id}/resolve", n.handleForceResolve)
	n.docRoutes(handle)
	handle("GET /v1/cluster", "/v1/cluster", n.handleCluster)
	handle("GET /v1/cluster/locate", "/v1/cluster/locate", func(w http.ResponseWriter, r *http.Request) {
		key := r.URL.Query().Get("key")
		if key == "" {
			badRequest(w, "key is required")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), n.cfg.RequestTimeout)
		defer cancel()
		t, err := n.keyTarget([]byte(key))(ctx)
		if err != nil {
			writeErr(w, err, "")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"key": key, "shard": uint64(t.id), "ring_epoch": t.epoch})
	})
	handle("POST /v1/cluster/shards/{shard}/transfer-leader", "/v1/cluster/shards/{shard}/transfer-leader", n.handleTransfer)
	handle("DELETE /v1/cluster/nodes/{name}", "/v1/cluster/nodes/{name}", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), n.cfg.RequestTimeout)
		defer cancel()
		name := r.PathValue("name")
		if err := n.RemoveNode(ctx, name); err != nil {
			writeErr(w, err, "")
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"removed": name})
	})
	handle("GET /v1/cluster/replicas", "/v1/cluster/replicas", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"node": n.cfg.Name, "replicas": n.Replicas()})
	})
	handle("GET /healthz", "/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	handle("GET /readyz", "/readyz", n.handleReady)
	if gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	}
	return mux
}

// NewServer wraps h with timeouts that bound slow clients.
func NewServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}

type apiError struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id,omitempty"`
}

// writeJSON answers with v as JSON in one write with its length, so that a
// large answer (a scan page) goes out in one system call rather than
// chunked, a write per 4 KiB of the server's buffer, and the client can
// size its buffer from the header.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// A value JSON cannot hold (a NaN, say): a 500 that says so, not a
		// status with an empty body.
		writeError(w, http.StatusInternalServerError, "internal", "encode the answer: "+err.Error(), "")
		return
	}
	writeJSONBytes(w, status, b)
}

// writeJSONBytes writes b, one encoded JSON value, as writeJSON writes
// its encoding. It may append to b.
func writeJSONBytes(w http.ResponseWriter, status int, b []byte) {
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeError(w http.ResponseWriter, status int, code, msg, requestID string) {
	writeJSON(w, status, map[string]apiError{"error": {Code: code, Message: msg, RequestID: requestID}})
}

// writeErr maps an error to the API's status codes.
func writeErr(w http.ResponseWriter, err error, requestID string) {
	status, code := errorStatus(err)
	writeError(w, status, code, err.Error(), requestID)
}

// errorStatus returns the HTTP status and API code of err.
func errorStatus(err error) (int, string) {
	switch {
	case errors.Is(err, fsm.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, "too_large"
	case errors.Is(err, fsm.ErrInvalid):
		return http.StatusBadRequest, "bad_request"
	case errors.Is(err, fsm.ErrNotFound):
		return http.StatusNotFound, "not_found"
	case errors.Is(err, fsm.ErrVersionMismatch):
		return http.StatusPreconditionFailed, "version_mismatch"
	case errors.Is(err, fsm.ErrConflict), errors.Is(err, fsm.ErrLocked), errors.Is(err, txn.ErrConflict):
		return http.StatusConflict, "conflict"
	case errors.Is(err, shard.ErrOutcomeUnknown):
		return http.StatusGatewayTimeout, "outcome_unknown"
	case errors.Is(err, ErrDiskFull):
		return http.StatusInsufficientStorage, "disk_full"
	default:
		// Not leader, no quorum, too stale, not hosted, closed, a deadline
		// before proposing: nothing was proposed, so retrying is safe.
		return http.StatusServiceUnavailable, "unavailable"
	}
}

// readRequestBody reads a request's body, at most maxBodyBytes of it.
// Errors wrap fsm.ErrTooLarge or fsm.ErrInvalid.
func readRequestBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	return readBounded(http.MaxBytesReader(w, r.Body, maxBodyBytes))
}

// readBounded reads a body bounded by an http.MaxBytesReader of
// maxBodyBytes. Errors wrap fsm.ErrTooLarge or fsm.ErrInvalid.
func readBounded(body io.Reader) ([]byte, error) {
	b, err := io.ReadAll(body)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, fmt.Errorf("%w: body larger than %d bytes", fsm.ErrTooLarge, maxBodyBytes)
	case err != nil:
		return nil, fmt.Errorf("%w: read body: %v", fsm.ErrInvalid, err)
	}
	return b, nil
}

func badRequest(w http.ResponseWriter, msg string) {
	writeError(w, http.StatusBadRequest, "bad_request", msg, "")
}

func parseWriteOptions(r *http.Request) (WriteOptions, error) {
	var o WriteOptions
	if s := r.URL.Query().Get("if_version"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return o, errors.New("if_version must be a non-negative integer")
		}
		o.IfVersion = &v
	}
	o.RequestID = r.Header.Get("Request-Id")
	if len(o.RequestID) > 256 {
		return o, errors.New("Request-Id longer than 256 bytes")
	}
	if o.RequestID == "" {
		// Every write gets an ID, so that one whose outcome is unknown can
		// be retried exactly once.
		var b [16]byte
		_, _ = rand.Read(b[:])
		o.RequestID = hex.EncodeToString(b[:])
	}
	return o, nil
}

func parseReadOptions(r *http.Request) (shard.ReadOptions, error) {
	var o shard.ReadOptions
	q := r.URL.Query()
	switch q.Get("consistency") {
	case "", "linearizable":
	case "stale":
		o.Consistency = shard.Stale
	default:
		return o, errors.New("consistency must be linearizable or stale")
	}
	if s := q.Get("max_staleness"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return o, errors.New("max_staleness must be a duration such as 2s")
		}
		if o.Consistency != shard.Stale {
			return o, errors.New("max_staleness needs consistency=stale")
		}
		o.MaxStaleness = d
	}
	return o, nil
}

// errReservedKey: the KV API leaves keys starting with byte 0x00 to the
// document store (ring.RoutedPrefix).
var errReservedKey = errors.New("keys starting with byte 0x00 are reserved for the document store")

func reservedKey(key string) bool { return len(key) > 0 && key[0] == ring.RoutedPrefix }

func (n *Node) handlePut(w http.ResponseWriter, r *http.Request) {
	o, err := parseWriteOptions(r)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	if reservedKey(r.PathValue("key")) {
		badRequest(w, errReservedKey.Error())
		return
	}
	limit := n.store.Limits().MaxValueSize
	value, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(min(limit+1, maxBodyBytes))))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) || len(value) > limit {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", "value larger than "+strconv.Itoa(limit)+" bytes", "")
		return
	}
	if err != nil {
		badRequest(w, "read body: "+err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.RequestTimeout)
	defer cancel()
	w.Header().Set("Request-Id", o.RequestID)
	v, err := n.Put(ctx, []byte(r.PathValue("key")), value, o)
	if err != nil {
		writeErr(w, err, o.RequestID)
		return
	}
	writeJSON(w, http.StatusOK, map[string]uint64{"version": v})
}

func (n *Node) handleDelete(w http.ResponseWriter, r *http.Request) {
	o, err := parseWriteOptions(r)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	if reservedKey(r.PathValue("key")) {
		badRequest(w, errReservedKey.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.RequestTimeout)
	defer cancel()
	w.Header().Set("Request-Id", o.RequestID)
	if err := n.Delete(ctx, []byte(r.PathValue("key")), o); err != nil {
		writeErr(w, err, o.RequestID)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"deleted": true})
}

func (n *Node) handleGet(w http.ResponseWriter, r *http.Request) {
	o, err := parseReadOptions(r)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	if reservedKey(r.PathValue("key")) {
		badRequest(w, errReservedKey.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.RequestTimeout)
	defer cancel()
	it, err := n.Get(ctx, []byte(r.PathValue("key")), o)
	if err != nil {
		writeErr(w, err, "")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Kv-Version", strconv.FormatUint(it.Version, 10))
	_, _ = w.Write(it.Value)
}

type scanItem struct {
	Key string `json:"key"`
	// KeyBase64 holds the key's exact bytes when they are not valid UTF-8,
	// which a JSON string cannot carry (Key then holds them with each
	// invalid byte replaced by U+FFFD).
	KeyBase64 []byte `json:"key_base64,omitempty"`
	Value     []byte `json:"value"` // base64 in JSON
	Version   uint64 `json:"version"`
}

func (n *Node) handleScan(w http.ResponseWriter, r *http.Request) {
	ro, err := parseReadOptions(r)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	q := r.URL.Query()
	so := ScanOptions{Prefix: []byte(q.Get("prefix")), Start: []byte(q.Get("start")), End: []byte(q.Get("end"))}
	if reservedKey(q.Get("prefix")) || reservedKey(q.Get("start")) || reservedKey(q.Get("end")) {
		badRequest(w, errReservedKey.Error())
		return
	}
	if len(so.Prefix) == 0 && len(so.Start) == 0 {
		so.Start = []byte{ring.RoutedPrefix + 1} // past the document store's keys
	}
	if s := q.Get("limit"); s != "" {
		l, err := strconv.Atoi(s)
		if err != nil || l < 1 || l > MaxScanLimit {
			badRequest(w, "limit must be between 1 and "+strconv.Itoa(MaxScanLimit))
			return
		}
		so.Limit = l
	}
	if s := q.Get("reverse"); s != "" {
		if so.Reverse, err = strconv.ParseBool(s); err != nil {
			badRequest(w, "reverse must be true or false")
			return
		}
	}
	if c := q.Get("cursor"); c != "" {
		if so.Cursor, err = base64.RawURLEncoding.DecodeString(c); err != nil || len(so.Cursor) == 0 {
			badRequest(w, "cursor is not one this API returned")
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.RequestTimeout)
	defer cancel()
	items, next, err := n.Scan(ctx, so, ro)
	if err != nil {
		writeErr(w, err, "")
		return
	}
	out := struct {
		Items  []scanItem `json:"items"`
		Cursor string     `json:"cursor,omitempty"`
	}{Items: make([]scanItem, 0, len(items))}
	for _, it := range items {
		si := scanItem{Key: string(it.Key), Value: it.Value, Version: it.Version}
		if !utf8.Valid(it.Key) {
			si.KeyBase64 = it.Key
		}
		out.Items = append(out.Items, si)
	}
	if next != nil {
		out.Cursor = base64.RawURLEncoding.EncodeToString(next)
	}
	writeJSON(w, http.StatusOK, out)
}

func (n *Node) handleCluster(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, n.Cluster())
}

// handleTransfer moves a shard's leadership: ?to=NODE, or any other voter.
func (n *Node) handleTransfer(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("shard"), 10, 64)
	if err != nil {
		badRequest(w, "shard must be a number")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.RequestTimeout)
	defer cancel()
	leader, err := n.TransferLeadership(ctx, fsm.ShardID(id), r.URL.Query().Get("to"))
	if err != nil {
		writeErr(w, err, "")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"shard": id, "leader": leader})
}

func (n *Node) handleReady(w http.ResponseWriter, _ *http.Request) {
	if err := n.ready(); err != nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}
