// Package jepsen runs fault-injection tests against a real kvnode cluster
// and checks what the clients saw.
//
// A run builds kvnode from the working tree, starts N nodes (each in its own
// network namespace when the harness runs as root, else on loopback; see
// jepsen/cluster), drives concurrent clients through the HTTP API while a
// seeded nemesis injects faults, heals everything, lets the cluster recover,
// takes final reads, and checks:
//
//   - register: per-key get / put / compare-and-set / delete histories are
//     linearizable (porcupine, one partition per key; see jepsen/checker);
//   - set: no acknowledged insert is lost, nothing unexpected appears, no
//     read misses an insert acknowledged before it began;
//   - convergence: after the run, every shard's replicas report the same
//     state hash at the same applied index.
//
// Clients are processes in the Jepsen sense: each runs one operation at a
// time; some are pinned to one node, the others pick a node at random for
// every operation (the cluster routes by key). An operation whose outcome is
// unknown is recorded as info, and its process retires: a fresh process
// number takes over the worker, so no process has two operations open.
//
// Everything a run produced goes to its run folder: the history (JSON lines,
// nemesis events included), the checkers' reports (porcupine's HTML
// visualisation when a register history is not linearizable), a summary,
// and each node's data directory and log.
package jepsen
