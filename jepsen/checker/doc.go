// Package checker decides whether a recorded history (see package
// jepsen/history) is one the system was allowed to produce. It holds two
// checkers. Both take the whole history of a run and keep to their own
// workload's operations, so register and set traffic may share a history.
//
// # Linearizable registers
//
// CheckRegister treats every key of the register workload as an independent
// register and asks porcupine whether the operations on each key can be put
// in one order that respects real time (an operation that completed before
// another was invoked comes first) and that a single-copy register would
// accept. Keys are checked separately and in parallel, so one bad key is
// named precisely and a slow key does not hide the verdict on the others.
//
// The register holds either nothing (absent, the initial state) or an int.
// Values written are unique across a run, which is what lets a cas observed
// as "version_mismatch" be read as "the value was not From" (this assumes a
// key's version never repeats, deletes included). A cas whose From is nil
// expects the key to be absent.
//
// Unknown outcomes are never counted as failures:
//
//   - a put, delete or cas that completed with info, or never completed, may
//     have taken effect at any moment after its invocation, or not at all. It
//     is given a completion time after the end of the history, which lets the
//     search place it anywhere after its invocation. Placing it after every
//     completed operation has the same effect on the check as "it never
//     happened", because every such write is accepted in any state (an
//     unknown cas whose condition does not hold simply leaves the value
//     alone). So one deterministic model step covers "applied" and "not
//     applied".
//   - a get that completed with info tells nothing and is left out.
//   - a fail means the operation certainly did not happen, and it is left out
//     too, except a cas failing with "version_mismatch": that is an
//     observation (the value was not From when the cas took effect) and is
//     checked like a read.
//
// A check that runs out of time is not a pass: the result says Unknown.
// When a history is not linearizable, the result explains, for each failing
// key, the longest order porcupine managed to build and the operation that
// could not follow it, and can write porcupine's HTML visualization with the
// nemesis fault windows drawn alongside the operations.
//
// # Sets
//
// CheckSet checks the set workload: clients add unique elements and read the
// whole set, during the run and once more after every fault has healed (the
// final reads, F == "final-read", possibly one per node). An element is
// "known" from the moment its add was acknowledged or a read returned it,
// whichever is first. Then:
//
//   - lost: a known element missing from a final read invoked after it was
//     known;
//   - stale: a known element missing from a read during the run that was
//     invoked after it was known (and not lost) — a violation for
//     linearizable reads;
//   - unexpected: an element read that no add attempted, or whose add failed;
//   - recovered: an element whose add had an unknown outcome and that a final
//     read returned.
//
// Adds with unknown outcomes are neither counted as lost nor as failed: an
// unknown add that no read ever returned is fine, one that shows up is
// recovered. A history without a successful final read is not valid, since
// nothing would then show that acknowledged adds survived.
package checker
