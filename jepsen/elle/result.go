package elle

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strings"
)

// AnomalyType names a kind of anomaly. Cycle types may carry a suffix,
// "-process" or "-realtime", when the cycle needs an edge of that kind: the
// history is serializable as far as data goes but breaks the stronger model.
type AnomalyType string

// The anomaly types Check reports. See the package documentation.
const (
	G0                AnomalyType = "G0"
	G1a               AnomalyType = "G1a"
	G1b               AnomalyType = "G1b"
	G1c               AnomalyType = "G1c"
	GSingle           AnomalyType = "G-single"
	G2Item            AnomalyType = "G2-item"
	Internal          AnomalyType = "internal"
	DuplicateElements AnomalyType = "duplicate-elements"
	IncompatibleOrder AnomalyType = "incompatible-order"
	GarbageRead       AnomalyType = "garbage-read"
)

// base returns the type without its "-process" or "-realtime" suffix.
func (a AnomalyType) base() AnomalyType {
	s := string(a)
	s = strings.TrimSuffix(s, "-process")
	s = strings.TrimSuffix(s, "-realtime")
	return AnomalyType(s)
}

// Describe says in one sentence what the anomaly means.
func (a AnomalyType) Describe() string {
	var d string
	switch a.base() {
	case G0:
		d = "write cycle: the transactions' appends interleave in a way no serial order produces (ww edges only)"
	case G1a:
		d = "aborted read: a committed read observed an append of a transaction that failed"
	case G1b:
		d = "intermediate read: a read observed a state of a key that its writer overwrote within the same transaction"
	case G1c:
		d = "circular information flow: each transaction in the cycle wrote or saw data before the next (ww and wr edges only)"
	case GSingle:
		d = "read skew or lost update: a dependency cycle with exactly one anti-dependency (rw) edge"
	case G2Item:
		d = "write skew: a dependency cycle with two or more anti-dependency (rw) edges"
	case Internal:
		d = "a transaction's read disagrees with its own earlier reads and appends of the same key"
	case DuplicateElements:
		d = "a read returned a list holding the same value twice, though every value is appended once"
	case IncompatibleOrder:
		d = "two reads of a key are not prefixes of one another, so no single order of appends explains both"
	case GarbageRead:
		d = "a read returned a value no transaction ever appended to that key"
	default:
		return "unknown anomaly"
	}
	switch {
	case strings.HasSuffix(string(a), "-realtime"):
		d += "; the cycle needs real-time edges, so it only breaks strict serializability"
	case strings.HasSuffix(string(a), "-process"):
		d += "; the cycle needs process-order edges, so it only breaks strong-session serializability"
	}
	return d
}

// Anomaly is one problem found in a history.
type Anomaly struct {
	Type AnomalyType `json:"type"`
	// Ops are the transactions involved, each as its completion event
	// (its invocation if it never completed) carrying the transaction's
	// micro-operations.
	Ops []Op `json:"ops"`
	// Key is the key concerned, for anomalies about a single key.
	Key string `json:"key,omitempty"`
	// Cycle is the dependency cycle, for G0, G1c, G-single and G2-item:
	// each edge's To is the next edge's From, and the last edge returns to
	// the first edge's From.
	Cycle []Edge `json:"cycle,omitempty"`
	// Explanation tells a person, step by step, why this is an anomaly.
	Explanation string `json:"explanation"`
}

// Edge is one dependency in a cycle: From must take effect before To.
type Edge struct {
	From string `json:"from"` // transaction name, "T" and its completion's Index
	To   string `json:"to"`
	// Kind is "ww", "wr", "rw", "process" or "realtime".
	Kind string `json:"kind"`
	// Why is the evidence for the edge, in words.
	Why string `json:"why"`
}

// Counts summarise the history and what Check found.
type Counts struct {
	Events int `json:"events"`
	Txns   int `json:"txns"`
	OK     int `json:"ok"`
	Fail   int `json:"fail"`
	Info   int `json:"info"`
	Keys   int `json:"keys"`
	// Edges is the number of distinct ordered transaction pairs in the
	// dependency graph.
	Edges int `json:"edges"`
	// Components is the number of strongly connected components with more
	// than one transaction: each holds at least one cycle.
	Components int `json:"components"`
	// Anomalies counts every anomaly found, by type, including those left
	// out of Result.Anomalies by Options.MaxExamples.
	Anomalies map[AnomalyType]int `json:"anomalies"`
	// Omitted is how many anomalies were left out of Result.Anomalies.
	Omitted int `json:"omitted"`
}

// Result is the verdict of Check. It marshals to JSON as is.
type Result struct {
	// Valid is true when no anomaly was found.
	Valid bool  `json:"valid"`
	Model Model `json:"model"`
	// AnomalyTypes lists the types found, sorted.
	AnomalyTypes []AnomalyType `json:"anomaly_types"`
	Anomalies    []Anomaly     `json:"anomalies"`
	Counts       Counts        `json:"counts"`
}

// WriteText writes the result as a report a person can read: the verdict,
// the counts, and every anomaly kept with its explanation.
func (r *Result) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	verdict := "VALID"
	if !r.Valid {
		verdict = "INVALID"
	}
	c := r.Counts
	fmt.Fprintf(bw, "Elle list-append check against %s: %s\n", r.Model, verdict)
	fmt.Fprintf(bw, "%d events, %d transactions (%d ok, %d fail, %d info), %d keys, %d dependency edges, %d cyclic components\n",
		c.Events, c.Txns, c.OK, c.Fail, c.Info, c.Keys, c.Edges, c.Components)
	if len(r.AnomalyTypes) > 0 {
		fmt.Fprintf(bw, "\nAnomalies found:\n")
		for _, t := range r.AnomalyTypes {
			fmt.Fprintf(bw, "  %-22s %6d  %s\n", t, c.Anomalies[t], t.Describe())
		}
		if c.Omitted > 0 {
			fmt.Fprintf(bw, "  (%d more not shown below)\n", c.Omitted)
		}
	}
	seen := make(map[AnomalyType]int)
	for _, a := range r.Anomalies {
		seen[a.Type]++
		fmt.Fprintf(bw, "\n--- %s #%d ---\n%s\n", a.Type, seen[a.Type], strings.TrimRight(a.Explanation, "\n"))
	}
	return bw.Flush()
}

// String returns the WriteText report.
func (r *Result) String() string {
	var b strings.Builder
	_ = r.WriteText(&b) // a strings.Builder never fails
	return b.String()
}

// collector gathers anomalies, keeping counts exact and examples bounded.
type collector struct {
	max       int
	anomalies []Anomaly
	counts    map[AnomalyType]int
	omitted   int
}

// keep counts one anomaly of type t and reports whether to store it.
func (c *collector) keep(t AnomalyType) bool {
	c.counts[t]++
	if c.max > 0 && c.counts[t] > c.max {
		c.omitted++
		return false
	}
	return true
}

func (c *collector) types() []AnomalyType {
	out := make([]AnomalyType, 0, len(c.counts))
	for t := range c.counts {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}
