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

// Addr is the address peers dial.
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

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
}

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

// Accept implements net.Listener.
func (l *Layer) Accept() (net.Conn, error) {
	select {
	case c := <-l.queue:
		return c, nil
	case <-l.done:
		return nil, ErrMuxClosed
	}
}

// Close unregisters the route. It is idempotent.
func (l *Layer) Close() error {
	l.mux.mu.Lock()
	if l.mux.routes[l.route] == l {
		delete(l.mux.routes, l.route)
	}
	l.mux.mu.Unlock()
	l.closeQueue()
	return nil
}

func (l *Layer) closeQueue() {
	l.once.Do(func() {
		l.qmu.Lock()
		close(l.done)
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

// Addr implements net.Listener.
func (l *Layer) Addr() net.Addr { return l.mux.Addr() }

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
