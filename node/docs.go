package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairndb/cairn/docstore"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/internal/jsonx"
	"github.com/cairndb/cairn/internal/par"
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

// docsAnswer is an answer made of documents (a find's page and cursor).
type docsAnswer map[string]any

// docsKV gives the document store the node's linearizable reads, scans
// and transactions.
type docsKV struct{ n *Node }

// ReadSession lets the reads of one document query share their freshness
// per shard (readSession).
func (d docsKV) ReadSession(ctx context.Context) context.Context { return withReadSession(ctx) }

// GetMany reads keys (found false for an absent one). The keys of a shard
// whose replica here the query's read session has already proved fresh
// are read together from that replica, at once and in one snapshot, one
// shard after the other; the rest are read in parallel (32 at most at
// once). A shard's keys that cannot be read together (one is held by a
// transaction's intent, say) are read one by one, as the rest are.
func (d docsKV) GetMany(ctx context.Context, keys [][]byte) ([]fsm.Item, []bool, error) {
	v, err := d.n.routingView(ctx)
	if err != nil {
		return nil, nil, err
	}
	rs := readSessionOf(ctx)
	type nearShard struct {
		replica *shard.Shard
		at      uint64
		idx     []int
	}
	var near []nearShard // by first appearance, so the order is the keys'
	var far []int
	for i, k := range keys {
		id := v.ring.Locate(k)
		s := d.n.localShard(id)
		at := uint64(0)
		if rs != nil && s != nil && !bugLocalReads {
			at = rs.point(id, s)
		}
		if at == 0 {
			far = append(far, i)
			continue
		}
		j := slices.IndexFunc(near, func(g nearShard) bool { return g.replica == s })
		if j < 0 {
			j = len(near)
			near = append(near, nearShard{replica: s, at: at})
		}
		near[j].idx = append(near[j].idx, i)
	}
	items := make([]fsm.Item, len(keys))
	found := make([]bool, len(keys))
	get := func(i int) (err error) {
		items[i], found[i], err = d.Get(ctx, keys[i])
		return err
	}
	var farErr error
	var wg sync.WaitGroup
	if len(far) > 0 {
		wg.Go(func() { farErr = par.ForEach(len(far), 32, func(j int) error { return get(far[j]) }) })
	}
	var nearErr error
	for _, g := range near {
		group := make([][]byte, len(g.idx))
		for j, i := range g.idx {
			group[j] = keys[i]
		}
		got, ok, _, err := g.replica.GetMany(ctx, group, shard.ReadOptions{After: g.at})
		if err == nil {
			for j, i := range g.idx {
				items[i], found[i] = got[j], ok[j]
			}
			continue
		}
		for _, i := range g.idx {
			if nearErr = get(i); nearErr != nil {
				break
			}
		}
		if nearErr != nil {
			break
		}
	}
	wg.Wait()
	if err := errors.Join(nearErr, farErr); err != nil {
		return nil, nil, err
	}
	return items, found, nil
}

func (d docsKV) Get(ctx context.Context, key []byte) (fsm.Item, bool, error) {
	it, err := d.n.Get(ctx, key, shard.ReadOptions{})
	if errors.Is(err, fsm.ErrNotFound) {
		return fsm.Item{}, false, nil
	}
	return it, err == nil, err
}

func (d docsKV) Scan(ctx context.Context, start, end, after []byte, limit int, reverse bool) ([]fsm.Item, bool, error) {
	items, cursor, err := d.n.Scan(ctx, ScanOptions{Start: start, End: end, Cursor: after, Limit: limit, Reverse: reverse}, shard.ReadOptions{})
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

// decodeJSONBody reads a JSON body (bounded by docRoutes) and decodes it
// (numbers as json.Number). Errors wrap fsm.ErrTooLarge or fsm.ErrInvalid.
func decodeJSONBody(r *http.Request) (any, error) {
	body, err := readBounded(r.Body)
	if err != nil {
		return nil, err
	}
	if err := checkJSONText(body, maxJSONDepth); err != nil {
		return nil, fmt.Errorf("%w: %v", fsm.ErrInvalid, err)
	}
	var v any
	if err := jsonx.Decode(body, &v, jsonx.Options{Numbers: true}); err != nil {
		return nil, fmt.Errorf("%w: body is not one JSON value: %v", fsm.ErrInvalid, err)
	}
	return v, nil
}

// decodeDoc reads a body that must be a JSON object.
func decodeDoc(r *http.Request) (docstore.Doc, error) {
	v, err := decodeJSONBody(r)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: a document is a JSON object", fsm.ErrInvalid)
	}
	return docstore.Doc(m), nil
}

// decodeFind reads a _find or _explain body.
func decodeFind(r *http.Request) (docstore.Query, error) {
	v, err := decodeJSONBody(r)
	if err != nil {
		return docstore.Query{}, err
	}
	return parseFind(v)
}

// ifVersion reads the optional if_version parameter.
func ifVersion(r *http.Request) (*uint64, error) {
	s := r.URL.Query().Get("if_version")
	if s == "" {
		return nil, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: if_version must be a non-negative integer", fsm.ErrInvalid)
	}
	return &v, nil
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

// docCall answers one call of the documents API: the status and body
// to write, or an error.
type docCall func(ctx context.Context, c *docstore.Collection, r *http.Request) (int, any, error)

// docRoutes registers the documents API. Each call gets the collection
// named in its path (checked; nil for /v1/docs) and runs under the
// request timeout; its error is written with the API's code.
func (n *Node) docRoutes(handle func(pattern, route string, h http.HandlerFunc)) {
	route := func(pattern string, call docCall) {
		handle(pattern, pattern[strings.IndexByte(pattern, ' ')+1:], func(w http.ResponseWriter, r *http.Request) {
			var c *docstore.Collection
			if name := r.PathValue("coll"); name != "" {
				if err := docstore.CheckName(name); err != nil {
					writeDocErr(w, err)
					return
				}
				c = n.docs.Collection(name)
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
			ctx, cancel := context.WithTimeout(r.Context(), n.cfg.RequestTimeout)
			defer cancel()
			status, body, err := call(ctx, c, r)
			if err != nil {
				writeDocErr(w, err)
				return
			}
			if a, ok := body.(docsAnswer); ok {
				// Documents: the same bytes as writeJSON's, in a fraction
				// of its time (docstore.EncodeJSON).
				b, err := docstore.EncodeJSON(map[string]any(a))
				if err != nil {
					writeError(w, http.StatusInternalServerError, "internal", "encode the answer: "+err.Error(), "")
					return
				}
				writeJSONBytes(w, status, b)
				return
			}
			writeJSON(w, status, body)
		})
	}
	ok := func(body any, err error) (int, any, error) { return http.StatusOK, body, err }

	route("GET /v1/docs", func(ctx context.Context, _ *docstore.Collection, _ *http.Request) (int, any, error) {
		names, err := n.docs.Collections(ctx)
		return ok(map[string]any{"collections": append([]string{}, names...)}, err)
	})
	route("DELETE /v1/docs/{coll}", func(ctx context.Context, c *docstore.Collection, _ *http.Request) (int, any, error) {
		return ok(map[string]bool{"dropped": true}, c.Drop(ctx))
	})
	route("POST /v1/docs/{coll}", func(ctx context.Context, c *docstore.Collection, r *http.Request) (int, any, error) {
		d, err := decodeDoc(r)
		if err != nil {
			return 0, nil, err
		}
		id, v, err := c.Insert(ctx, d)
		return http.StatusCreated, map[string]any{docstore.FieldID: id, docstore.FieldVersion: v}, err
	})
	route("GET /v1/docs/{coll}/{id}", func(ctx context.Context, c *docstore.Collection, r *http.Request) (int, any, error) {
		return ok(c.Get(ctx, r.PathValue("id")))
	})
	update := func(patch bool) docCall {
		return func(ctx context.Context, c *docstore.Collection, r *http.Request) (int, any, error) {
			iv, err := ifVersion(r)
			if err != nil {
				return 0, nil, err
			}
			d, err := decodeDoc(r)
			if err != nil {
				return 0, nil, err
			}
			write := c.Replace
			if patch {
				write = c.Patch
			}
			v, err := write(ctx, r.PathValue("id"), d, iv)
			return ok(map[string]any{docstore.FieldID: r.PathValue("id"), docstore.FieldVersion: v}, err)
		}
	}
	route("PUT /v1/docs/{coll}/{id}", update(false))
	route("PATCH /v1/docs/{coll}/{id}", update(true))
	route("DELETE /v1/docs/{coll}/{id}", func(ctx context.Context, c *docstore.Collection, r *http.Request) (int, any, error) {
		iv, err := ifVersion(r)
		if err != nil {
			return 0, nil, err
		}
		return ok(map[string]bool{"deleted": true}, c.Delete(ctx, r.PathValue("id"), iv))
	})
	route("POST /v1/docs/{coll}/_find", func(ctx context.Context, c *docstore.Collection, r *http.Request) (int, any, error) {
		q, err := decodeFind(r)
		if err != nil {
			return 0, nil, err
		}
		docs, cursor, err := c.Find(ctx, q)
		out := docsAnswer{"docs": append([]docstore.Doc{}, docs...)}
		if cursor != "" {
			out["cursor"] = cursor
		}
		return ok(out, err)
	})
	route("POST /v1/docs/{coll}/_explain", func(ctx context.Context, c *docstore.Collection, r *http.Request) (int, any, error) {
		q, err := decodeFind(r)
		if err != nil {
			return 0, nil, err
		}
		return ok(c.Explain(ctx, q))
	})
	route("POST /v1/docs/{coll}/_analyze", func(ctx context.Context, c *docstore.Collection, _ *http.Request) (int, any, error) {
		return ok(c.Analyze(ctx))
	})
	route("GET /v1/docs/{coll}/_indexes", func(ctx context.Context, c *docstore.Collection, _ *http.Request) (int, any, error) {
		list, err := c.Indexes(ctx)
		return ok(map[string]any{"indexes": list}, err)
	})
	route("PUT /v1/docs/{coll}/_indexes/{name}", func(ctx context.Context, c *docstore.Collection, r *http.Request) (int, any, error) {
		v, err := decodeJSONBody(r)
		if err != nil {
			return 0, nil, err
		}
		spec, err := parseIndexSpec(r.PathValue("name"), v)
		if err != nil {
			return 0, nil, err
		}
		// A build reads the whole collection: it may take longer than a
		// request. It runs under the node's lifetime; the answer comes
		// when it is ready or the request times out (the build goes on).
		done := make(chan error, 1)
		go func() { done <- c.CreateIndex(n.ctx, spec) }()
		select {
		case err := <-done:
			spec.State = docstore.StateReady
			return ok(spec, err)
		case <-ctx.Done():
			spec.State = docstore.StateBuilding
			return http.StatusAccepted, spec, nil
		}
	})
	route("DELETE /v1/docs/{coll}/_indexes/{name}", func(ctx context.Context, c *docstore.Collection, r *http.Request) (int, any, error) {
		return ok(map[string]bool{"dropped": true}, c.DropIndex(ctx, r.PathValue("name")))
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
