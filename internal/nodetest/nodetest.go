// Package nodetest starts one-node clusters with an HTTP API for tests of the
// packages that talk to a node.
package nodetest

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cairndb/cairn/node"
)

// Start runs a one-node cluster named name with the given number of data
// shards, fast raft timings and a data directory under t.TempDir, serves its
// HTTP API, and stops both when the test ends. It returns the node and the
// API's base URL.
func Start(t testing.TB, name string, shards int) (*node.Node, string) {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.Name = name
	cfg.DataDir = t.TempDir()
	cfg.RaftAddr = "127.0.0.1:0"
	cfg.GossipAddr = "127.0.0.1:0"
	cfg.GossipLocal = true
	cfg.Shards = shards
	cfg.Shard.HeartbeatTimeout = 150 * time.Millisecond
	cfg.Shard.ElectionTimeout = 150 * time.Millisecond
	cfg.Shard.LeaderLeaseTimeout = 100 * time.Millisecond
	n, err := node.Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		n.Close()
		t.Fatal(err)
	}
	srv := httptest.NewServer(n.Handler(nil))
	t.Cleanup(func() {
		srv.Close()
		n.Close()
	})
	return n, srv.URL
}
