// Package peer carries node-to-node requests on a node's raft port: writes
// and reads forwarded to the node that leads a shard, and shard status. It is
// Go's net/rpc (requests multiplexed over one connection per peer, gob
// encoding) behind a small interface, so that the node package neither sees
// nor exports wire types.
//
// A call's failure says whether the request may have reached the peer
// (TransportError.Sent): a forwarded write that may have been sent has an
// unknown outcome, and only its request ID makes a retry safe.
package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/rpc"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/shard"
)

// ProposeArgs forwards a command to the leader of Shard. Command is
// fsm.EncodeGroup of exactly one command (the fuzzed encoding keeps
// conditions such as "version 0" exact, which gob would drop).
type ProposeArgs struct {
	Shard   uint64
	Epoch   uint64 // ring epoch the sender routed with
	Command []byte
	Timeout time.Duration
}

// ProposeReply carries the applied result, or Err.
type ProposeReply struct {
	Result fsm.Result
	Err    *Error
}

// ReadArgs forwards a get (Scan false) or a scan of Shard.
type ReadArgs struct {
	Shard        uint64
	Epoch        uint64
	Key          []byte
	Scan         bool
	Prefix       []byte
	Start, End   []byte
	After        []byte
	Limit        int
	Reverse      bool
	Stale        bool
	MaxStaleness time.Duration
	Timeout      time.Duration
}

// ReadReply carries the items read (one for a get), or Err.
type ReadReply struct {
	Items []fsm.Item
	More  bool
	Err   *Error
}

// StatusArgs asks for a replica's status; with Replica set, a leader also
// answers whether that replica is out of the group for good.
type StatusArgs struct {
	Shard   uint64
	Replica string
}

// StatusReply is the status of the peer's replica of the shard.
type StatusReply struct {
	Hosted   bool
	Status   shard.Status
	Excludes bool
	Err      *Error
}

// TransferArgs asks the leader of Shard to hand its leadership to the
// replica on node To ("" for any other voter).
type TransferArgs struct {
	Shard   uint64
	To      string
	Timeout time.Duration
}

// TransferReply names the shard's leader after the transfer, or Err.
type TransferReply struct {
	Leader string
	Err    *Error
}

// Error is a failure the peer reports in a reply. Code is one of the
// constants below; Leader and Epoch carry what the caller needs to retry.
type Error struct {
	Code    string
	Message string
	Leader  string // not_leader: the leader's raft address, if known
	Epoch   uint64 // wrong_shard: the peer's ring epoch
	// locked: the key and the transaction holding it, and the shard of
	// that transaction's record.
	Key         []byte
	TxnID       string
	RecordShard uint64
	LockSince   uint64 // when the intent was written (unix ms)
	// locked, from a get: the key's committed state.
	Found   bool
	Value   []byte
	Version uint64
}

// Error codes.
const (
	CodeNotLeader      = "not_leader"
	CodeUnavailable    = "unavailable"
	CodeOutcomeUnknown = "outcome_unknown"
	CodeInvalid        = "invalid"
	CodeTooLarge       = "too_large"
	CodeNotFound       = "not_found"
	CodeTooStale       = "too_stale"
	CodeWrongShard     = "wrong_shard"
	CodeNotHosted      = "not_hosted"
	CodeLocked         = "locked"
)

func (e *Error) Error() string { return fmt.Sprintf("peer: %s: %s", e.Code, e.Message) }

// Handler serves requests; ctx ends at the request's timeout or when the
// server closes.
type Handler interface {
	Propose(ctx context.Context, a *ProposeArgs, r *ProposeReply)
	Read(ctx context.Context, a *ReadArgs, r *ReadReply)
	Status(ctx context.Context, a *StatusArgs, r *StatusReply)
	Transfer(ctx context.Context, a *TransferArgs, r *TransferReply)
}

// maxTimeout bounds a request's timeout, whatever the sender asked for.
const maxTimeout = time.Minute

// Server serves a Handler on connections accepted from a listener.
type Server struct {
	h      Handler
	ln     net.Listener
	rpc    *rpc.Server
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

// service adapts Handler to net/rpc's method shape.
type service struct{ s *Server }

func (v *service) ctx(timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout <= 0 || timeout > maxTimeout {
		timeout = maxTimeout
	}
	return context.WithTimeout(v.s.ctx, timeout)
}

func (v *service) Propose(a *ProposeArgs, r *ProposeReply) error {
	ctx, cancel := v.ctx(a.Timeout)
	defer cancel()
	v.s.h.Propose(ctx, a, r)
	return nil
}

func (v *service) Read(a *ReadArgs, r *ReadReply) error {
	ctx, cancel := v.ctx(a.Timeout)
	defer cancel()
	v.s.h.Read(ctx, a, r)
	return nil
}

func (v *service) Status(a *StatusArgs, r *StatusReply) error {
	ctx, cancel := v.ctx(10 * time.Second)
	defer cancel()
	v.s.h.Status(ctx, a, r)
	return nil
}

func (v *service) Transfer(a *TransferArgs, r *TransferReply) error {
	ctx, cancel := v.ctx(a.Timeout)
	defer cancel()
	v.s.h.Transfer(ctx, a, r)
	return nil
}

// Serve serves h on ln until Close.
func Serve(ln net.Listener, h Handler) (*Server, error) {
	s := &Server{h: h, ln: ln, rpc: rpc.NewServer(), conns: map[net.Conn]struct{}{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.rpc.RegisterName("Cairn", &service{s}); err != nil {
		return nil, fmt.Errorf("peer: %w", err)
	}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.ctx.Err() != nil {
			s.mu.Unlock()
			_ = conn.Close()
			return
		}
		s.conns[conn] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.rpc.ServeConn(conn) // returns when the connection closes
			s.mu.Lock()
			delete(s.conns, conn)
			s.mu.Unlock()
		}()
	}
}

// Close stops accepting, closes every connection and waits for the serving
// goroutines. Handlers still running see their context end.
func (s *Server) Close() error {
	s.once.Do(func() {
		s.cancel()
		_ = s.ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
	})
	s.wg.Wait()
	return nil
}

// DialFunc opens a connection to a peer's node route.
type DialFunc func(ctx context.Context, addr string) (net.Conn, error)

// TransportError is a call that failed below the RPC layer. Sent reports
// whether the request may have reached the peer.
type TransportError struct {
	Addr string
	Sent bool
	Err  error
}

func (e *TransportError) Error() string {
	if e.Sent {
		return fmt.Sprintf("peer: call to %s failed after sending: %v", e.Addr, e.Err)
	}
	return fmt.Sprintf("peer: cannot reach %s: %v", e.Addr, e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }

// ErrClosed: the pool was closed.
var ErrClosed = errors.New("peer: closed")

// Pool keeps one multiplexed connection per peer and redials broken ones.
type Pool struct {
	dial   DialFunc
	logger *slog.Logger

	mu      sync.Mutex
	clients map[string]*client
	closed  bool
}

type client struct {
	*rpc.Client
	conn *trackedConn
}

// trackedConn records when a reply last arrived, so that a call timing out
// on a connection that has been silent since it was sent can be blamed on
// the connection (a partition), not on a slow handler.
//
// It also records a failed read: net/rpc's client is dead from then on and
// fails every call without sending it, which Call must not mistake for a
// call that may have been delivered.
type trackedConn struct {
	net.Conn
	lastRead atomic.Int64 // unix nanoseconds
	broken   atomic.Bool
}

func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.lastRead.Store(time.Now().UnixNano())
	}
	if err != nil {
		c.broken.Store(true)
	}
	return n, err
}

// NewPool returns a pool that opens connections with dial.
func NewPool(dial DialFunc, logger *slog.Logger) *Pool {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Pool{dial: dial, logger: logger, clients: map[string]*client{}}
}

func (p *Pool) client(ctx context.Context, addr string) (*client, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if c := p.clients[addr]; c != nil && !c.conn.broken.Load() {
		p.mu.Unlock()
		return c, nil
	} else if c != nil {
		delete(p.clients, addr)
		_ = c.Close()
	}
	p.mu.Unlock()
	conn, err := p.dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: conn}
	tc.lastRead.Store(time.Now().UnixNano())
	c := &client{Client: rpc.NewClient(tc), conn: tc}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return nil, ErrClosed
	}
	if old := p.clients[addr]; old != nil { // another caller dialled first
		_ = c.Close()
		return old, nil
	}
	p.clients[addr] = c
	return c, nil
}

// drop closes c if it is still addr's client.
func (p *Pool) drop(addr string, c *client) {
	p.mu.Lock()
	if p.clients[addr] == c {
		delete(p.clients, addr)
	}
	p.mu.Unlock()
	_ = c.Close()
}

// Call invokes method ("Propose", "Read" or "Status") on the peer at addr.
// A failure below the RPC layer is a *TransportError.
func (p *Pool) Call(ctx context.Context, addr, method string, args, reply any) error {
	c, err := p.client(ctx, addr)
	if err != nil {
		return &TransportError{Addr: addr, Err: err}
	}
	sent := time.Now().UnixNano()
	call := c.Go("Cairn."+method, args, reply, make(chan *rpc.Call, 1))
	select {
	case <-call.Done:
		if call.Error == nil {
			return nil
		}
		var se rpc.ServerError
		if errors.As(call.Error, &se) {
			return fmt.Errorf("peer: %s at %s: %w", method, addr, call.Error)
		}
		p.drop(addr, c)
		return &TransportError{Addr: addr, Sent: true, Err: call.Error}
	case <-ctx.Done():
		if c.conn.lastRead.Load() < sent {
			// Nothing has come back since this call went out: treat the
			// connection as dead so the next call dials afresh.
			p.drop(addr, c)
		}
		return &TransportError{Addr: addr, Sent: true, Err: ctx.Err()}
	}
}

// Close closes every connection. Calls in flight fail.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	cs := p.clients
	p.clients = map[string]*client{}
	p.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
	return nil
}

var _ io.Closer = (*Pool)(nil)
