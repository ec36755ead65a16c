package client_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cairndb/cairn/client"
)

func TestClientTxn(t *testing.T) {
	c := startNode(t)
	ctx := t.Context()
	v, err := c.Put(ctx, "acct", []byte("5"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Txn(ctx, client.Txn{
		If:   []client.Compare{client.VersionIs("acct", v), client.ValueIs("acct", []byte("5")), client.Exists("acct"), client.VersionBelow("acct", v+1), client.VersionAbove("acct", v-1)},
		Then: []client.TxnOp{client.TxnDelete("acct"), client.TxnGet("acct"), client.TxnPut("acct", []byte("7")), client.TxnGet("acct")},
		Else: []client.TxnOp{client.TxnGet("acct")},
	}, client.RequestID("txn-a"))
	if err != nil || !r.Succeeded || len(r.Results) != 4 {
		t.Fatalf("txn: %+v %v", r, err)
	}
	if !r.Results[0].Deleted || r.Results[1].Found || r.Results[2].Version <= v || !r.Results[3].Found || string(r.Results[3].Value) != "7" {
		t.Fatalf("results %+v", r.Results)
	}
	again, err := c.Txn(ctx, client.Txn{If: []client.Compare{client.Absent("acct")}, Then: []client.TxnOp{client.TxnGet("acct")}, Else: []client.TxnOp{client.TxnGet("acct")}})
	if err != nil || again.Succeeded || string(again.Results[0].Value) != "7" {
		t.Fatalf("else branch: %+v %v", again, err)
	}
	if _, err := c.Txn(ctx, client.Txn{}); !errors.Is(err, client.ErrBadRequest) {
		t.Fatalf("empty txn: %v", err)
	}
	// Keys on both shards of the node: one transaction writes them all.
	var ops []client.TxnOp
	for i := range 8 {
		ops = append(ops, client.TxnPut(fmt.Sprint("y", i), []byte{byte('0' + i)}))
	}
	r, err = c.Txn(ctx, client.Txn{If: []client.Compare{client.Absent("y0")}, Then: ops})
	if err != nil || !r.Succeeded || len(r.Results) != 8 {
		t.Fatalf("txn over shards: %+v %v", r, err)
	}
	for i := range 8 {
		v, ver, err := c.Get(ctx, fmt.Sprint("y", i))
		if err != nil || string(v) != string(rune('0'+i)) || ver != r.Results[i].Version {
			t.Fatalf("y%d after the txn: %q@%d %v, want version %d", i, v, ver, err, r.Results[i].Version)
		}
	}
	// The empty value is a value a comparison can name.
	if _, err := c.Put(ctx, "x", nil); err != nil {
		t.Fatal(err)
	}
	r, err = c.Txn(ctx, client.Txn{If: []client.Compare{client.ValueIs("x", nil)}, Then: []client.TxnOp{client.TxnGet("x")}})
	if err != nil || !r.Succeeded || !r.Results[0].Found || len(r.Results[0].Value) != 0 {
		t.Fatalf("comparison with the empty value: %+v %v", r, err)
	}
}
