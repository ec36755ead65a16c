// Package par runs independent calls in parallel with a bound.
package par

import (
	"errors"
	"sync"
)

// ForEach calls fn(0) … fn(n-1), each in a goroutine of its own, at most
// limit at once, and returns their errors joined. A goroutine is started
// only once a slot is free, so n calls never hold n stacks at once.
func ForEach(n, limit int, fn func(i int) error) error {
	errs := make([]error, n)
	sem := make(chan struct{}, max(limit, 1))
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = fn(i)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
