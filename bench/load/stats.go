package load

import (
	"slices"
	"time"
)

// Percentile returns the p-quantile (0 ≤ p ≤ 1) of sorted latencies by
// kvnode bench's rule: sorted[min(n-1, floor(p·n))]. It returns 0 for no
// latencies.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

// Millis is d in milliseconds, truncated to the microsecond (as kvnode
// bench prints them).
func Millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Summary condenses the latencies of one set of operations.
type Summary struct {
	Ops            int
	P50, P99, P999 time.Duration
}

// Summarize sorts a copy of lat and takes its percentiles.
func Summarize(lat []time.Duration) Summary {
	s := slices.Clone(lat)
	slices.Sort(s)
	return Summary{Ops: len(s), P50: Percentile(s, 0.50), P99: Percentile(s, 0.99), P999: Percentile(s, 0.999)}
}
