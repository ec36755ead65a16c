package gossip

import (
	"fmt"
	"net"
	"slices"
	"testing"
	"time"
)

func start(t *testing.T, name, bind string, seeds []string, key []byte) *Gossip {
	t.Helper()
	g, err := Start(Config{
		Name: name, BindAddr: bind, Seeds: seeds, SecretKey: key, Local: true,
		RaftAddr: name + ":7071", HTTPAddr: name + ":7070", RejoinInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Kill() })
	return g
}

func names(g *Gossip) []string {
	var out []string
	for _, m := range g.Members() {
		out = append(out, m.Name)
	}
	return out
}

// waitMembers waits until g sees exactly want as alive members.
func waitMembers(t *testing.T, g *Gossip, want ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !slices.Equal(names(g), want) {
		if time.Now().After(deadline) {
			t.Fatalf("%s sees %v, want %v", g.cfg.Name, names(g), want)
		}
		select {
		case <-g.Changed():
		case <-time.After(50 * time.Millisecond): // also re-check on a timer
		}
	}
}

func TestMembersDiscoverDieAndReturn(t *testing.T) {
	a := start(t, "a", "127.0.0.1:0", nil, nil)
	b := start(t, "b", "127.0.0.1:0", []string{a.Addr()}, nil)
	cAddr := freeUDPAndTCPPort(t)
	c := start(t, "c", cAddr, []string{a.Addr()}, nil)
	for _, g := range []*Gossip{a, b, c} {
		waitMembers(t, g, "a", "b", "c")
	}
	for _, m := range b.Members() {
		if m.RaftAddr != m.Name+":7071" || m.HTTPAddr != m.Name+":7070" || m.GossipAddr == "" {
			t.Fatalf("member metadata not carried: %+v", m)
		}
	}
	// c crashes: the others notice.
	c.Kill()
	waitMembers(t, a, "a", "b")
	waitMembers(t, b, "a", "b")
	// c comes back on its address and joins through its seed.
	c = start(t, "c", cAddr, []string{a.Addr()}, nil)
	waitMembers(t, a, "a", "b", "c")
	waitMembers(t, b, "a", "b", "c")
}

// A node whose seed was down when it started joins once the seed is up, by
// re-joining the seed list periodically.
func TestRejoinsSeedsThatWereDown(t *testing.T) {
	aAddr := freeUDPAndTCPPort(t)
	b := start(t, "b", "127.0.0.1:0", []string{aAddr}, nil)
	if got := names(b); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("b alone sees %v", got)
	}
	a := start(t, "a", aAddr, nil, nil)
	waitMembers(t, a, "a", "b")
	waitMembers(t, b, "a", "b")
}

func TestSecretKeyKeepsStrangersOut(t *testing.T) {
	key := []byte("0123456789abcdef")
	a := start(t, "a", "127.0.0.1:0", nil, key)
	b := start(t, "b", "127.0.0.1:0", []string{a.Addr()}, key)
	waitMembers(t, a, "a", "b")
	stranger := start(t, "x", "127.0.0.1:0", []string{a.Addr()}, []byte("fedcba9876543210"))
	plain := start(t, "y", "127.0.0.1:0", []string{a.Addr()}, nil)
	// Give the outsiders several rejoin rounds, then check nobody let them in.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		for _, g := range []*Gossip{a, b} {
			if got := names(g); !slices.Equal(got, []string{"a", "b"}) {
				t.Fatalf("%s let a node with the wrong key in: %v", g.cfg.Name, got)
			}
		}
		time.Sleep(50 * time.Millisecond) // sampling interval over the window
	}
	if got := names(stranger); !slices.Equal(got, []string{"x"}) {
		t.Fatalf("the stranger sees %v", got)
	}
	if got := names(plain); !slices.Equal(got, []string{"y"}) {
		t.Fatalf("the unencrypted node sees %v", got)
	}
}

// freeUDPAndTCPPort returns a loopback address whose port is free for both
// TCP and UDP (memberlist binds both).
func freeUDPAndTCPPort(t *testing.T) string {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err == nil {
			pc.Close()
			return addr
		}
	}
	t.Fatal(fmt.Errorf("no free port"))
	return ""
}

func TestStateReachesOtherMembers(t *testing.T) {
	a := start(t, "a", "127.0.0.1:0", nil, nil)
	b := start(t, "b", "127.0.0.1:0", []string{a.Addr()}, nil)
	waitMembers(t, b, "a", "b")
	stateOf := func(g *Gossip, name string) string {
		for _, m := range g.Members() {
			if m.Name == name {
				return string(m.State)
			}
		}
		return "<absent>"
	}
	for _, want := range []string{"forming", "leads 1,2", ""} {
		if err := a.SetState([]byte(want)); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for stateOf(b, "a") != want {
			if time.Now().After(deadline) {
				t.Fatalf("b sees a's state %q, want %q", stateOf(b, "a"), want)
			}
			select {
			case <-b.Changed():
			case <-time.After(50 * time.Millisecond):
			}
		}
		for _, m := range b.Members() {
			if m.Name == "a" && (m.RaftAddr != "a:7071" || m.HTTPAddr != "a:7070") {
				t.Fatalf("addresses lost with the state update: %+v", m)
			}
		}
	}
	if err := a.SetState(make([]byte, a.MaxState()+1)); err == nil {
		t.Fatal("state beyond MaxState accepted")
	}
	if err := a.SetState(make([]byte, a.MaxState())); err != nil {
		t.Fatalf("state of exactly MaxState refused: %v", err)
	}
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add(encodeMeta("10.0.0.1:7071", "10.0.0.1:7070", []byte("state")))
	f.Add([]byte{metaVersion, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		raft, http, state := decodeMeta(b) // must not panic
		r2, h2, s2 := decodeMeta(encodeMeta(raft, http, state))
		if r2 != raft || h2 != http || !slices.Equal(s2, state) {
			t.Fatalf("round trip of %q %q %q gave %q %q %q", raft, http, state, r2, h2, s2)
		}
	})
}
