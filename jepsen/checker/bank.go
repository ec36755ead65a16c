package checker

import (
	"fmt"
	"strings"

	"github.com/cairndb/cairn/jepsen/history"
)

// BankResult is the verdict on the bank workload: every successful read of
// all balances (taken in one transaction) sums to the bank's total and has
// no negative balance.
type BankResult struct {
	Valid     bool  `json:"valid"`
	Total     int   `json:"total"`
	Transfers Outs  `json:"transfers"`
	Reads     int   `json:"reads"`
	Bad       []Bad `json:"bad,omitempty"` // the first few wrong reads
	BadCount  int   `json:"bad_count"`
}

// Outs counts operations by outcome.
type Outs struct{ OK, Fail, Info int }

// Bad is a read that broke the invariant.
type Bad struct {
	Index    int    `json:"index"`
	Node     string `json:"node"`
	Balances []int  `json:"balances"`
	Why      string `json:"why"`
}

// CheckBank checks the bank operations of a history (F transfer, read,
// final-read) against the bank's total.
func CheckBank(ops []history.Op, total int) BankResult {
	r := BankResult{Valid: true, Total: total}
	pairs, err := history.Pairs(ops)
	if err != nil {
		return BankResult{Bad: []Bad{{Why: err.Error()}}, BadCount: 1}
	}
	for _, p := range pairs {
		switch p.Invoke.F {
		case "transfer":
			switch p.Outcome() {
			case history.OK:
				r.Transfers.OK++
			case history.Fail:
				r.Transfers.Fail++
			default:
				r.Transfers.Info++
			}
		case "bank-read", "bank-final-read":
			if p.Outcome() != history.OK {
				continue
			}
			r.Reads++
			bal := p.Completion.Balances
			sum, why := 0, ""
			for _, b := range bal {
				sum += b
				if b < 0 && why == "" {
					why = "negative balance"
				}
			}
			if sum != total {
				why = fmt.Sprintf("sum %d, want %d", sum, total)
			}
			if why != "" {
				r.Valid = false
				r.BadCount++
				if len(r.Bad) < 10 {
					r.Bad = append(r.Bad, Bad{Index: p.Completion.Index, Node: p.Completion.Node, Balances: bal, Why: why})
				}
			}
		}
	}
	if r.Reads == 0 {
		r.Valid = false
		r.Bad = append(r.Bad, Bad{Why: "no successful read: nothing was checked"})
	}
	return r
}

func (r BankResult) String() string {
	var b strings.Builder
	verdict := "valid"
	if !r.Valid {
		verdict = "INVALID"
	}
	fmt.Fprintf(&b, "bank: %s — total %d; transfers %d ok, %d fail, %d unknown; %d reads of all balances, %d wrong",
		verdict, r.Total, r.Transfers.OK, r.Transfers.Fail, r.Transfers.Info, r.Reads, r.BadCount)
	for _, x := range r.Bad {
		fmt.Fprintf(&b, "\n  #%d via %s: %v: %s", x.Index, x.Node, x.Balances, x.Why)
	}
	return b.String()
}
