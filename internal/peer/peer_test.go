package peer

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairndb/cairn/fsm"
)

type fakeHandler struct {
	block   chan struct{} // Propose waits on it when set
	entered chan struct{}
	calls   atomic.Int64
}

func (h *fakeHandler) Propose(_ context.Context, a *ProposeArgs, r *ProposeReply) {
	h.calls.Add(1)
	if h.block != nil {
		h.entered <- struct{}{}
		<-h.block // a handler stuck in a dying process: deaf to ctx
	}
	cmds, err := fsm.DecodeGroup(a.Command)
	if err != nil || len(cmds) != 1 {
		r.Err = &Error{Code: CodeInvalid, Message: "bad command"}
		return
	}
	op := cmds[0].Ops[0]
	if op.IfVersion == nil || *op.IfVersion != 0 {
		r.Err = &Error{Code: CodeInvalid, Message: "condition lost on the wire"}
		return
	}
	r.Result = fsm.Result{Ops: []fsm.OpResult{{Version: a.Shard*100 + uint64(len(op.Value))}}}
}

func (h *fakeHandler) Read(_ context.Context, a *ReadArgs, r *ReadReply) {
	if string(a.Key) == "missing" {
		r.Err = &Error{Code: CodeNotLeader, Leader: "10.0.0.9:7071"}
		return
	}
	r.Items = []fsm.Item{{Key: a.Key, Value: []byte("v"), Version: 7}}
}

func (h *fakeHandler) Status(context.Context, *StatusArgs, *StatusReply) {}

func (h *fakeHandler) Transfer(context.Context, *TransferArgs, *TransferReply) {}

func serve(t *testing.T, h Handler) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Serve(ln, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, ln.Addr().String()
}

func tcpPool(t *testing.T) *Pool {
	var d net.Dialer
	p := NewPool(func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }, nil)
	t.Cleanup(func() { p.Close() })
	return p
}

func putIfAbsent(shard uint64, value string) *ProposeArgs {
	return &ProposeArgs{Shard: shard, Timeout: time.Second, Command: fsm.EncodeGroup([]fsm.Command{{
		RequestID: "r1", Ops: []fsm.Op{fsm.Put([]byte("k"), []byte(value)).If(0)},
	}})}
}

func TestCallsCarryResultsAndErrors(t *testing.T) {
	_, addr := serve(t, &fakeHandler{})
	p := tcpPool(t)
	ctx := t.Context()
	var pr ProposeReply
	if err := p.Call(ctx, addr, "Propose", putIfAbsent(3, "abcd"), &pr); err != nil || pr.Err != nil {
		t.Fatalf("propose: %v %v", err, pr.Err)
	}
	if pr.Result.Ops[0].Version != 304 {
		t.Fatalf("result %+v, want version 304", pr.Result)
	}
	var rr ReadReply
	if err := p.Call(ctx, addr, "Read", &ReadArgs{Key: []byte("missing")}, &rr); err != nil {
		t.Fatal(err)
	}
	if rr.Err == nil || rr.Err.Code != CodeNotLeader || rr.Err.Leader != "10.0.0.9:7071" {
		t.Fatalf("error reply %+v", rr.Err)
	}
	rr = ReadReply{}
	if err := p.Call(ctx, addr, "Read", &ReadArgs{Key: []byte("k")}, &rr); err != nil || len(rr.Items) != 1 || rr.Items[0].Version != 7 {
		t.Fatalf("read: %v %+v", err, rr)
	}
}

func TestUnreachablePeerWasNotSent(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	var pr ProposeReply
	err := tcpPool(t).Call(t.Context(), addr, "Propose", putIfAbsent(1, "x"), &pr)
	var te *TransportError
	if !errors.As(err, &te) || te.Sent {
		t.Fatalf("call to a closed port: %v, want an unsent transport error", err)
	}
}

// A peer that dies while handling a call leaves the outcome unknown (Sent),
// and the next call dials a fresh connection.
func TestPeerDyingMidCallIsSentAndRedialled(t *testing.T) {
	h := &fakeHandler{block: make(chan struct{}), entered: make(chan struct{}, 1)}
	srv, addr := serve(t, h)
	p := tcpPool(t)
	errc := make(chan error, 1)
	go func() {
		var pr ProposeReply
		errc <- p.Call(t.Context(), addr, "Propose", putIfAbsent(1, "x"), &pr)
	}()
	<-h.entered
	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }()
	var te *TransportError
	if err := <-errc; !errors.As(err, &te) || !te.Sent {
		t.Fatalf("call cut off mid-flight: %v, want a sent transport error", err)
	}
	close(h.block)
	<-closed
	h2 := &fakeHandler{}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s not reusable right away: %v", addr, err)
	}
	s2, _ := Serve(ln, h2)
	defer s2.Close()
	var pr ProposeReply
	if err := p.Call(t.Context(), addr, "Propose", putIfAbsent(1, "x"), &pr); err != nil || pr.Err != nil {
		t.Fatalf("call after the peer came back: %v %v", err, pr.Err)
	}
	if h2.calls.Load() != 1 {
		t.Fatalf("new server saw %d calls", h2.calls.Load())
	}
}

// A connection that goes silent (a partition: accepted, never answered) is
// dropped when a call times out on it, so later calls do not queue behind it.
func TestSilentConnectionIsDroppedOnTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c // held open, never read
		}
	}()
	p := tcpPool(t)
	for i := range 2 {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		var pr ProposeReply
		err := p.Call(ctx, ln.Addr().String(), "Propose", putIfAbsent(1, "x"), &pr)
		cancel()
		var te *TransportError
		if !errors.As(err, &te) || !te.Sent || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("call %d to a silent peer: %v", i, err)
		}
	}
	if n := len(accepted); n != 2 {
		t.Fatalf("%d connections dialled for 2 timed-out calls; the silent one was reused", n)
	}
	for range len(accepted) {
		(<-accepted).Close()
	}
}

// After a peer closed the connection, the next call dials again instead of
// failing on the dead client (which would look like a call that may have
// been delivered).
func TestClosedConnectionIsNotMistakenForASentCall(t *testing.T) {
	h := &fakeHandler{}
	srv, addr := serve(t, h)
	p := tcpPool(t)
	var pr ProposeReply
	if err := p.Call(t.Context(), addr, "Propose", putIfAbsent(1, "x"), &pr); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	c := p.clients[addr]
	deadline := time.Now().Add(5 * time.Second)
	for !c.conn.broken.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the pool did not notice the closed connection")
		}
		time.Sleep(5 * time.Millisecond) // wait for net/rpc's reader to see EOF
	}
	err := p.Call(t.Context(), addr, "Propose", putIfAbsent(1, "x"), &pr)
	var te *TransportError
	if !errors.As(err, &te) || te.Sent {
		t.Fatalf("call to a peer that closed: %v, want an unsent transport error (redial refused)", err)
	}
}
