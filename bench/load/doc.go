// Package load is the engine of the side-by-side benchmark: the key and
// value generators, the workloads, the closed-loop and open-loop runners and
// the latency summary. It knows nothing about the systems under test; each
// one is a Driver that turns an Op into a request.
//
// Contract:
//
//   - The operation stream is a pure function of (seed, client index,
//     workload, keys, value size): two drivers given the same settings
//     receive exactly the same operations in the same order per client,
//     whichever system they talk to. Drivers must not mutate an Op's Value;
//     the generator reuses its buffer for the client's next operation.
//   - Latencies are recorded only for operations that succeeded. An
//     operation cut short by the end of the run is neither counted nor an
//     error.
//   - Percentiles follow kvnode bench's rule: the element at index
//     min(n-1, floor(p·n)) of the sorted latencies, reported in milliseconds
//     truncated to the microsecond.
//   - In open-loop mode operation i is due at start + i/rate; its latency is
//     measured from that due time, not from when a worker got to it, so a
//     server that falls behind shows its queueing delay (no coordinated
//     omission).
package load
