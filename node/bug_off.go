//go:build !cairn_bug_local_reads

package node

// bugLocalReads is false in every normal build: see bug_local_reads.go.
const bugLocalReads = false
