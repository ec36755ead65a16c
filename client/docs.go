package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// Doc is a JSON document as the client decodes it: numbers are
// json.Number, so that integers stay exact.
type Doc = map[string]any

func docPath(coll string, id ...string) string {
	p := "/v1/docs/" + url.PathEscape(coll)
	for _, s := range id {
		p += "/" + url.PathEscape(s)
	}
	return p
}

func versionQuery(ifVersion *uint64) url.Values {
	if ifVersion == nil {
		return nil
	}
	return url.Values{"if_version": {strconv.FormatUint(*ifVersion, 10)}}
}

func decodeJSON(b []byte, v any) error {
	if err := unmarshalNumbers(b, v); err != nil {
		return fmt.Errorf("client: bad response: %w", err)
	}
	return nil
}

type docWritten struct {
	ID      string `json:"_id"`
	Version uint64 `json:"_version"`
}

// InsertDoc inserts doc (anything that marshals to a JSON object) into
// coll, which the first insert creates, and returns its _id (doc's own, or
// a generated one) and version. A taken _id is an *APIError with code
// already_exists.
func (c *Client) InsertDoc(ctx context.Context, coll string, doc any) (string, uint64, error) {
	body, err := json.Marshal(doc)
	if err != nil {
		return "", 0, err
	}
	base := c.base
	if c.routing != nil {
		var named struct {
			ID any `json:"_id"`
		}
		if unmarshal(body, &named) == nil {
			if id, ok := named.ID.(string); ok {
				base = c.baseForDoc(id)
			}
		}
	}
	b, err := c.sendVia(ctx, base, http.MethodPost, docPath(coll), nil, body, "", nil, true)
	if err != nil {
		return "", 0, err
	}
	var w docWritten
	return w.ID, w.Version, decodeJSON(b, &w)
}

// GetDoc returns a document with its managed fields (_id, _version,
// _created_at, _updated_at).
func (c *Client) GetDoc(ctx context.Context, coll, id string) (Doc, error) {
	b, err := c.sendVia(ctx, c.baseForDoc(id), http.MethodGet, docPath(coll, id), nil, nil, "", nil, false)
	if err != nil {
		return nil, err
	}
	var d Doc
	return d, decodeJSON(b, &d)
}

// ReplaceDoc replaces a document; with ifVersion, only at that version
// (else an *APIError with code version_mismatch). It returns the new
// version.
func (c *Client) ReplaceDoc(ctx context.Context, coll, id string, doc any, ifVersion *uint64) (uint64, error) {
	return c.updateDoc(ctx, http.MethodPut, coll, id, doc, ifVersion)
}

// PatchDoc applies an RFC 7386 merge patch to a document.
func (c *Client) PatchDoc(ctx context.Context, coll, id string, patch any, ifVersion *uint64) (uint64, error) {
	return c.updateDoc(ctx, http.MethodPatch, coll, id, patch, ifVersion)
}

func (c *Client) updateDoc(ctx context.Context, method, coll, id string, doc any, ifVersion *uint64) (uint64, error) {
	body, err := json.Marshal(doc)
	if err != nil {
		return 0, err
	}
	b, err := c.sendVia(ctx, c.baseForDoc(id), method, docPath(coll, id), versionQuery(ifVersion), body, "", nil, true)
	if err != nil {
		return 0, err
	}
	var w docWritten
	return w.Version, decodeJSON(b, &w)
}

// DeleteDoc deletes a document; with ifVersion, only at that version.
func (c *Client) DeleteDoc(ctx context.Context, coll, id string, ifVersion *uint64) error {
	_, err := c.sendVia(ctx, c.baseForDoc(id), http.MethodDelete, docPath(coll, id), versionQuery(ifVersion), nil, "", nil, true)
	return err
}

// FindRequest is a query (POST /v1/docs/{coll}/_find): Filter as JSON
// (see the README), Sort fields ("-" for descending), Limit, the Cursor of
// the previous page, Fields to keep, Hint.
type FindRequest struct {
	Filter any      `json:"filter,omitempty"`
	Sort   []string `json:"sort,omitempty"`
	Limit  int      `json:"limit,omitempty"`
	Cursor string   `json:"cursor,omitempty"`
	Fields []string `json:"fields,omitempty"`
	// Hint forces the plan: an index name, or "_scan" for a scan of the
	// collection.
	Hint string `json:"hint,omitempty"`
}

// FindDocs returns one page of matching documents and the cursor of the
// next ("" after the last).
func (c *Client) FindDocs(ctx context.Context, coll string, q FindRequest) ([]Doc, string, error) {
	return FindAs[Doc](ctx, c, coll, q)
}

// FindAs is FindDocs decoding each document into a T: a struct of the
// caller's (fields by their json tags, as encoding/json fills them;
// values in `any` fields come as json.Number, as in a Doc), or
// json.RawMessage to keep each document's bytes as the node sent them
// and decode them later, or never. Decoding into maps is most of what a
// find costs the client.
func FindAs[T any](ctx context.Context, c *Client, coll string, q FindRequest) ([]T, string, error) {
	body, err := json.Marshal(q)
	if err != nil {
		return nil, "", err
	}
	// A query writes nothing: POST is only its way to carry a body.
	b, err := c.sendVia(ctx, c.baseForAny(), http.MethodPost, docPath(coll, "_find"), nil, body, "", nil, false)
	if err != nil {
		return nil, "", err
	}
	var page struct {
		Docs   []T    `json:"docs"`
		Cursor string `json:"cursor"`
	}
	return page.Docs, page.Cursor, decodeJSON(b, &page)
}

// Collections lists the collections.
func (c *Client) Collections(ctx context.Context) ([]string, error) {
	b, err := c.do(ctx, http.MethodGet, "/v1/docs", nil, nil, "")
	if err != nil {
		return nil, err
	}
	var out struct {
		Collections []string `json:"collections"`
	}
	return out.Collections, decodeJSON(b, &out)
}

// DropCollection deletes a collection and its documents.
func (c *Client) DropCollection(ctx context.Context, coll string) error {
	_, err := c.do(ctx, http.MethodDelete, docPath(coll), nil, nil, "")
	return err
}

// Index is an index of a collection: its fields and state ("building" or
// "ready").
type Index struct {
	Name   string   `json:"name"`
	Fields []string `json:"fields"`
	Unique bool     `json:"unique,omitempty"`
	State  string   `json:"state"`
}

// CreateIndex creates an index on fields (dotted paths) and builds it over
// the documents already there. It returns the index's state: "ready", or
// "building" when the build outlasted the request (it goes on).
func (c *Client) CreateIndex(ctx context.Context, coll, name string, fields ...string) (string, error) {
	return c.createIndex(ctx, coll, name, false, fields)
}

// CreateUniqueIndex creates an index that no two documents may share a
// value of (across the cluster); documents missing a field, or with null
// there, are not constrained. A write that would share one is an
// *APIError with code unique_violation (ErrUniqueViolation), and so is a
// build over documents that already share one.
func (c *Client) CreateUniqueIndex(ctx context.Context, coll, name string, fields ...string) (string, error) {
	return c.createIndex(ctx, coll, name, true, fields)
}

func (c *Client) createIndex(ctx context.Context, coll, name string, unique bool, fields []string) (string, error) {
	body, _ := json.Marshal(map[string]any{"fields": fields, "unique": unique})
	b, err := c.do(ctx, http.MethodPut, docPath(coll, "_indexes", name), nil, body, "")
	if err != nil {
		return "", err
	}
	var idx Index
	return idx.State, decodeJSON(b, &idx)
}

// Indexes lists a collection's indexes.
func (c *Client) Indexes(ctx context.Context, coll string) ([]Index, error) {
	b, err := c.do(ctx, http.MethodGet, docPath(coll, "_indexes"), nil, nil, "")
	if err != nil {
		return nil, err
	}
	var out struct {
		Indexes []Index `json:"indexes"`
	}
	return out.Indexes, decodeJSON(b, &out)
}

// DropIndex removes an index and its entries.
func (c *Client) DropIndex(ctx context.Context, coll, name string) error {
	_, err := c.do(ctx, http.MethodDelete, docPath(coll, "_indexes", name), nil, nil, "")
	return err
}

// Explain answers a query as FindDocs does and returns, as JSON, how: the
// chosen plan and the others with estimated rows and costs, the documents
// read and matched, and per shard the estimated against the actual rows.
func (c *Client) Explain(ctx context.Context, coll string, q FindRequest) (json.RawMessage, error) {
	body, err := json.Marshal(q)
	if err != nil {
		return nil, err
	}
	return c.sendVia(ctx, c.baseForAny(), http.MethodPost, docPath(coll, "_explain"), nil, body, "", nil, false)
}

// Analyze refreshes a collection's statistics (documents per shard, and
// per index entries, distinct values and a histogram), which the planner
// uses to choose between indexes and a scan. It returns them as JSON.
func (c *Client) Analyze(ctx context.Context, coll string) (json.RawMessage, error) {
	return c.do(ctx, http.MethodPost, docPath(coll, "_analyze"), nil, nil, "")
}
