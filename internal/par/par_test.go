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
