//go:build cairn_bug_local_reads

package node

// bugLocalReads is a planted bug for the Jepsen harness to find: built with
// the cairn_bug_local_reads tag, a node serves linearizable reads from its
// own replica's state, skipping the read index. A replica cut off from the
// leader then answers with values the rest of the cluster has overwritten.
// Never build a release with this tag.
const bugLocalReads = true
