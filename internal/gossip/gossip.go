// Package gossip finds the nodes of a cluster and tracks which are alive,
// with hashicorp/memberlist. Each node announces its raft and HTTP addresses
// in its gossip metadata, plus a small opaque state that its owner sets
// (SetState) and every other member sees. Gossip is a hint channel: it never
// decides shard ownership or raft membership.
//
// Memberlist does not probe a node again once it has been dead long enough
// to be reaped, so a node that was cut off would stay apart; the seed list
// is re-joined periodically for that reason. Without a SecretKey, gossip is
// plaintext and anyone who reaches the port can join or forge messages.
package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Config configures Start.
type Config struct {
	// Name is the node's name; BindAddr the gossip address (host:port; port
	// 0 picks a free one).
	Name     string
	BindAddr string
	// AdvertiseAddr is the IP other members reach this one at; default: the
	// bind address, or a private IP of the machine when bound to 0.0.0.0.
	AdvertiseAddr string
	// Seeds are gossip addresses of other nodes to join, now and every
	// RejoinInterval (default 30s) while they are not alive members.
	Seeds          []string
	RejoinInterval time.Duration
	// RaftAddr and HTTPAddr are announced to the other nodes.
	RaftAddr string
	HTTPAddr string
	// SecretKey (16, 24 or 32 bytes) encrypts and authenticates gossip.
	SecretKey []byte
	// Local selects memberlist's timings for a single machine (tests).
	Local  bool
	Logger *slog.Logger
}

// Member is a node seen through gossip.
type Member struct {
	Name       string `json:"name"`
	GossipAddr string `json:"gossip_addr"`
	RaftAddr   string `json:"raft_addr"`
	HTTPAddr   string `json:"http_addr"`
	// State is what the member last set with SetState (nil if none).
	State []byte `json:"-"`
}

// metadata encoding: version(1) then three uvarint-length-prefixed fields:
// raft address, HTTP address, state.
const metaVersion = 1

func encodeMeta(raft, http string, state []byte) []byte {
	b := []byte{metaVersion}
	for _, f := range [][]byte{[]byte(raft), []byte(http), state} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// decodeMeta never panics; a member with unreadable metadata shows without
// addresses or state.
func decodeMeta(b []byte) (raft, http string, state []byte) {
	if len(b) == 0 || b[0] != metaVersion {
		return "", "", nil
	}
	b = b[1:]
	var fields [3][]byte
	for i := range fields {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return "", "", nil
		}
		fields[i] = b[k : k+int(n)]
		b = b[k+int(n):]
	}
	if len(fields[2]) > 0 {
		state = append([]byte(nil), fields[2]...)
	}
	return string(fields[0]), string(fields[1]), state
}

// Gossip is a running member of the cluster's gossip pool.
type Gossip struct {
	cfg  Config
	ml   *memberlist.Memberlist
	addr string // advertised; read once, since memberlist rewrites its node record in place

	mu      sync.Mutex
	meta    []byte
	members map[string]Member
	changed chan struct{}
	// update wakes the goroutine that rebroadcasts this node's metadata
	// after SetState.
	update chan struct{}

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// Start joins the gossip pool (reachable seeds are joined right away; the
// rest are retried in the background).
func Start(cfg Config) (*Gossip, error) {
	if cfg.Name == "" || cfg.BindAddr == "" {
		return nil, errors.New("gossip: Name and BindAddr are required")
	}
	host, portStr, err := net.SplitHostPort(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("gossip: BindAddr: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("gossip: BindAddr port: %w", err)
	}
	if cfg.RejoinInterval <= 0 {
		cfg.RejoinInterval = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Gossip{
		cfg:     cfg,
		meta:    encodeMeta(cfg.RaftAddr, cfg.HTTPAddr, nil),
		members: map[string]Member{},
		changed: make(chan struct{}),
		update:  make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	mc := memberlist.DefaultLANConfig()
	if cfg.Local {
		mc = memberlist.DefaultLocalConfig()
	}
	mc.Name = cfg.Name
	mc.BindAddr = host
	mc.BindPort = port
	mc.AdvertisePort = port
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	mc.Delegate = delegate{g}
	mc.Events = events{g}
	mc.SecretKey = cfg.SecretKey
	mc.Logger = log.New(slogWriter{cfg.Logger}, "", 0)
	if g.ml, err = memberlist.Create(mc); err != nil {
		return nil, fmt.Errorf("gossip: start: %w", err)
	}
	self := g.ml.LocalNode()
	g.addr = net.JoinHostPort(self.Addr.String(), strconv.Itoa(int(self.Port)))
	g.rejoin()
	go g.rejoinLoop()
	return g, nil
}

// FreeAddr returns host:port with a port that is free for both TCP and UDP
// right now (memberlist binds both, and must know its port before it does).
func FreeAddr(host string) (string, error) {
	for range 50 {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return "", fmt.Errorf("gossip: free port: %w", err)
		}
		addr := ln.Addr().String()
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err == nil {
			pc.Close()
			return addr, nil
		}
	}
	return "", errors.New("gossip: no port free for both TCP and UDP")
}

// Addr is the gossip address other nodes can use as a seed.
func (g *Gossip) Addr() string { return g.addr }

// Members returns the alive members (this node included), sorted by name.
// Memberlist updates its own node records in place, so the members are
// copied out of its event callbacks rather than read from ml.Members().
func (g *Gossip) Members() []Member {
	g.mu.Lock()
	out := make([]Member, 0, len(g.members))
	for _, m := range g.members {
		out = append(out, m)
	}
	g.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Changed returns a channel closed at the next change of membership.
func (g *Gossip) Changed() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.changed
}

// record updates the member table; memberlist calls its event delegate
// with its node lock held, so n is stable here.
func (g *Gossip) record(n *memberlist.Node, alive bool) {
	g.mu.Lock()
	if alive {
		raft, http, state := decodeMeta(n.Meta)
		g.members[n.Name] = Member{
			Name:       n.Name,
			GossipAddr: net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))),
			RaftAddr:   raft,
			HTTPAddr:   http,
			State:      state,
		}
	} else {
		delete(g.members, n.Name)
	}
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
}

// MaxState is the longest state SetState accepts: memberlist carries at most
// 512 bytes of metadata per node, and the addresses take their share.
func (g *Gossip) MaxState() int {
	return memberlist.MetaMaxSize - len(encodeMeta(g.cfg.RaftAddr, g.cfg.HTTPAddr, nil)) - binary.MaxVarintLen16
}

// SetState replaces the state this node announces; the others see it within
// a gossip round or two. It fails if state is longer than MaxState.
func (g *Gossip) SetState(state []byte) error {
	if len(state) > g.MaxState() {
		return fmt.Errorf("gossip: state of %d bytes exceeds %d", len(state), g.MaxState())
	}
	m := encodeMeta(g.cfg.RaftAddr, g.cfg.HTTPAddr, state)
	g.mu.Lock()
	same := string(m) == string(g.meta)
	g.meta = m
	g.mu.Unlock()
	if !same {
		select {
		case g.update <- struct{}{}:
		default: // an update is already pending; it will carry the newest state
		}
	}
	return nil
}

func (g *Gossip) rejoinLoop() {
	defer close(g.done)
	t := time.NewTicker(g.cfg.RejoinInterval)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
			g.rejoin()
		case <-g.update:
			// UpdateNode waits for the broadcast to go out (bounded), so a
			// burst of SetState calls turns into few broadcasts.
			if err := g.ml.UpdateNode(time.Second); err != nil {
				g.cfg.Logger.Debug("gossip update", "error", err)
			}
		}
	}
}

// rejoin joins the seeds that are not alive members.
func (g *Gossip) rejoin() {
	alive := map[string]bool{}
	for _, m := range g.Members() {
		alive[m.GossipAddr] = true
	}
	var missing []string
	for _, s := range g.cfg.Seeds {
		if !alive[s] && s != g.Addr() {
			missing = append(missing, s)
		}
	}
	if len(missing) == 0 {
		return
	}
	if _, err := g.ml.Join(missing); err != nil {
		g.cfg.Logger.Debug("gossip join", "seeds", missing, "error", err)
	}
}

// Close leaves the pool (telling the others, within timeout) and stops.
// It is idempotent.
func (g *Gossip) Close(timeout time.Duration) error {
	var err error
	g.once.Do(func() {
		close(g.stop)
		<-g.done
		err = errors.Join(g.ml.Leave(timeout), g.ml.Shutdown())
	})
	return err
}

// Kill stops without telling the others, as a crash would (for tests).
func (g *Gossip) Kill() error {
	var err error
	g.once.Do(func() {
		close(g.stop)
		<-g.done
		err = g.ml.Shutdown()
	})
	return err
}

type delegate struct{ g *Gossip }

func (d delegate) NodeMeta(limit int) []byte {
	d.g.mu.Lock()
	defer d.g.mu.Unlock()
	if len(d.g.meta) > limit {
		return nil
	}
	return d.g.meta
}
func (delegate) NotifyMsg([]byte)                {}
func (delegate) GetBroadcasts(int, int) [][]byte { return nil }
func (delegate) LocalState(bool) []byte          { return nil }
func (delegate) MergeRemoteState([]byte, bool)   {}

type events struct{ g *Gossip }

func (e events) NotifyJoin(n *memberlist.Node)   { e.g.record(n, true) }
func (e events) NotifyLeave(n *memberlist.Node)  { e.g.record(n, false) }
func (e events) NotifyUpdate(n *memberlist.Node) { e.g.record(n, true) }

// slogWriter routes memberlist's log lines to slog at debug level, warnings
// and errors at their own.
type slogWriter struct{ l *slog.Logger }

var _ io.Writer = slogWriter{}

func (w slogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	switch {
	case strings.HasPrefix(line, "[ERR]"):
		w.l.Error(line, "component", "gossip")
	case strings.HasPrefix(line, "[WARN]"):
		w.l.Warn(line, "component", "gossip")
	default:
		w.l.Debug(line, "component", "gossip")
	}
	return len(p), nil
}
