package par

import (
	"errors"
	"sync/atomic"
	"testing"
)

func TestForEachBoundsAndJoins(t *testing.T) {
	var running, peak atomic.Int32
	release := make(chan struct{})
	started := make(chan struct{}, 100)
	boom := errors.New("boom")
	done := make(chan error)
	go func() {
		done <- ForEach(100, 4, func(i int) error {
			n := running.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			started <- struct{}{}
			<-release
			running.Add(-1)
			if i%10 == 0 {
				return boom
			}
			return nil
		})
	}()
	for range 4 {
		<-started
	}
	close(release)
	err := <-done
	if p := peak.Load(); p != 4 {
		t.Fatalf("at most %d calls ran at once, want 4", p)
	}
	if !errors.Is(err, boom) {
		t.Fatalf("joined error %v does not hold the calls' error", err)
	}
	if n := len(err.(interface{ Unwrap() []error }).Unwrap()); n != 10 {
		t.Fatalf("%d errors joined, want 10", n)
	}
}

// Every index is called exactly once, also for n of 0 and 1 and a limit of
// one (each call then runs alone, the last on the caller).
func TestForEachCallsEachOnce(t *testing.T) {
	for _, c := range []struct{ n, limit int }{{0, 4}, {1, 4}, {2, 1}, {7, 1}, {7, 3}, {50, 32}} {
		calls := make([]atomic.Int32, c.n)
		var running, peak atomic.Int32
		err := ForEach(c.n, c.limit, func(i int) error {
			r := running.Add(1)
			for p := peak.Load(); r > p && !peak.CompareAndSwap(p, r); p = peak.Load() {
			}
			calls[i].Add(1)
			running.Add(-1)
			if i == c.n-1 {
				return errors.New("last")
			}
			return nil
		})
		for i := range calls {
			if got := calls[i].Load(); got != 1 {
				t.Fatalf("n %d limit %d: fn(%d) called %d times", c.n, c.limit, i, got)
			}
		}
		if c.n > 0 && (err == nil || err.Error() != "last") || c.n == 0 && err != nil {
			t.Fatalf("n %d: err %v, want the last call's", c.n, err)
		}
		if p := peak.Load(); p > int32(c.limit) {
			t.Fatalf("n %d limit %d: %d calls at once", c.n, c.limit, p)
		}
	}
}
