package client

import (
	"context"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cairndb/cairn/docstore/keyenc"
	"github.com/cairndb/cairn/ring"
)

// WithRouting makes the client send each key's get, put and delete, and
// each document's insert (with an _id), get, replace, patch and delete,
// straight to the node that leads the shard it lives on, as the cluster's layout
// last said (GET /v1/cluster on the node given to New, read again in the
// background when a second old). That saves the hop a node makes when it
// forwards a request to a shard's leader elsewhere. Until the layout is
// known, for a shard without a known leader, and whenever a routed node
// cannot be reached, requests go to the node given to New, which routes
// them as before; answers and retries are the same either way.
//
// A transaction goes to the leader of its first key's shard. Reads that no
// one key places, scans and document finds and explains, go to the
// layout's nodes in turn, so that the node given to New does not
// coordinate every one of them (any node answers them alike).
func WithRouting() Option { return func(c *Client) { c.routing = &router{} } }

// routeTTL is how long a layout is used before it is read again.
const routeTTL = time.Second

type router struct {
	c          *Client
	table      atomic.Pointer[routeTable]
	refreshing atomic.Bool
	turn       atomic.Uint64 // the next of the nodes for baseForAny
}

type routeTable struct {
	at      time.Time
	ring    *ring.Ring
	leaders map[ring.ShardID]string // shard → base URL of its leader's node
	nodes   []string                // base URLs of the layout's nodes, sorted
}

// baseFor returns the base URL to send key's request to.
func (c *Client) baseFor(key string) string {
	if c.routing == nil {
		return c.base
	}
	return c.baseForKey([]byte(key))
}

// baseForDoc returns the base URL to send a request about document id to
// ("": not routed). A document lives on the shard its _id places it on:
// its keys carry the keyenc encoding of the _id as their routing tag (see
// docstore), which is all the ring looks at.
func (c *Client) baseForDoc(id string) string {
	if c.routing == nil || id == "" {
		return c.base
	}
	tag, err := keyenc.Append(nil, id)
	if err != nil {
		return c.base
	}
	return c.baseForKey(ring.AppendRouted([]byte{ring.RoutedPrefix, 'd'}, tag))
}

// baseForAny returns the base URL for a read that no one key places: the
// layout's nodes in turn, or New's node while the layout is not known.
func (c *Client) baseForAny() string {
	if c.routing == nil {
		return c.base
	}
	t := c.routing.current()
	if t == nil || len(t.nodes) == 0 {
		return c.base
	}
	return t.nodes[c.routing.turn.Add(1)%uint64(len(t.nodes))]
}

// current returns the routes, and has them read again in the background
// when they are missing or older than routeTTL.
func (r *router) current() *routeTable {
	t := r.table.Load()
	if (t == nil || time.Since(t.at) > routeTTL) && r.refreshing.CompareAndSwap(false, true) {
		go r.refresh()
	}
	return t
}

func (c *Client) baseForKey(key []byte) string {
	t := c.routing.current()
	if t == nil || t.ring == nil {
		return c.base
	}
	if base := t.leaders[t.ring.Locate(key)]; base != "" {
		return base
	}
	return c.base
}

// forget drops the routes (a routed node could not be reached).
func (r *router) forget() { r.table.Store(nil) }

// refresh reads the layout from New's node.
func (r *router) refresh() {
	defer r.refreshing.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.c.base+"/v1/cluster", nil)
	if err != nil {
		return
	}
	resp, err := r.c.hc.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	var cs struct {
		Ring  []byte `json:"ring"`
		Nodes []struct {
			Name     string `json:"name"`
			HTTPAddr string `json:"http_addr"`
		} `json:"nodes"`
		Shards []struct {
			Shard  uint64 `json:"shard"`
			Leader string `json:"leader"`
		} `json:"shards"`
	}
	if resp.StatusCode != http.StatusOK {
		return
	}
	if b, err := io.ReadAll(resp.Body); err != nil || unmarshal(b, &cs) != nil {
		return
	}
	t := &routeTable{at: time.Now(), leaders: map[ring.ShardID]string{}}
	if t.ring, err = ring.Decode(cs.Ring); err != nil {
		t.ring = nil // an old server without the ring: requests go to New's node
	}
	scheme, _, _ := strings.Cut(r.c.base, "://")
	addrs := map[string]string{}
	for _, n := range cs.Nodes {
		if host, port, err := net.SplitHostPort(n.HTTPAddr); err == nil && port != "" && host != "" && !net.ParseIP(host).IsUnspecified() {
			addrs[n.Name] = scheme + "://" + n.HTTPAddr
		}
	}
	for _, s := range cs.Shards {
		if base := addrs[s.Leader]; base != "" {
			t.leaders[ring.ShardID(s.Shard)] = base
		}
	}
	t.nodes = slices.Sorted(maps.Values(addrs))
	r.table.Store(t)
}
