package shard

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/hashicorp/raft"
)

// Every connection to a node's raft port opens with a header naming what it
// carries and for which shard: magic(2) kind(1) shard(8).
const (
	muxMagic0, muxMagic1 = 'C', 'N'
	muxHeaderLen         = 11

	// KindRaft carries one raft group's transport traffic.
	KindRaft byte = 1
	// KindRPC carries node-to-node requests for one shard (read index,
	// catch-up progress).
	KindRPC byte = 2
	// KindNode carries node-level requests (forwarded writes and reads,
	// status); the node listens on it with shard 0.
	KindNode byte = 3
)

// ErrMuxClosed is returned by Accept and Dial after Close.
var ErrMuxClosed = errors.New("shard: mux closed")

// DialFunc opens a connection to a peer's raft port.
type DialFunc func(ctx context.Context, addr string) (net.Conn, error)

// Mux shares one TCP listener among all shard groups of a node: each
// connection announces (kind, shard) and is handed to that listener's queue.
// Connections with a bad header, or for a shard that is not open here, are
// closed.
type Mux struct {
	ln     net.Listener
	dial   DialFunc
	logger *slog.Logger

	advertise atomic.Pointer[string]

	mu     sync.Mutex
	routes map[route]*Layer
	closed chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

type route struct {
	kind  byte
	shard fsm.ShardID
}

// MuxConfig configures NewMux. Dial defaults to a TCP dialer; tests inject
// faults through it.
type MuxConfig struct {
	Dial   DialFunc
	Logger *slog.Logger
}

// Listen opens a Mux on addr ("127.0.0.1:0" picks a port).
func Listen(addr string, cfg MuxConfig) (*Mux, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("shard: listen %s: %w", addr, err)
	}
	return NewMux(ln, cfg), nil
}

// NewMux serves connections accepted from ln.
func NewMux(ln net.Listener, cfg MuxConfig) *Mux {
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Mux{ln: ln, dial: cfg.Dial, logger: cfg.Logger, routes: make(map[route]*Layer), closed: make(chan struct{})}
	m.wg.Add(1)
	go m.serve()
	return m
}

// Addr is the address the mux listens on.
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

// Advertise sets the address other nodes reach this mux at, when it differs
// from the listen address (a wildcard host, a container). Raft tells its
// followers the leader's address from it, so set it before opening shards.
func (m *Mux) Advertise(addr string) { m.advertise.Store(&addr) }

// advertised returns the address set by Advertise, or the listen address.
func (m *Mux) advertised() net.Addr {
	if a := m.advertise.Load(); a != nil {
		return advertisedAddr(*a)
	}
	return m.ln.Addr()
}

// advertisedAddr is an address given as a string (it may hold a host name).
type advertisedAddr string

func (a advertisedAddr) Network() string { return "tcp" }
func (a advertisedAddr) String() string  { return string(a) }

// Close stops accepting and closes every layer. It is idempotent.
func (m *Mux) Close() error {
	m.once.Do(func() {
		close(m.closed)
		_ = m.ln.Close()
		m.mu.Lock()
		for _, l := range m.routes {
			l.closeQueue()
		}
		m.mu.Unlock()
	})
	m.wg.Wait()
	return nil
}

func (m *Mux) serve() {
	defer m.wg.Done()
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.closed:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			m.logger.Warn("raft port accept", "error", err)
			return
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.route(conn)
		}()
	}
}

// route reads the header (with a deadline, so garbage cannot hold a
// goroutine) and queues the connection.
func (m *Mux) route(conn net.Conn) {
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [muxHeaderLen]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil || hdr[0] != muxMagic0 || hdr[1] != muxMagic1 {
		_ = conn.Close()
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	r := route{kind: hdr[2], shard: fsm.ShardID(binary.BigEndian.Uint64(hdr[3:]))}
	m.mu.Lock()
	l := m.routes[r]
	m.mu.Unlock()
	if l == nil || !l.enqueue(conn) {
		_ = conn.Close()
	}
}

// Listen registers the (kind, shard) route and returns its listener. It is
// also a raft.StreamLayer.
func (m *Mux) Listen(kind byte, shard fsm.ShardID) (*Layer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := route{kind, shard}
	if _, ok := m.routes[r]; ok {
		return nil, fmt.Errorf("shard: route %d/%v already open", kind, shard)
	}
	select {
	case <-m.closed:
		return nil, ErrMuxClosed
	default:
	}
	l := &Layer{mux: m, route: r, queue: make(chan net.Conn, 64), done: make(chan struct{})}
	m.routes[r] = l
	return l, nil
}

// Dial connects to the (kind, shard) route of the node at addr.
func (m *Mux) Dial(ctx context.Context, addr string, kind byte, shard fsm.ShardID) (net.Conn, error) {
	select {
	case <-m.closed:
		return nil, ErrMuxClosed
	default:
	}
	conn, err := m.dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	hdr := make([]byte, 0, muxHeaderLen)
	hdr = append(hdr, muxMagic0, muxMagic1, kind)
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(shard))
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetWriteDeadline(dl)
	}
	if _, err := conn.Write(hdr); err != nil {
		_ = conn.Close()
		return nil, err
	}
	_ = conn.SetWriteDeadline(time.Time{})
	return conn, nil
}

// Layer is the listener of one (kind, shard) route.
type Layer struct {
	mux   *Mux
	route route
	queue chan net.Conn
	once  sync.Once
	done  chan struct{}
	qmu   sync.Mutex

	// Accepted connections, until their user closes them: Close interrupts
	// them and waits for their users (raft's handlers, which may be writing
	// to the raft log) to let go.
	cmu      sync.Mutex
	accepted map[*acceptedConn]struct{}
	users    sync.WaitGroup
}

// acceptedConn reports its user's Close to the layer.
type acceptedConn struct {
	net.Conn
	l    *Layer
	once sync.Once
}

func (c *acceptedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.cmu.Lock()
		delete(c.l.accepted, c)
		c.l.cmu.Unlock()
		c.l.users.Done()
	})
	return err
}

// layerDrainTimeout bounds how long Close waits for users of accepted
// connections.
const layerDrainTimeout = 10 * time.Second

var _ raft.StreamLayer = (*Layer)(nil)

func (l *Layer) enqueue(c net.Conn) bool {
	l.qmu.Lock()
	defer l.qmu.Unlock()
	select {
	case <-l.done:
		return false
	default:
	}
	select {
	case l.queue <- c:
		return true
	default:
		return false // backlog full
	}
}

// Accept implements net.Listener. The caller must Close what it accepts.
func (l *Layer) Accept() (net.Conn, error) {
	select {
	case c := <-l.queue:
		l.cmu.Lock()
		defer l.cmu.Unlock()
		select {
		case <-l.done:
			_ = c.Close()
			return nil, ErrMuxClosed
		default:
		}
		ac := &acceptedConn{Conn: c, l: l}
		if l.accepted == nil {
			l.accepted = map[*acceptedConn]struct{}{}
		}
		l.accepted[ac] = struct{}{}
		l.users.Add(1)
		return ac, nil
	case <-l.done:
		return nil, ErrMuxClosed
	}
}

// Close unregisters the route, interrupts the connections it accepted and
// waits (bounded) until their users closed them, so that nothing served
// through the layer runs after Close. It is idempotent.
func (l *Layer) Close() error {
	l.mux.mu.Lock()
	if l.mux.routes[l.route] == l {
		delete(l.mux.routes, l.route)
	}
	l.mux.mu.Unlock()
	l.closeQueue()
	l.cmu.Lock()
	for c := range l.accepted {
		_ = c.Conn.Close()
	}
	l.cmu.Unlock()
	drained := make(chan struct{})
	go func() { l.users.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(layerDrainTimeout):
		l.mux.logger.Warn("connections still in use after close", "kind", l.route.kind, "shard", uint64(l.route.shard))
	}
	return nil
}

func (l *Layer) closeQueue() {
	l.once.Do(func() {
		l.qmu.Lock()
		l.cmu.Lock()
		close(l.done)
		l.cmu.Unlock()
		l.qmu.Unlock()
		for {
			select {
			case c := <-l.queue:
				_ = c.Close()
			default:
				return
			}
		}
	})
}

// Addr implements net.Listener. It is the advertised address: raft uses it
// as this node's address in what it sends to peers.
func (l *Layer) Addr() net.Addr { return l.mux.advertised() }

// Dial implements raft.StreamLayer: it reaches the same route on a peer.
func (l *Layer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return l.mux.Dial(ctx, string(addr), l.route.kind, l.route.shard)
}

// bufConn pairs a connection with buffered reader and writer.
type bufConn struct {
	net.Conn
	r *bufio.Reader
	w *bufio.Writer
}
