package shard

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// fakeTerms answers term requests for askTerms from a table, counting them.
type fakeTerms struct {
	mu     sync.Mutex
	asked  map[string]int
	answer func(addr string, n int) (uint64, error) // n: how often addr was asked before
}

func (f *fakeTerms) ask(ctx context.Context, addr string) (uint64, error) {
	f.mu.Lock()
	n := f.asked[addr]
	f.asked[addr]++
	f.mu.Unlock()
	return f.answer(addr, n)
}

func (f *fakeTerms) count(addr string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.asked[addr]
}

func askTermsShard(t *testing.T, f *fakeTerms, hedge time.Duration) *Shard {
	s := &Shard{cfg: testConfig()}
	s.cfg.ElectionTimeout = 2 * time.Second
	s.ctx, s.cancel = context.WithCancel(t.Context())
	t.Cleanup(s.cancel)
	f.asked = map[string]int{}
	s.confirmLat.ask = f.ask
	s.confirmLat.hedge = hedge
	return s
}

func peersOf(addrs ...string) []raft.Server {
	var ps []raft.Server
	for _, a := range addrs {
		ps = append(ps, raft.Server{ID: raft.ServerID(a), Address: raft.ServerAddress(a), Suffrage: raft.Voter})
	}
	return ps
}

// With three voters a check asks one follower, the one that answered
// fastest before, and no other while that one answers.
func TestAskTermsAsksOnlyTheQuorum(t *testing.T) {
	f := &fakeTerms{answer: func(string, int) (uint64, error) { return 7, nil }}
	s := askTermsShard(t, f, time.Hour)
	s.confirmLat.note("b", 5*time.Millisecond)
	s.confirmLat.note("c", time.Millisecond)
	for range 20 {
		if err := s.askTerms(7, peersOf("b", "c"), 1); err != nil {
			t.Fatal(err)
		}
	}
	if b, c := f.count("b"), f.count("c"); b != 0 || c != 20 {
		t.Fatalf("asked b %d and c %d times in 20 checks, want 0 and 20", b, c)
	}
	// Five voters: two followers of four per check.
	f2 := &fakeTerms{answer: func(string, int) (uint64, error) { return 7, nil }}
	s2 := askTermsShard(t, f2, time.Hour)
	if err := s2.askTerms(7, peersOf("b", "c", "d", "e"), 2); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, a := range []string{"b", "c", "d", "e"} {
		total += f2.count(a)
	}
	if total != 2 {
		t.Fatalf("asked %d followers for a quorum of 2", total)
	}
}

// A follower with a lower term than the leader's has not voted in any later
// term, so it confirms; one with a higher term means leadership is lost.
func TestAskTermsTermsDecide(t *testing.T) {
	for _, tc := range []struct {
		terms   map[string]uint64
		wantErr error
	}{
		{map[string]uint64{"b": 5, "c": 5}, nil},
		{map[string]uint64{"b": 4, "c": 4}, nil},
		{map[string]uint64{"b": 6, "c": 5}, raft.ErrLeadershipLost},
		{map[string]uint64{"b": 6, "c": 6}, raft.ErrLeadershipLost},
	} {
		f := &fakeTerms{answer: func(addr string, _ int) (uint64, error) { return tc.terms[addr], nil }}
		s := askTermsShard(t, f, time.Hour)
		s.confirmLat.note("c", time.Second) // b first
		err := s.askTerms(5, peersOf("b", "c"), 1)
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
			t.Fatalf("terms %v, leader's 5: got %v, want %v", tc.terms, err, tc.wantErr)
		}
	}
}

// A follower that fails is replaced by the next one at once; a quorum that
// cannot be had fails at the election timeout after asking again.
func TestAskTermsFailures(t *testing.T) {
	down := errors.New("connection refused")
	f := &fakeTerms{answer: func(addr string, _ int) (uint64, error) {
		if addr == "b" {
			return 0, down
		}
		return 3, nil
	}}
	s := askTermsShard(t, f, time.Hour)
	s.confirmLat.note("c", time.Second) // b first
	if err := s.askTerms(3, peersOf("b", "c"), 1); err != nil {
		t.Fatalf("one follower down: %v", err)
	}
	if b, c := f.count("b"), f.count("c"); b != 1 || c != 1 {
		t.Fatalf("asked b %d and c %d times, want once each", b, c)
	}
	// The failure counts against b: the next checks go to c alone.
	for range 3 {
		if err := s.askTerms(3, peersOf("b", "c"), 1); err != nil {
			t.Fatal(err)
		}
	}
	if b, c := f.count("b"), f.count("c"); b != 1 || c != 4 {
		t.Fatalf("after b failed: asked b %d and c %d times in all, want 1 and 4", b, c)
	}

	f2 := &fakeTerms{answer: func(string, int) (uint64, error) { return 0, down }}
	s2 := askTermsShard(t, f2, time.Hour)
	s2.cfg.ElectionTimeout = 200 * time.Millisecond
	err := s2.askTerms(3, peersOf("b", "c"), 1)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("all followers down: got %v, want ErrUnavailable", err)
	}
	if n := f2.count("b"); n < 2 {
		t.Fatalf("b asked %d times within the election timeout, want it asked again", n)
	}

	// A follower that comes back is asked again and confirms.
	f3 := &fakeTerms{answer: func(_ string, n int) (uint64, error) {
		if n < 3 {
			return 0, down
		}
		return 3, nil
	}}
	s3 := askTermsShard(t, f3, time.Hour)
	if err := s3.askTerms(3, peersOf("b", "c"), 1); err != nil {
		t.Fatalf("followers back after 3 failures each: %v", err)
	}

	f4 := &fakeTerms{answer: func(string, int) (uint64, error) { return 0, errOldPeer }}
	s4 := askTermsShard(t, f4, time.Hour)
	if err := s4.askTerms(3, peersOf("b", "c"), 1); !errors.Is(err, errOldPeer) {
		t.Fatalf("follower on an older build: got %v, want errOldPeer", err)
	}
}

// In a group of five, when the last answer to come in is a confirmation
// that leaves the check one short, the followers that failed are asked
// again, and the check passes once they answer.
func TestAskTermsRetriesAfterLastConfirmation(t *testing.T) {
	down := errors.New("connection refused")
	var s *Shard
	f := &fakeTerms{answer: func(addr string, n int) (uint64, error) {
		if addr == "d" {
			// d answers only once e's failure is in: its request counts
			// e's failure as a long answer just before it hands the
			// failure to the check, so the check sees e fail, then d
			// confirm, last.
			for s.confirmLat.get("e") < time.Second {
				time.Sleep(time.Millisecond)
			}
			return 4, nil
		}
		if n == 0 {
			return 0, down
		}
		return 4, nil
	}}
	s = askTermsShard(t, f, time.Hour)
	s.cfg.ElectionTimeout = 5 * time.Second
	s.confirmLat.note("d", 3*time.Millisecond)
	s.confirmLat.note("e", 4*time.Millisecond) // b and c first, then d, e
	start := time.Now()
	if err := s.askTerms(4, peersOf("b", "c", "d", "e"), 2); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("the check took %v: the failed followers were not asked again until the deadline", took)
	}
}

// A follower slow to answer gets company: after the hedge delay the others
// are asked too, and the first quorum decides.
func TestAskTermsHedges(t *testing.T) {
	release := make(chan struct{})
	var slowDone atomic.Bool
	f := &fakeTerms{answer: func(addr string, _ int) (uint64, error) {
		if addr == "b" {
			<-release
			slowDone.Store(true)
		}
		return 2, nil
	}}
	s := askTermsShard(t, f, 20*time.Millisecond)
	s.confirmLat.note("c", time.Second) // b first
	if err := s.askTerms(2, peersOf("b", "c"), 1); err != nil {
		t.Fatal(err)
	}
	if slowDone.Load() {
		t.Fatal("check waited for the slow follower")
	}
	if c := f.count("c"); c != 1 {
		t.Fatalf("c asked %d times after b was slow, want 1", c)
	}
	close(release)
}

// A follower's read-index request carries its term, which in a group of
// three completes the leader's quorum: the leader answers without a check of
// its own. In a group of five it still runs one. Either way the follower
// reads the latest write.
func TestFollowerReadIndexCountsTheAsker(t *testing.T) {
	for _, voters := range []int{3, 5} {
		t.Run(fmt.Sprintf("voters=%d", voters), func(t *testing.T) {
			c := newCluster(t, voters, nil)
			c.bootstrap(voters)
			ctx := t.Context()
			l := c.leader(10 * time.Second)
			f := c.follower(l)
			leaderRounds := func() uint64 { n, _ := l.shard.ReadRounds(); return n }
			const reads = 50
			before := leaderRounds()
			for i := range reads {
				v := fmt.Sprintf("v%d", i)
				mustOK(t)(l.shard.Propose(ctx, putCmd("k", v)))
				it, _, err := f.shard.Get(ctx, []byte("k"), ReadOptions{})
				if err != nil || string(it.Value) != v {
					t.Fatalf("follower read after writing %s: %q %v", v, it.Value, err)
				}
			}
			// The leader's idle checks (keepLease, one per lease period
			// without reads of its own) also count; they are few.
			n := leaderRounds() - before
			if voters == 3 && n > reads/5 {
				t.Fatalf("%d leader checks for %d follower reads, want few (none of them for the reads)", n, reads)
			}
			if voters == 5 && n < reads {
				t.Fatalf("%d leader checks for %d follower reads in a group of five, want one each", n, reads)
			}
		})
	}
}

// The leader takes a follower's term from a read-index request only as the
// answer of a voter other than itself: a higher term than its own refuses
// the read index, and an unknown or non-voting ID (or its own) gets a check
// of the leader's own.
func TestReadIndexRequestTerms(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.bootstrap(3)
	l := c.leader(10 * time.Second)
	f := c.follower(l)
	mustOK(t)(l.shard.Propose(t.Context(), putCmd("k", "v")))
	term := l.shard.raft.CurrentTerm()
	req := func(term uint64, id string) []byte {
		return append(binary.BigEndian.AppendUint64(nil, term), id...)
	}
	rounds := func() uint64 { n, _ := l.shard.ReadRounds(); return n }

	if status, _ := l.shard.handleRPC(rpcReadIndex, req(term+1, f.id)); status != rpcNotLeader {
		t.Fatalf("read index for a follower with a higher term: status %d, want rpcNotLeader", status)
	}
	for _, tc := range []struct {
		term   uint64
		id     string
		checks bool
	}{
		{term, f.id, false},
		{term - 1, f.id, false}, // a follower behind in terms has voted in none later
		{term, "stranger", true},
		{term, l.id, true},
		{0, "", true}, // a request without a payload, as from an older build
	} {
		before := rounds()
		var payload []byte
		if tc.id != "" {
			payload = req(tc.term, tc.id)
		}
		status, idx := l.shard.handleRPC(rpcReadIndex, payload)
		if status != rpcOK || len(idx) != 8 || binary.BigEndian.Uint64(idx) < l.shard.fsm.Applied() {
			t.Fatalf("read index asked by %q at term %d: status %d, index %x (applied %d)", tc.id, tc.term, status, idx, l.shard.fsm.Applied())
		}
		// The leader's idle checks may add one now and then; a check of
		// its own for this request adds at least one.
		if n := rounds() - before; tc.checks && n == 0 {
			t.Fatalf("read index asked by %q: the leader ran no check of its own", tc.id)
		}
	}
}
