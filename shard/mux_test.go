package shard

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

func TestMuxRoutesByKindAndShard(t *testing.T) {
	m, err := Listen("127.0.0.1:0", MuxConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	a, err := m.Listen(KindRaft, 7)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Listen(KindRPC, 7)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Listen(KindRaft, 7); err == nil {
		t.Fatal("a route was registered twice")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for _, tc := range []struct {
		l    *Layer
		kind byte
		msg  string
	}{{a, KindRaft, "to raft"}, {b, KindRPC, "to rpc"}} {
		c, err := m.Dial(ctx, m.Addr().String(), tc.kind, 7)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte(tc.msg)); err != nil {
			t.Fatal(err)
		}
		s, err := tc.l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(tc.msg))
		if _, err := io.ReadFull(s, got); err != nil || string(got) != tc.msg {
			t.Fatalf("route %d got %q, %v", tc.kind, got, err)
		}
		c.Close()
		s.Close()
	}
}

func TestMuxClosesGarbageAndUnknownRoutes(t *testing.T) {
	m, err := Listen("127.0.0.1:0", MuxConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Listen(KindRaft, 1); err != nil {
		t.Fatal(err)
	}
	for name, hdr := range map[string][]byte{
		"garbage":       []byte("GET / HTTP/1.1\r\n\r\n"),
		"unknown shard": {'C', 'N', KindRaft, 0, 0, 0, 0, 0, 0, 0, 9},
		"unknown kind":  {'C', 'N', 77, 0, 0, 0, 0, 0, 0, 0, 1},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", m.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(hdr); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := c.Read(make([]byte, 1))
			var ne net.Error
			if n != 0 || err == nil || (errors.As(err, &ne) && ne.Timeout()) {
				t.Fatalf("want the connection closed by the server, got n=%d err=%v", n, err)
			}
		})
	}
}
