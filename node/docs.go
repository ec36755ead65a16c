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

	"github.com/cairndb/cairn/docstore"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/shard"
)

// Docs returns the node's document store (ARCHITECTURE §6): the same
// operations as /v1/docs, in process.
func (n *Node) Docs() *docstore.DB { return n.docs }

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

// readDocBody reads a JSON body within the limits and decodes it.
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
	if errors.Is(err, docstore.ErrExists) {
		writeError(w, http.StatusConflict, "already_exists", err.Error(), "")
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
	notYet := func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotImplemented, "not_implemented", "indexes and explain are not built yet: queries scan the collection", "")
	}
	handle("POST /v1/docs/{coll}/_explain", "/v1/docs/{coll}/_explain", notYet)
	handle("GET /v1/docs/{coll}/_indexes", "/v1/docs/{coll}/_indexes", notYet)
	handle("PUT /v1/docs/{coll}/_indexes/{name}", "/v1/docs/{coll}/_indexes/{name}", notYet)
	handle("DELETE /v1/docs/{coll}/_indexes/{name}", "/v1/docs/{coll}/_indexes/{name}", notYet)
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
		case "filter", "sort", "limit", "cursor", "fields":
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
	return q, nil
}
