package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/cairndb/cairn/docstore"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/ring"
	"github.com/cairndb/cairn/shard"
)

// Docs returns the node's document store (ARCHITECTURE §6): the same
// operations as /v1/docs, in process.
func (n *Node) Docs() *docstore.DB { return n.docs }

// indexBuildLoop finishes index builds whose builder died: every
// IndexResumeInterval the leader of the meta group resumes builds begun
// more than IndexResumeAge ago that no build on this node is running.
func (n *Node) indexBuildLoop() {
	defer n.wg.Done()
	every, age := n.cfg.IndexResumeInterval, n.cfg.IndexResumeAge
	if every <= 0 {
		every = 15 * time.Second
	}
	if age <= 0 {
		age = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		if _, _, self := n.meta.Leader(); !self {
			continue
		}
		if k, err := n.docs.ResumeBuilds(n.ctx, age); err != nil {
			n.logger.Warn("resuming index builds", "error", err)
		} else if k > 0 {
			n.logger.Info("resumed index builds", "count", k)
		}
	}
}

// docsKV gives the document store the node's linearizable reads, scans
// and transactions.
type docsKV struct{ n *Node }

func (d docsKV) Get(ctx context.Context, key []byte) (fsm.Item, bool, error) {
	it, err := d.n.Get(ctx, key, shard.ReadOptions{})
	if errors.Is(err, fsm.ErrNotFound) {
		return fsm.Item{}, false, nil
	}
	return it, err == nil, err
}

func (d docsKV) Scan(ctx context.Context, start, end, after []byte, limit int) ([]fsm.Item, bool, error) {
	items, cursor, err := d.n.Scan(ctx, ScanOptions{Start: start, End: end, Cursor: after, Limit: limit}, shard.ReadOptions{})
	return items, cursor != nil, err
}

func (d docsKV) Transact(ctx context.Context, ifs []fsm.Compare, then []fsm.Op) (bool, []fsm.OpResult, error) {
	r, err := d.n.Transact(ctx, TxnRequest{If: ifs, Then: then})
	return r.Succeeded, r.Results, err
}

func (d docsKV) ShardTag(ctx context.Context, key []byte) ([]byte, error) {
	v, err := d.n.routingView(ctx)
	if err != nil {
		return nil, err
	}
	return d.n.shardTags.of(v.ring, v.ring.Locate(key)), nil
}

func (d docsKV) ShardTags(ctx context.Context) ([][]byte, error) {
	v, err := d.n.routingView(ctx)
	if err != nil {
		return nil, err
	}
	var tags [][]byte
	for _, id := range v.ring.Shards() {
		tags = append(tags, d.n.shardTags.of(v.ring, id))
	}
	return tags, nil
}

// shardTagCache holds, for the ring it was computed from, a routing tag
// that the ring places on each shard: the first of "shard/0", "shard/1",
// ... that lands there.
type shardTagCache struct {
	mu    sync.Mutex
	epoch uint64
	tags  map[fsm.ShardID][]byte
}

func (c *shardTagCache) of(r *ring.Ring, id fsm.ShardID) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tags == nil || c.epoch != r.Epoch() {
		c.epoch, c.tags = r.Epoch(), map[fsm.ShardID][]byte{}
		want := len(r.Shards())
		for i := 0; len(c.tags) < want && i < 1<<20; i++ {
			tag := []byte("shard/" + strconv.Itoa(i))
			if s := r.Locate(tag); c.tags[s] == nil {
				c.tags[s] = tag
			}
		}
	}
	return c.tags[id]
}

// readJSONBody reads a JSON body within the limits and decodes it
// (numbers as json.Number).
func (n *Node) readJSONBody(w http.ResponseWriter, r *http.Request) (any, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", "body larger than "+strconv.Itoa(maxBodyBytes)+" bytes", "")
		return nil, false
	}
	if err != nil {
		badRequest(w, "read body: "+err.Error())
		return nil, false
	}
	if err := checkJSONDepth(body, maxJSONDepth); err != nil {
		badRequest(w, err.Error())
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		badRequest(w, "body is not JSON: "+err.Error())
		return nil, false
	}
	if dec.More() {
		badRequest(w, "body holds more than one JSON value")
		return nil, false
	}
	return v, true
}

func (n *Node) readDoc(w http.ResponseWriter, r *http.Request) (docstore.Doc, bool) {
	v, ok := n.readJSONBody(w, r)
	if !ok {
		return nil, false
	}
	m, isObj := v.(map[string]any)
	if !isObj {
		badRequest(w, "a document is a JSON object")
		return nil, false
	}
	return docstore.Doc(m), true
}

// writeDocErr maps document store errors to the API's codes.
func writeDocErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, docstore.ErrExists):
		writeError(w, http.StatusConflict, "already_exists", err.Error(), "")
		return
	case errors.Is(err, docstore.ErrUniqueViolation):
		writeError(w, http.StatusConflict, "unique_violation", err.Error(), "")
		return
	}
	writeErr(w, err, "")
}

func ifVersion(w http.ResponseWriter, r *http.Request) (*uint64, bool) {
	s := r.URL.Query().Get("if_version")
	if s == "" {
		return nil, true
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		badRequest(w, "if_version must be a non-negative integer")
		return nil, false
	}
	return &v, true
}

func (n *Node) docRoutes(handle func(pattern, route string, h http.HandlerFunc)) {
	timeout := func(r *http.Request) (context.Context, context.CancelFunc) {
		return context.WithTimeout(r.Context(), n.cfg.RequestTimeout)
	}
	coll := func(w http.ResponseWriter, r *http.Request) (*docstore.Collection, bool) {
		name := r.PathValue("coll")
		if err := docstore.CheckName(name); err != nil {
			writeDocErr(w, err)
			return nil, false
		}
		return n.docs.Collection(name), true
	}
	handle("GET /v1/docs", "/v1/docs", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := timeout(r)
		defer cancel()
		names, err := n.docs.Collections(ctx)
		if err != nil {
			writeDocErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"collections": append([]string{}, names...)})
	})
	handle("DELETE /v1/docs/{coll}", "/v1/docs/{coll}", func(w http.ResponseWriter, r *http.Request) {
		c, ok := coll(w, r)
		if !ok {
			return
		}
		ctx, cancel := timeout(r)
		defer cancel()
		if err := c.Drop(ctx); err != nil {
			writeDocErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]bool{"dropped": true})
	})
	handle("POST /v1/docs/{coll}", "/v1/docs/{coll}", func(w http.ResponseWriter, r *http.Request) {
		c, ok := coll(w, r)
		if !ok {
			return
		}
		d, ok := n.readDoc(w, r)
		if !ok {
			return
		}
		ctx, cancel := timeout(r)
		defer cancel()
		id, v, err := c.Insert(ctx, d)
		if err != nil {
			writeDocErr(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, map[string]any{docstore.FieldID: id, docstore.FieldVersion: v})
	})
	handle("GET /v1/docs/{coll}/{id}", "/v1/docs/{coll}/{id}", func(w http.ResponseWriter, r *http.Request) {
		c, ok := coll(w, r)
		if !ok {
			return
		}
		ctx, cancel := timeout(r)
		defer cancel()
		d, err := c.Get(ctx, r.PathValue("id"))
		if err != nil {
			writeDocErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, d)
	})
	update := func(patch bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			c, ok := coll(w, r)
			if !ok {
				return
			}
			iv, ok := ifVersion(w, r)
			if !ok {
				return
			}
			d, ok := n.readDoc(w, r)
			if !ok {
				return
			}
			ctx, cancel := timeout(r)
			defer cancel()
			var v uint64
			var err error
			if patch {
				v, err = c.Patch(ctx, r.PathValue("id"), d, iv)
			} else {
				v, err = c.Replace(ctx, r.PathValue("id"), d, iv)
			}
			if err != nil {
				writeDocErr(w, err)
				return
			}
			writeJSON(w, http.StatusOK, map[string]any{docstore.FieldID: r.PathValue("id"), docstore.FieldVersion: v})
		}
	}
	handle("PUT /v1/docs/{coll}/{id}", "/v1/docs/{coll}/{id}", update(false))
	handle("PATCH /v1/docs/{coll}/{id}", "/v1/docs/{coll}/{id}", update(true))
	handle("DELETE /v1/docs/{coll}/{id}", "/v1/docs/{coll}/{id}", func(w http.ResponseWriter, r *http.Request) {
		c, ok := coll(w, r)
		if !ok {
			return
		}
		iv, ok := ifVersion(w, r)
		if !ok {
			return
		}
		ctx, cancel := timeout(r)
		defer cancel()
		if err := c.Delete(ctx, r.PathValue("id"), iv); err != nil {
			writeDocErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]bool{"deleted": true})
	})
	handle("POST /v1/docs/{coll}/_find", "/v1/docs/{coll}/_find", func(w http.ResponseWriter, r *http.Request) {
		c, ok := coll(w, r)
		if !ok {
			return
		}
		v, ok := n.readJSONBody(w, r)
		if !ok {
			return
		}
		q, err := parseFind(v)
		if err != nil {
			writeDocErr(w, err)
			return
		}
		ctx, cancel := timeout(r)
		defer cancel()
		docs, cursor, err := c.Find(ctx, q)
		if err != nil {
			writeDocErr(w, err)
			return
		}
		out := map[string]any{"docs": append([]docstore.Doc{}, docs...)}
		if cursor != "" {
			out["cursor"] = cursor
		}
		writeJSON(w, http.StatusOK, out)
	})
	handle("POST /v1/docs/{coll}/_explain", "/v1/docs/{coll}/_explain", func(w http.ResponseWriter, r *http.Request) {
		c, ok := coll(w, r)
		if !ok {
			return
		}
		v, ok := n.readJSONBody(w, r)
		if !ok {
			return
		}
		q, err := parseFind(v)
		if err != nil {
			writeDocErr(w, err)
			return
		}
		ctx, cancel := timeout(r)
		defer cancel()
		ex, err := c.Explain(ctx, q)
		if err != nil {
			writeDocErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, ex)
	})
	handle("POST /v1/docs/{coll}/_analyze", "/v1/docs/{coll}/_analyze", func(w http.ResponseWriter, r *http.Request) {
		c, ok := coll(w, r)
		if !ok {
			return
		}
		ctx, cancel := timeout(r)
		defer cancel()
		st, err := c.Analyze(ctx)
		if err != nil {
			writeDocErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	handle("GET /v1/docs/{coll}/_indexes", "/v1/docs/{coll}/_indexes", func(w http.ResponseWriter, r *http.Request) {
		c, ok := coll(w, r)
		if !ok {
			return
		}
		ctx, cancel := timeout(r)
		defer cancel()
		list, err := c.Indexes(ctx)
		if err != nil {
			writeDocErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"indexes": list})
	})
	handle("PUT /v1/docs/{coll}/_indexes/{name}", "/v1/docs/{coll}/_indexes/{name}", func(w http.ResponseWriter, r *http.Request) {
		c, ok := coll(w, r)
		if !ok {
			return
		}
		v, ok := n.readJSONBody(w, r)
		if !ok {
			return
		}
		spec, err := parseIndexSpec(r.PathValue("name"), v)
		if err != nil {
			writeDocErr(w, err)
			return
		}
		// A build reads the whole collection: it may take longer than a
		// request. It runs under the node's lifetime; the answer comes
		// when it is ready or the request times out (the build goes on).
		done := make(chan error, 1)
		go func() {
			done <- c.CreateIndex(n.ctx, spec)
		}()
		ctx, cancel := timeout(r)
		defer cancel()
		select {
		case err := <-done:
			if err != nil {
				writeDocErr(w, err)
				return
			}
			spec.State = docstore.StateReady
			writeJSON(w, http.StatusOK, spec)
		case <-ctx.Done():
			spec.State = docstore.StateBuilding
			writeJSON(w, http.StatusAccepted, spec)
		}
	})
	handle("DELETE /v1/docs/{coll}/_indexes/{name}", "/v1/docs/{coll}/_indexes/{name}", func(w http.ResponseWriter, r *http.Request) {
		c, ok := coll(w, r)
		if !ok {
			return
		}
		ctx, cancel := timeout(r)
		defer cancel()
		if err := c.DropIndex(ctx, r.PathValue("name")); err != nil {
			writeDocErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]bool{"dropped": true})
	})
}

// parseIndexSpec reads an index definition body: {"fields":[...],"unique":false}.
func parseIndexSpec(name string, v any) (docstore.IndexSpec, error) {
	spec := docstore.IndexSpec{Name: name}
	m, ok := v.(map[string]any)
	if !ok {
		return spec, fmt.Errorf("%w: an index definition is a JSON object", fsm.ErrInvalid)
	}
	for k, val := range m {
		switch k {
		case "fields":
			list, ok := val.([]any)
			if !ok {
				return spec, fmt.Errorf("%w: fields is a list of strings", fsm.ErrInvalid)
			}
			for _, e := range list {
				s, ok := e.(string)
				if !ok {
					return spec, fmt.Errorf("%w: fields is a list of strings", fsm.ErrInvalid)
				}
				spec.Fields = append(spec.Fields, s)
			}
		case "unique":
			b, ok := val.(bool)
			if !ok {
				return spec, fmt.Errorf("%w: unique is true or false", fsm.ErrInvalid)
			}
			spec.Unique = b
		default:
			return spec, fmt.Errorf("%w: unknown field %q of an index definition", fsm.ErrInvalid, k)
		}
	}
	return spec, docstore.CheckIndex(spec)
}

// parseFind turns a _find body into a query.
func parseFind(v any) (docstore.Query, error) {
	var q docstore.Query
	m, ok := v.(map[string]any)
	if !ok {
		return q, fmt.Errorf("%w: a query is a JSON object", fsm.ErrInvalid)
	}
	strings := func(name string) ([]string, error) {
		raw, ok := m[name]
		if !ok {
			return nil, nil
		}
		list, ok := raw.([]any)
		if !ok {
			return nil, fmt.Errorf("%w: %s is a list of strings", fsm.ErrInvalid, name)
		}
		out := make([]string, len(list))
		for i, e := range list {
			if out[i], ok = e.(string); !ok {
				return nil, fmt.Errorf("%w: %s is a list of strings", fsm.ErrInvalid, name)
			}
		}
		return out, nil
	}
	for k := range m {
		switch k {
		case "filter", "sort", "limit", "cursor", "fields", "hint":
		default:
			return q, fmt.Errorf("%w: unknown query field %q", fsm.ErrInvalid, k)
		}
	}
	var err error
	if q.Filter, err = docstore.ParseFilter(m["filter"]); err != nil {
		return q, err
	}
	if q.Sort, err = strings("sort"); err != nil {
		return q, err
	}
	if q.Fields, err = strings("fields"); err != nil {
		return q, err
	}
	if raw, ok := m["limit"]; ok {
		num, isNum := raw.(json.Number)
		l, err := num.Int64()
		if !isNum || err != nil || l < 1 || l > docstore.MaxLimit {
			return q, fmt.Errorf("%w: limit must be between 1 and %d", fsm.ErrInvalid, docstore.MaxLimit)
		}
		q.Limit = int(l)
	}
	if raw, ok := m["cursor"]; ok {
		if q.Cursor, ok = raw.(string); !ok {
			return q, fmt.Errorf("%w: cursor is a string", fsm.ErrInvalid)
		}
	}
	if raw, ok := m["hint"]; ok {
		if q.Hint, ok = raw.(string); !ok {
			return q, fmt.Errorf("%w: hint is a string (an index name, or %s)", fsm.ErrInvalid, docstore.HintScan)
		}
	}
	return q, nil
}
