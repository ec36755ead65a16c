package gossip

import (
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
	start(t, "c", cAddr, []string{a.Addr()}, nil)
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
	addr, err := FreeAddr("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return addr
}
