package jepsen

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cairndb/cairn/jepsen/checker"
	"github.com/cairndb/cairn/jepsen/elle"
	"github.com/cairndb/cairn/jepsen/history"
)

// Report is what a run found.
type Report struct {
	Options       Options                 `json:"options"`
	Dir           string                  `json:"dir"`
	Mode          string                  `json:"mode"`
	Events        int                     `json:"events"`
	ClientTime    time.Duration           `json:"client_time_ns"`
	Counts        Counts                  `json:"counts"`
	OKPerSecond   float64                 `json:"ok_per_second"`
	Windows       []WindowStats           `json:"windows"`
	Register      *checker.RegisterResult `json:"register,omitempty"`
	Set           *checker.SetResult      `json:"set,omitempty"`
	DocSet        *checker.SetResult      `json:"docset,omitempty"`
	Unique        *UniqueResult           `json:"unique,omitempty"`
	Bank          *checker.BankResult     `json:"bank,omitempty"`
	Append        *elle.Result            `json:"append,omitempty"`
	Convergence   ConvergenceResult       `json:"convergence"`
	Membership    MembershipResult        `json:"membership"`
	FinalErrors   []string                `json:"final_errors,omitempty"`
	NemesisErrors string                  `json:"nemesis_errors,omitempty"`
	Valid         bool                    `json:"valid"`
	Verdicts      map[string]string       `json:"verdicts"`
}

// Counts tallies client operations by outcome.
type Counts struct {
	OK   int `json:"ok"`
	Fail int `json:"fail"`
	Info int `json:"info"`
}

func (c *Counts) add(t history.Type) {
	switch t {
	case history.OK:
		c.OK++
	case history.Fail:
		c.Fail++
	default:
		c.Info++
	}
}

// WindowStats counts the operations invoked while one fault was active,
// or while none was (F "none").
type WindowStats struct {
	F      string        `json:"f"`
	Desc   string        `json:"desc"`
	Start  time.Duration `json:"start_ns"`
	End    time.Duration `json:"end_ns"`
	Counts Counts        `json:"counts"`
}

func (r *Report) summarize(ops []history.Op) {
	pairs, err := history.Pairs(ops)
	if err != nil {
		r.FinalErrors = append(r.FinalErrors, err.Error())
		return
	}
	wins := history.Windows(ops)
	var end int64
	if len(ops) > 0 {
		end = ops[len(ops)-1].Time
	}
	stats := make([]WindowStats, len(wins))
	for i, w := range wins {
		e := w.End
		if e < 0 {
			e = end
		}
		stats[i] = WindowStats{F: w.F, Desc: w.Desc, Start: time.Duration(w.Start), End: time.Duration(e)}
	}
	var healthy Counts
	for _, p := range pairs {
		t := p.Outcome()
		r.Counts.add(t)
		at, in := time.Duration(p.Invoke.Time), false
		for i := range stats {
			if at >= stats[i].Start && at < stats[i].End {
				stats[i].Counts.add(t)
				in = true
			}
		}
		if !in {
			healthy.add(t)
		}
	}
	r.Windows = append(stats, WindowStats{F: "none", Desc: "no fault active (final reads included)", End: time.Duration(end), Counts: healthy})
	if r.ClientTime > 0 {
		r.OKPerSecond = float64(r.Counts.OK) / r.ClientTime.Seconds()
	}
}

func (r *Report) decide() {
	r.Verdicts = map[string]string{}
	r.Valid = true
	verdict := func(name string, ok bool, text string) {
		if !ok {
			r.Valid = false
		}
		r.Verdicts[name] = text
	}
	if r.Register != nil {
		verdict("register", r.Register.Valid, r.Register.String())
	}
	if r.Set != nil {
		verdict("set", r.Set.Valid, r.Set.String())
	}
	if r.DocSet != nil {
		verdict("docset", r.DocSet.Valid, "documents "+r.DocSet.String())
	}
	if r.Unique != nil {
		verdict("unique", r.Unique.Valid, r.Unique.String())
	}
	if r.Bank != nil {
		verdict("bank", r.Bank.Valid, r.Bank.String())
	}
	if r.Append != nil {
		verdict("append", r.Append.Valid, "append (Elle, strict serializable): "+firstLines(r.Append.String(), 12))
	}
	verdict("convergence", r.Convergence.Valid, r.Convergence.String())
	verdict("membership", r.Membership.Valid, r.Membership.String())
	if len(r.FinalErrors) > 0 {
		verdict("recovery", false, "recovery: "+strings.Join(r.FinalErrors, "; "))
	}
}

// String is the run's summary as printed and written to summary.txt.
func (r *Report) String() string {
	var b strings.Builder
	o := r.Options
	fmt.Fprintf(&b, "workload %s, nemesis %s, %d nodes (%s), %v at %.0f ops/s, %d clients, seed %d",
		strings.Join(o.Workloads, "+"), nemesisLabel(o.Nemeses), o.Nodes, r.Mode, o.Duration, o.Rate, o.Clients, o.Seed)
	if o.Bug != "" {
		fmt.Fprintf(&b, ", PLANTED BUG %s", o.Bug)
	}
	fmt.Fprintf(&b, "\nrun folder: %s\n", r.Dir)
	fmt.Fprintf(&b, "operations: %d ok, %d fail, %d info; %.0f ok/s over %v of client time\n\n",
		r.Counts.OK, r.Counts.Fail, r.Counts.Info, r.OKPerSecond, r.ClientTime.Round(time.Second))
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "window\tfrom\tto\tok\tfail\tinfo\tfault")
	for _, w := range r.Windows {
		fmt.Fprintf(tw, "%s\t%.1fs\t%.1fs\t%d\t%d\t%d\t%s\n", w.F, w.Start.Seconds(), w.End.Seconds(), w.Counts.OK, w.Counts.Fail, w.Counts.Info, w.Desc)
	}
	tw.Flush()
	if r.NemesisErrors != "" {
		fmt.Fprintf(&b, "\nnemesis errors: %s\n", r.NemesisErrors)
	}
	b.WriteString("\n")
	for _, k := range []string{"register", "set", "docset", "unique", "bank", "append", "convergence", "membership", "recovery"} {
		if v, ok := r.Verdicts[k]; ok {
			b.WriteString(v + "\n")
		}
	}
	if r.Valid {
		b.WriteString("\nVERDICT: valid\n")
	} else {
		b.WriteString("\nVERDICT: INVALID\n")
	}
	return b.String()
}

func (r *Report) write(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "summary.txt"), []byte(r.String()), 0o644); err != nil {
		return err
	}
	return writeJSON(filepath.Join(dir, "report.json"), r)
}

// firstLines keeps the first n lines of s (the rest is in the run folder).
func firstLines(s string, n int) string {
	lines := strings.SplitN(strings.TrimRight(s, "\n"), "\n", n+1)
	if len(lines) > n {
		lines = append(lines[:n], "…")
	}
	return strings.Join(lines, "\n")
}
