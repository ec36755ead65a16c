// Package elle checks list-append transaction histories for isolation
// anomalies, in the manner of Elle (Kingsbury and Alvaro, "Elle: Inferring
// Isolation Anomalies from Experimental Observations", VLDB 2020).
//
// # The workload
//
// Every key holds a list of ints. A transaction is a sequence of
// micro-operations: append(k, v) adds v at the end of k's list, r(k) reads
// the whole list. The workload never appends the same value to a key twice,
// so a value read names the one append that wrote it, and since appends
// only add at the end, every read of a key is a prefix of the key's final
// list. Reading lists therefore reveals the order in which transactions
// wrote each key, which is what makes the dependencies between transactions
// observable.
//
// # The history
//
// A history is the sequence of events a test harness recorded, in the order
// they happened. Each transaction appears twice: its invocation (Invoke)
// and its completion: OK (committed; reads carry the lists returned), Fail
// (certainly had no effect) or Info (unknown: it may have taken effect, at
// any time after its invocation, or not at all). An invocation that never
// completes counts as Info. A process runs one transaction at a time. Check
// rejects, with ErrMalformed, a history that breaks these rules: a
// completion without an invocation, two open transactions on one process,
// an OK completion whose micro-operations differ from its invocation's
// (apart from the values read), a value appended twice to one key, or time
// going backwards.
//
// Committed transactions are in the dependency graph; so are unknown ones,
// whose appends may be observed (their reads tell nothing). Failed ones are
// not: observing their writes is an anomaly.
//
// # Version orders and edges
//
// For each key the longest committed read is taken as the key's version
// order; every other read must be a prefix of it. From the orders, edges
// between transactions are inferred. An edge T1 → T2 means T1 must take
// effect before T2 in any serial order:
//
//   - ww (write-write): T2 appended the value right after T1's value in the
//     key's order.
//   - wr (write-read): T2 read a list whose last value T1 appended.
//   - rw (read-write, anti-dependency): T1 read a list of n values and T2
//     appended value n+1: T1 did not see T2's append, so it came first.
//   - process (strong-session serializable): T1 and T2 ran on the same
//     process, T1 committed and T2 came next.
//   - realtime (strict serializable): T1 committed before T2 was invoked.
//     Only enough of these are added for their transitive closure to be the
//     whole real-time order: each transaction is linked to the transactions
//     that completed most recently before its invocation, which keeps the
//     graph linear in size rather than quadratic.
//
// Only reads that are a transaction's first operation on a key give wr and
// rw edges: later reads show the transaction's own writes.
//
// # Anomalies
//
// A serializable history has an acyclic graph. Check finds the strongly
// connected components (Tarjan's algorithm) and in each looks for a short
// cycle of each type:
//
//   - G0, write cycle: only ww edges.
//   - G1c, circular information flow: ww and wr edges, at least one wr.
//   - G-single, read skew: exactly one rw edge. Lost updates (two
//     transactions read the same version and both append) show up as this.
//   - G2-item, write skew: two or more rw edges.
//
// A cycle that needs a process or real-time edge gets the suffix "-process"
// or "-realtime" (G-single-realtime is a stale read): the history is
// serializable, but not in the stronger model claimed. Process edges are
// added for StrongSessionSerializable and real-time edges (which imply the
// process order) for StrictSerializable.
//
// Other anomalies need no cycle:
//
//   - G1a, aborted read: a committed read returned a value appended by a
//     failed transaction.
//   - G1b, intermediate read: a read ended with a value its writer followed
//     with another append to the same key in the same transaction.
//   - internal: a read disagrees with the transaction's own earlier
//     operations (read x, append 5, read x again without 5 at the end), or
//     holds a value the transaction appends only later.
//   - duplicate-elements: a read holds one value twice.
//   - incompatible-order: two reads of a key are not prefixes of one another.
//   - garbage-read: a read holds a value nobody ever appended to that key.
//
// Each anomaly carries the transactions involved, the cycle with the
// evidence for every edge, and an explanation written for a person.
//
// # Limits
//
// Every edge is implied by the history, so every cycle reported is a real
// violation of the model (when reads of a key are incompatible, the order
// taken for that key may itself be wrong, but the history is invalid
// anyway). The checker is not complete: appends nobody read have no place
// in a version order and give no edges, and the search for each type of
// cycle in a component is bounded by Options.SearchBudget; a component whose
// searches all run out is still reported, with the first cycle found.
package elle
