package node_test

import (
	"context"
	"fmt"
	"os"

	"github.com/cairndb/cairn/node"
	"github.com/cairndb/cairn/shard"
)

// A one-node cluster embedded in a Go program.
func ExampleStart() {
	dir, err := os.MkdirTemp("", "cairn-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	cfg := node.DefaultConfig()
	cfg.Name = "example"
	cfg.DataDir = dir
	cfg.RaftAddr = "127.0.0.1:0"   // any free port
	cfg.GossipAddr = "127.0.0.1:0" // gossip: other nodes can join through it
	ctx := context.Background()
	n, err := node.Start(ctx, cfg)
	if err != nil {
		panic(err)
	}
	defer n.Close()

	if _, err := n.Put(ctx, []byte("greeting"), []byte("hello"), node.WriteOptions{}); err != nil {
		panic(err)
	}
	item, err := n.Get(ctx, []byte("greeting"), shard.ReadOptions{}) // linearizable
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s\n", item.Value)
	// Output: hello
}
