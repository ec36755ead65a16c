package load

import (
	"testing"
	"time"
)

func msList(n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i+1) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", []time.Duration{7}, 0.999, 7},
		{"p50 of 100: index 50", msList(100), 0.50, 51 * time.Millisecond},
		{"p99 of 100: index 99", msList(100), 0.99, 100 * time.Millisecond},
		{"p99.9 of 100: clamped to the last", msList(100), 0.999, 100 * time.Millisecond},
		{"p99 of 1000: index 990", msList(1000), 0.99, 991 * time.Millisecond},
		{"p99.9 of 1000: index 999", msList(1000), 0.999, 1000 * time.Millisecond},
		{"p50 of 3: index 1", msList(3), 0.5, 2 * time.Millisecond},
		{"p0", msList(10), 0, time.Millisecond},
		{"p100: the last", msList(10), 1, 10 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := Percentile(tt.sorted, tt.p); got != tt.want {
			t.Errorf("%s: Percentile = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestSummarizeSortsACopy(t *testing.T) {
	lat := []time.Duration{5 * time.Millisecond, 1 * time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond}
	s := Summarize(lat)
	if s.Ops != 5 || s.P50 != 3*time.Millisecond || s.P99 != 5*time.Millisecond || s.P999 != 5*time.Millisecond {
		t.Errorf("Summarize = %+v", s)
	}
	if lat[0] != 5*time.Millisecond {
		t.Error("Summarize sorted its argument")
	}
}

func TestMillis(t *testing.T) {
	for d, want := range map[time.Duration]float64{
		1234567 * time.Nanosecond: 1.234, // truncated to the µs, as kvnode bench
		999 * time.Nanosecond:     0,
		2 * time.Second:           2000,
	} {
		if got := Millis(d); got != want {
			t.Errorf("Millis(%v) = %v, want %v", d, got, want)
		}
	}
}
