package shard

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// Peer RPC for one shard, on the node's raft port (KindRPC). A request is
// [op][uvarint len][payload]; a response is [status][uvarint len][payload].
const (
	rpcReadIndex byte = 1 // [term u64, node ID] (optional) → index (u64); only the leader answers
	rpcApplied   byte = 2 // → this replica's applied index (u64)
	rpcTerm      byte = 3 // → this replica's current raft term (u64); see confirm.go

	rpcOK        byte = 0
	rpcNotLeader byte = 1 // payload: leader address, maybe empty
	rpcFailed    byte = 2 // payload: error text
	rpcUnknownOp byte = 3

	maxRPCPayload  = 1 << 16
	rpcIdlePerPeer = 8
)

func (s *Shard) serveRPC() {
	defer s.wg.Done()
	for {
		conn, err := s.rpcLayer.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveRPCConn(conn)
		}()
	}
}

func (s *Shard) serveRPCConn(conn net.Conn) {
	defer conn.Close()
	stop := context.AfterFunc(s.ctx, func() { _ = conn.Close() })
	defer stop()
	bc := bufConn{Conn: conn, r: bufio.NewReader(conn), w: bufio.NewWriter(conn)}
	for {
		op, req, err := readFrame(bc.r)
		if err != nil {
			return
		}
		status, payload := s.handleRPC(op, req)
		if err := writeFrame(bc.w, status, payload); err != nil {
			return
		}
		if err := bc.w.Flush(); err != nil {
			return
		}
	}
}

func (s *Shard) handleRPC(op byte, req []byte) (byte, []byte) {
	switch op {
	case rpcReadIndex:
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.ReadTimeout)
		defer cancel()
		var by *askedBy
		if len(req) > 8 {
			by = &askedBy{term: binary.BigEndian.Uint64(req), id: raft.ServerID(req[8:])}
		}
		idx, err := s.leaderReadIndexFor(ctx, by)
		var nl *NotLeaderError
		switch {
		case errors.As(err, &nl):
			return rpcNotLeader, []byte(nl.Leader)
		case err != nil:
			return rpcFailed, []byte(err.Error())
		}
		return rpcOK, binary.BigEndian.AppendUint64(nil, idx)
	case rpcApplied:
		return rpcOK, binary.BigEndian.AppendUint64(nil, s.fsm.Applied())
	case rpcTerm:
		return rpcOK, binary.BigEndian.AppendUint64(nil, s.raft.CurrentTerm())
	}
	return rpcUnknownOp, nil
}

func writeFrame(w *bufio.Writer, b byte, payload []byte) error {
	if err := w.WriteByte(b); err != nil {
		return err
	}
	var n [binary.MaxVarintLen64]byte
	if _, err := w.Write(n[:binary.PutUvarint(n[:], uint64(len(payload)))]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

func readFrame(r *bufio.Reader) (byte, []byte, error) {
	b, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return 0, nil, err
	}
	if n > maxRPCPayload {
		return 0, nil, fmt.Errorf("shard: rpc frame of %d bytes", n)
	}
	p := make([]byte, n)
	_, err = io.ReadFull(r, p)
	return b, p, err
}

// call sends op with its payload to the shard on the node at addr.
func (s *Shard) call(ctx context.Context, addr string, op byte, req []byte) (byte, []byte, error) {
	c, err := s.peerConn(ctx, addr)
	if err != nil {
		return 0, nil, err
	}
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(s.cfg.ReadTimeout)
	}
	_ = c.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	status, payload, err := func() (byte, []byte, error) {
		if err := writeFrame(c.w, op, req); err != nil {
			return 0, nil, err
		}
		if err := c.w.Flush(); err != nil {
			return 0, nil, err
		}
		return readFrame(c.r)
	}()
	if !stop() || err != nil {
		_ = c.Close()
		if err == nil {
			err = ctx.Err()
		}
		return 0, nil, fmt.Errorf("shard: rpc to %s: %w", addr, err)
	}
	_ = c.SetDeadline(time.Time{})
	s.putPeerConn(addr, c)
	return status, payload, nil
}

func (s *Shard) peerConn(ctx context.Context, addr string) (*bufConn, error) {
	s.rpcMu.Lock()
	if l := s.rpcIdle[addr]; len(l) > 0 {
		c := l[len(l)-1]
		s.rpcIdle[addr] = l[:len(l)-1]
		s.rpcMu.Unlock()
		return c, nil
	}
	s.rpcMu.Unlock()
	conn, err := s.cfg.Mux.Dial(ctx, addr, KindRPC, s.cfg.ID)
	if err != nil {
		return nil, fmt.Errorf("shard: dial %s: %w", addr, err)
	}
	return &bufConn{Conn: conn, r: bufio.NewReader(conn), w: bufio.NewWriter(conn)}, nil
}

func (s *Shard) putPeerConn(addr string, c *bufConn) {
	s.rpcMu.Lock()
	defer s.rpcMu.Unlock()
	if s.ctx.Err() != nil || len(s.rpcIdle[addr]) >= rpcIdlePerPeer {
		_ = c.Close()
		return
	}
	s.rpcIdle[addr] = append(s.rpcIdle[addr], c)
}

func (s *Shard) closePeerConns() {
	s.rpcMu.Lock()
	defer s.rpcMu.Unlock()
	for addr, l := range s.rpcIdle {
		for _, c := range l {
			_ = c.Close()
		}
		delete(s.rpcIdle, addr)
	}
}
