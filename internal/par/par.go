// Package par runs independent calls in parallel with a bound.
package par

import (
	"errors"
	"sync"
)

// ForEach calls fn(0) … fn(n-1), at most limit at once, and returns their
// errors joined. The last call runs on the calling goroutine, which would
// otherwise only wait, and each other in a goroutine of its own, started
// only once a slot is free, so n calls never hold n stacks at once. A new
// goroutine's stack grows, by copying, as deep as the call goes: a call
// here spares one such growth.
func ForEach(n, limit int, fn func(i int) error) error {
	if n <= 0 {
		return nil
	}
	errs := make([]error, n)
	sem := make(chan struct{}, max(limit, 1))
	var wg sync.WaitGroup
	for i := range n - 1 {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = fn(i)
		})
	}
	sem <- struct{}{}
	errs[n-1] = fn(n - 1)
	<-sem
	wg.Wait()
	return errors.Join(errs...)
}
