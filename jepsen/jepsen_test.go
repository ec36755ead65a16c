package jepsen

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// netnsOrSkip skips tests that need network namespaces (partitions).
func netnsOrSkip(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces and iptables (partitions); run as root to prove the harness catches the planted bug")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip for network namespaces")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("needs iptables for partitions")
	}
}

// bugRun is a short register run with partitions on 3 nodes. The seed is
// fixed so that both tests below see the same fault schedule.
func bugRun(t *testing.T, bug string) *Report {
	t.Helper()
	o := DefaultOptions()
	o.Workloads = []string{Register}
	o.Nemeses = []string{NemesisPartition}
	o.Duration = 32 * time.Second
	o.Interval = 5 * time.Second
	o.Rate = 150
	o.Seed = 7
	o.Bug = bug
	o.Dir = t.TempDir()
	o.Logf = t.Logf
	rep, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", rep)
	if rep.Counts.OK < 500 {
		t.Fatalf("only %d operations succeeded: the run proves little", rep.Counts.OK)
	}
	var partitions int
	for _, w := range rep.Windows {
		if w.F == NemesisPartition {
			partitions++
		}
	}
	if partitions < 2 {
		t.Fatalf("%d partitions in the schedule, want at least 2", partitions)
	}
	return rep
}

// A kvnode built to serve linearizable reads from the local replica
// (skipping the read index) must be caught: clients pinned to a node cut
// off from the leader read values the majority has overwritten.
func TestHarnessCatchesPlantedStaleReads(t *testing.T) {
	netnsOrSkip(t)
	rep := bugRun(t, "local-reads")
	if rep.Valid || rep.Register == nil || rep.Register.Valid {
		t.Fatalf("the planted stale-read bug went unnoticed:\n%s", rep)
	}
	if rep.Register.Unknown || len(rep.Register.FailedKeys) == 0 {
		t.Fatalf("want a definite violation naming keys, got %+v", rep.Register)
	}
	if _, err := os.Stat(rep.Register.Visualization); err != nil {
		t.Fatalf("no visualisation written: %v", err)
	}
	if !strings.Contains(rep.String(), "VERDICT: INVALID") {
		t.Fatalf("summary does not say invalid:\n%s", rep)
	}
}

// The same run, same seed, without the bug passes every checker.
func TestHarnessPassesWithoutBug(t *testing.T) {
	netnsOrSkip(t)
	rep := bugRun(t, "")
	if !rep.Valid {
		t.Fatalf("a correct kvnode failed the run:\n%s", rep)
	}
	if !rep.Convergence.Valid || rep.Convergence.Shards == 0 {
		t.Fatalf("convergence %+v", rep.Convergence)
	}
	if !rep.Membership.Valid || rep.Membership.Shards != rep.Convergence.Shards || rep.Membership.PlacementEpoch == 0 {
		t.Fatalf("membership %+v", rep.Membership)
	}
}

// txnRun is a short bank + list-append run on 3 nodes with kills (which
// need no root), the same seed for both tests below.
func txnRun(t *testing.T, bug string) *Report {
	t.Helper()
	o := DefaultOptions()
	o.Workloads = []string{Bank, Append}
	o.Nemeses = []string{NemesisKill}
	o.Duration = 20 * time.Second
	o.Interval = 5 * time.Second
	o.Seed = 21
	// Contention: the planted bug shows only when another transaction
	// commits between a transaction's read and its prepare.
	o.Clients = 20
	o.Rate = 500
	o.Bug = bug
	o.Dir = t.TempDir()
	o.Logf = t.Logf
	rep, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", rep)
	if rep.Bank == nil || rep.Append == nil || rep.Bank.Transfers.OK < 100 || rep.Bank.Reads < 50 || rep.Append.Counts.OK < 100 {
		t.Fatalf("too little happened for the run to prove anything:\n%s", rep)
	}
	return rep
}

// A kvnode whose cross-shard prepare does not validate what the
// transaction read must be caught by both transactional checkers.
func TestHarnessCatchesTxnWithoutReadValidation(t *testing.T) {
	rep := txnRun(t, "txn-no-validate")
	if rep.Valid || rep.Bank.Valid || rep.Append.Valid {
		t.Fatalf("skipping read validation went unnoticed:\n%s", rep)
	}
}

// The same run without the bug passes every checker.
func TestHarnessPassesTxnWorkloads(t *testing.T) {
	rep := txnRun(t, "")
	if !rep.Valid {
		t.Fatalf("a correct kvnode failed the run:\n%s", rep)
	}
}
