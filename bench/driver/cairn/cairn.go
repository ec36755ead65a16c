// Package cairn is the side-by-side benchmark's driver for Cairn: kvnode's
// HTTP API through github.com/cairndb/cairn/client, with the benchmark's
// clients spread over the nodes given.
//
// Mapping: a put is PUT /v1/kv/{key}; a get is GET /v1/kv/{key}
// (linearizable, or consistency=stale); a scan is GET
// /v1/kv?start={key}&limit={n}, linearizable; a transaction is POST
// /v1/txn putting both keys (no comparisons); a document insert is POST
// /v1/docs/bench, a document find POST /v1/docs/bench/_find with a filter
// on grp (the planner picks the by_grp index), its documents kept as JSON
// bytes (client.FindAs with json.RawMessage); Prepare creates both indexes
// for the document workloads. The client library does not
// retry (retries would hide errors and stretch latencies); a get of an
// absent key is a success.
package cairn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/cairndb/cairn/bench/load"
	"github.com/cairndb/cairn/client"
)

// Driver sends load.Ops to a Cairn cluster. Client i of the benchmark talks
// to node i mod len(addrs), over keep-alive HTTP/1.1 connections of its own.
type Driver struct {
	clients    []*client.Client
	transports []*http.Transport
}

// New returns a driver for the nodes at addrs (host:port or URLs), sized
// for the given number of benchmark clients so that no connection is
// redialled. With routing, each client sends a key's operation straight to
// the node that leads its shard (client.WithRouting). With batch > 0, each
// client keeps at most batch get requests in flight per node and sends the
// gets that wait beyond them together (client.WithBatching); with routing
// too, all benchmark clients share one client.
func New(addrs []string, clients int, routing bool, batch int) (*Driver, error) {
	if len(addrs) == 0 {
		return nil, errors.New("cairn: no node address")
	}
	per := clients/len(addrs) + 1
	d := &Driver{}
	for _, a := range addrs {
		// A routing client talks to every node, so its idle connections
		// are bounded per node, not in all.
		tr := &http.Transport{MaxIdleConnsPerHost: per, MaxIdleConns: per * len(addrs), IdleConnTimeout: time.Minute}
		d.transports = append(d.transports, tr)
		opts := []client.Option{client.WithRetries(0, 0), client.WithHTTPClient(&http.Client{Transport: tr})}
		if routing {
			opts = append(opts, client.WithRouting())
		}
		if batch > 0 {
			opts = append(opts, client.WithBatching(batch))
		}
		d.clients = append(d.clients, client.New(a, opts...))
	}
	if routing && batch > 0 {
		// Routed and batching, the benchmark's clients share one client,
		// as the goroutines of one program would: the gets waiting for a
		// node then gather into one batch, not one per client (each
		// client routes every key to its leader anyway).
		d.clients = d.clients[:1]
	}
	return d, nil
}

// Do sends op on behalf of benchmark client worker.
func (d *Driver) Do(ctx context.Context, worker int, op load.Op) error {
	c := d.clients[worker%len(d.clients)]
	switch op.Kind {
	case load.KindPut:
		_, err := c.Put(ctx, op.Key, op.Value)
		return err
	case load.KindGet:
		var opts []client.ReadOption
		if op.Stale {
			opts = append(opts, client.Stale(0))
		}
		_, _, err := c.Get(ctx, op.Key, opts...)
		if errors.Is(err, client.ErrNotFound) {
			return nil // a key not written yet is a valid answer
		}
		return err
	case load.KindScan:
		var opts []client.ReadOption
		if op.Stale {
			opts = append(opts, client.Stale(0))
		}
		_, err := c.Scan(ctx, client.ScanRequest{Start: op.Key, Limit: op.Limit}, opts...)
		return err
	case load.KindDocInsert:
		_, _, err := c.InsertDoc(ctx, load.Collection, op.Doc.Fields())
		return err
	case load.KindDocFind:
		// Documents kept as the bytes the node sent, as etcd's driver keeps
		// the values it reads: neither decodes them.
		docs, _, err := client.FindAs[json.RawMessage](ctx, c, load.Collection, client.FindRequest{Filter: map[string]any{"grp": op.Group}})
		if err == nil && len(docs) == 0 {
			err = fmt.Errorf("cairn: no documents in grp %d (preload first)", op.Group)
		}
		return err
	case load.KindTxn:
		r, err := c.Txn(ctx, client.Txn{Then: []client.TxnOp{client.TxnPut(op.Key, op.Value), client.TxnPut(op.Key2, op.Value)}})
		if err == nil && (!r.Succeeded || len(r.Results) != 2) {
			err = fmt.Errorf("cairn: transaction answered succeeded=%v with %d results, want true and 2", r.Succeeded, len(r.Results))
		}
		return err
	}
	return fmt.Errorf("cairn: unknown operation kind %v", op.Kind)
}

// Prepare creates the collection's indexes for the document workloads (an
// index that exists with the same fields is left as it is).
func (d *Driver) Prepare(ctx context.Context, w load.Workload) error {
	if !w.Documents() {
		return nil
	}
	for _, idx := range [][2]string{{load.IndexGrp, "grp"}, {load.IndexAge, "age"}} {
		if _, err := d.clients[0].CreateIndex(ctx, load.Collection, idx[0], idx[1]); err != nil {
			return fmt.Errorf("cairn: create index %s: %w", idx[0], err)
		}
	}
	return nil
}

// Ready returns nil once every node answers /readyz.
func (d *Driver) Ready(ctx context.Context) error {
	for i, c := range d.clients {
		if err := c.Ready(ctx); err != nil {
			return fmt.Errorf("cairn: node %d: %w", i, err)
		}
	}
	return nil
}

// Close closes the idle connections.
func (d *Driver) Close() error {
	for _, tr := range d.transports {
		tr.CloseIdleConnections()
	}
	return nil
}
