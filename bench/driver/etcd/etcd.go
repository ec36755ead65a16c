// Package etcd is the side-by-side benchmark's driver for etcd, through
// clientv3 (v3.5, which speaks etcd 3.4's API).
//
// Mapping: a put is Put; a get is a linearizable Range of one key (etcd's
// default), or a serializable one for a stale get; a scan is a Range from
// the key to the end of the benchmark's key space with a limit; a
// transaction is a Txn without comparisons putting both keys. Gets of
// absent keys answer with no kvs, which is a success.
//
// Documents are emulated as a document store on etcd would keep them: a
// document under doc/bench/<id> (the same JSON Cairn stores) and one key
// per index entry, idx/bench/by_grp/<grp, 10 digits>/<id> and
// idx/bench/by_age/<age, 3 digits>/<id>. An insert is one Txn that puts all
// three if the document's key has never been created (so a taken _id
// fails, as in Cairn); a find reads the grp's index range, then the
// documents it names in one Txn of gets: two round trips.
//
// Connections: the driver opens Conns gRPC connections; connection j is
// pinned to endpoint j mod len(endpoints), and benchmark client i sends on
// connection i mod Conns. Use a multiple of the number of endpoints to
// spread the load evenly.
package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cairndb/cairn/bench/load"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Driver sends load.Ops to an etcd cluster.
type Driver struct {
	endpoints []string
	conns     []*clientv3.Client
	admin     *clientv3.Client // every endpoint; readiness, compaction, defrag
}

// New connects to endpoints ("127.0.0.1:2379" or URLs) with conns gRPC
// connections in all (at least one).
func New(endpoints []string, conns int) (*Driver, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("etcd: no endpoint")
	}
	conns = max(conns, 1)
	d := &Driver{endpoints: endpoints}
	cfg := func(eps []string) clientv3.Config {
		return clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	}
	var err error
	if d.admin, err = clientv3.New(cfg(endpoints)); err != nil {
		return nil, fmt.Errorf("etcd: connect: %w", err)
	}
	for j := range conns {
		c, err := clientv3.New(cfg([]string{endpoints[j%len(endpoints)]}))
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("etcd: connect to %s: %w", endpoints[j%len(endpoints)], err)
		}
		d.conns = append(d.conns, c)
	}
	return d, nil
}

// Op is the clientv3 operation that carries op.
func Op(op load.Op) (clientv3.Op, error) {
	switch op.Kind {
	case load.KindPut:
		return clientv3.OpPut(op.Key, string(op.Value)), nil
	case load.KindGet:
		if op.Stale {
			return clientv3.OpGet(op.Key, clientv3.WithSerializable()), nil
		}
		return clientv3.OpGet(op.Key), nil
	case load.KindScan:
		opts := []clientv3.OpOption{clientv3.WithRange(load.KeyPrefixEnd), clientv3.WithLimit(int64(op.Limit))}
		if op.Stale {
			opts = append(opts, clientv3.WithSerializable())
		}
		return clientv3.OpGet(op.Key, opts...), nil
	case load.KindDocInsert:
		b, err := json.Marshal(op.Doc.Fields())
		if err != nil {
			return clientv3.Op{}, err
		}
		key := DocKey(op.Doc.ID)
		return clientv3.OpTxn(
			[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)},
			[]clientv3.Op{
				clientv3.OpPut(key, string(b)),
				clientv3.OpPut(GroupPrefix(op.Doc.Group)+op.Doc.ID, ""),
				clientv3.OpPut(fmt.Sprintf("idx/%s/%s/%03d/%s", load.Collection, load.IndexAge, op.Doc.Age, op.Doc.ID), ""),
			}, nil), nil
	case load.KindDocFind:
		return clientv3.OpGet(GroupPrefix(op.Group), clientv3.WithPrefix()), nil
	case load.KindTxn:
		return clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpPut(op.Key, string(op.Value)), clientv3.OpPut(op.Key2, string(op.Value))}, nil), nil
	}
	return clientv3.Op{}, fmt.Errorf("etcd: unknown operation kind %v", op.Kind)
}

// Do sends op on behalf of benchmark client worker.
func (d *Driver) Do(ctx context.Context, worker int, op load.Op) error {
	eop, err := Op(op)
	if err != nil {
		return err
	}
	conn := d.conns[worker%len(d.conns)]
	resp, err := conn.Do(ctx, eop)
	if err != nil {
		return err
	}
	switch op.Kind {
	case load.KindTxn:
		if t := resp.Txn(); t == nil || !t.Succeeded || len(t.Responses) != 2 {
			return fmt.Errorf("etcd: transaction did not answer success with 2 responses: %v", t)
		}
	case load.KindDocInsert:
		if t := resp.Txn(); t == nil || !t.Succeeded {
			return fmt.Errorf("etcd: document %s exists", op.Doc.ID)
		}
	case load.KindDocFind:
		// The index range names the documents; one Txn reads them all.
		var gets []clientv3.Op
		for _, kv := range resp.Get().Kvs {
			id := strings.TrimPrefix(string(kv.Key), GroupPrefix(op.Group))
			gets = append(gets, clientv3.OpGet(DocKey(id)))
		}
		if len(gets) == 0 {
			return fmt.Errorf("etcd: no documents in grp %d (preload first)", op.Group)
		}
		t, err := conn.Txn(ctx).Then(gets...).Commit()
		if err != nil {
			return err
		}
		for i, r := range t.Responses {
			if rr := r.GetResponseRange(); rr == nil || len(rr.Kvs) != 1 {
				return fmt.Errorf("etcd: document %s named by the grp %d index is missing", gets[i].KeyBytes(), op.Group)
			}
		}
	}
	return nil
}

// DocKey is where the emulation keeps document id.
func DocKey(id string) string { return "doc/" + load.Collection + "/" + id }

// GroupPrefix starts the by_grp index entries of grp.
func GroupPrefix(grp int) string {
	return fmt.Sprintf("idx/%s/%s/%010d/", load.Collection, load.IndexGrp, grp)
}

// Prepare has nothing to create: the emulation's keys need no schema.
func (d *Driver) Prepare(context.Context, load.Workload) error { return nil }

// Ready returns nil once every member answers its status and a
// linearizable read succeeds (so the cluster has a leader).
func (d *Driver) Ready(ctx context.Context) error {
	for _, ep := range d.endpoints {
		if _, err := d.admin.Status(ctx, ep); err != nil {
			return fmt.Errorf("etcd: status of %s: %w", ep, err)
		}
	}
	if _, err := d.admin.Get(ctx, "health"); err != nil {
		return fmt.Errorf("etcd: linearizable read: %w", err)
	}
	return nil
}

// Leader returns the endpoint of the member that leads.
func (d *Driver) Leader(ctx context.Context) (string, error) {
	for _, ep := range d.endpoints {
		st, err := d.admin.Status(ctx, ep)
		if err != nil {
			return "", fmt.Errorf("etcd: status of %s: %w", ep, err)
		}
		if st.Leader != 0 && st.Leader == st.Header.MemberId {
			return ep, nil
		}
	}
	return "", errors.New("etcd: no member leads")
}

// Compact compacts the keyspace to the current revision (waiting until the
// compaction is applied) and defragments every member, so that the data on
// disk afterwards holds the live keys only.
func (d *Driver) Compact(ctx context.Context) error {
	resp, err := d.admin.Get(ctx, load.KeyPrefix, clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("etcd: revision before compaction: %w", err)
	}
	_, err = d.admin.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical())
	if err != nil && !errors.Is(err, rpctypes.ErrCompacted) { // compacted there already: nothing written since
		return fmt.Errorf("etcd: compact to %d: %w", resp.Header.Revision, err)
	}
	for _, ep := range d.endpoints {
		if _, err := d.admin.Defragment(ctx, ep); err != nil {
			return fmt.Errorf("etcd: defragment %s: %w", ep, err)
		}
	}
	return nil
}

// Close closes every connection.
func (d *Driver) Close() error {
	var errs []error
	for _, c := range append(d.conns, d.admin) {
		if c != nil {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}
