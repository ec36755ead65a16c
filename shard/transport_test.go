package shard

import (
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// A heartbeat reaches raft's main loop (the consumer channel), never a
// heartbeat handler on the transport's goroutine; the bare transport would
// hand it to the handler.
func TestHeartbeatsTakeTheMainLoop(t *testing.T) {
	for _, wrapped := range []bool{true, false} {
		inner, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 5*time.Second, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { inner.Close() })
		var server raft.Transport = inner
		if wrapped {
			server = serialTransport{NetworkTransport: inner}
		}
		fast := make(chan struct{}, 1)
		server.SetHeartbeatHandler(func(rpc raft.RPC) {
			fast <- struct{}{}
			rpc.Respond(&raft.AppendEntriesResponse{Term: 7}, nil)
		})
		client, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 5*time.Second, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.Close() })

		done := make(chan error, 1)
		go func() {
			var resp raft.AppendEntriesResponse
			hb := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("leader"), Addr: []byte(client.LocalAddr())}, Term: 7}
			done <- client.AppendEntries("follower", server.LocalAddr(), hb, &resp)
		}()
		select {
		case rpc := <-server.Consumer():
			if !wrapped {
				t.Fatal("the bare transport sent a heartbeat to the main loop: the test no longer shows the fast path")
			}
			if req, ok := rpc.Command.(*raft.AppendEntriesRequest); !ok || req.Term != 7 || len(req.Entries) != 0 {
				t.Fatalf("main loop got %#v", rpc.Command)
			}
			rpc.Respond(&raft.AppendEntriesResponse{Term: 7}, nil)
		case <-fast:
			if wrapped {
				t.Fatal("a heartbeat went to the transport's fast path")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the heartbeat arrived nowhere")
		}
		if err := <-done; err != nil {
			t.Fatalf("heartbeat: %v", err)
		}
	}
}
