package checker

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cairndb/cairn/jepsen/history"
)

// Set workload operations.
const (
	FAdd       = "add"
	FRead      = "read"
	FFinalRead = "final-read"
)

// MaxListed caps the element lists of a SetResult.
const MaxListed = 32

// maxExamples caps the examples given per kind of violation.
const maxExamples = 3

// SetResult is the verdict of CheckSet. The counts are of distinct
// elements; the element lists are sorted and hold at most MaxListed.
type SetResult struct {
	Valid bool `json:"valid"`

	Attempted     int `json:"attempted"`     // adds invoked
	Acknowledged  int `json:"acknowledged"`  // adds that completed ok
	Failed        int `json:"failed"`        // adds that certainly did not happen
	Indeterminate int `json:"indeterminate"` // adds of unknown outcome (info or no completion)

	Reads      int `json:"reads"`       // successful reads during the run
	FinalReads int `json:"final_reads"` // successful final reads

	Lost       int `json:"lost"`       // known elements missing from a later final read
	Unexpected int `json:"unexpected"` // read, but never attempted or failed
	Stale      int `json:"stale"`      // known elements missing from a later read during the run
	Recovered  int `json:"recovered"`  // adds of unknown outcome seen by a final read

	LostElements       []int `json:"lost_elements,omitempty"`
	UnexpectedElements []int `json:"unexpected_elements,omitempty"`
	StaleElements      []int `json:"stale_elements,omitempty"`
	RecoveredElements  []int `json:"recovered_elements,omitempty"`

	// Explanation says why the set is not valid, with examples.
	Explanation string `json:"explanation,omitempty"`
}

// String is a summary for the run report.
func (r SetResult) String() string {
	var b strings.Builder
	if r.Valid {
		b.WriteString("set: valid")
	} else {
		b.WriteString("set: INVALID")
	}
	fmt.Fprintf(&b, " — adds: %d attempted, %d acknowledged, %d failed, %d unknown (%d recovered); reads: %d during the run, %d final; lost %d, unexpected %d, stale %d\n",
		r.Attempted, r.Acknowledged, r.Failed, r.Indeterminate, r.Recovered, r.Reads, r.FinalReads, r.Lost, r.Unexpected, r.Stale)
	for _, l := range []struct {
		name  string
		n     int
		elems []int
	}{{"lost", r.Lost, r.LostElements}, {"unexpected", r.Unexpected, r.UnexpectedElements}, {"stale", r.Stale, r.StaleElements}} {
		if l.n > 0 {
			fmt.Fprintf(&b, "%s: %s\n", l.name, listInts(l.elems, l.n))
		}
	}
	if r.Explanation != "" {
		b.WriteString(r.Explanation)
		if !strings.HasSuffix(r.Explanation, "\n") {
			b.WriteString("\n")
		}
	}
	return b.String()
}

func listInts(elems []int, total int) string {
	s := make([]string, len(elems))
	for i, e := range elems {
		s[i] = fmt.Sprint(e)
	}
	out := strings.Join(s, " ")
	if total > len(elems) {
		out += fmt.Sprintf(" … (%d more)", total-len(elems))
	}
	return out
}

// setAdd is what the history says about one element's add.
type setAdd struct {
	outcome history.Type
	inv     history.Op
	acked   int64 // completion time of an ok add
	comp    int   // index of the completion event, -1 when none
}

// setRead is one successful read.
type setRead struct {
	inv, comp history.Op
	final     bool
	elems     []int // sorted
}

func (r setRead) has(e int) bool {
	_, ok := slices.BinarySearch(r.elems, e)
	return ok
}

func (r setRead) name() string {
	s := "read"
	if r.final {
		s = "final read"
	}
	s += fmt.Sprintf(" #%d-#%d (process %d", r.inv.Index, r.comp.Index, r.inv.Process)
	if n := r.comp.Node; n != "" {
		s += ", node " + n
	} else if n := r.inv.Node; n != "" {
		s += ", node " + n
	}
	return s + fmt.Sprintf(", invoked at %s)", time.Duration(r.inv.Time))
}

// CheckSet checks the set operations of a history (F add, read and
// final-read; other workloads' operations are ignored); see the package
// documentation for the definitions.
func CheckSet(ops []history.Op) SetResult {
	var res SetResult
	pairs, err := history.Pairs(ops)
	if err != nil {
		res.Explanation = err.Error()
		return res
	}

	adds := map[int]*setAdd{}
	var reads []setRead
	finalAttempts := 0
	var problems []string
	for _, p := range pairs {
		inv := p.Invoke
		switch inv.F {
		case FAdd:
			res.Attempted++
			if inv.Element == nil {
				problems = append(problems, fmt.Sprintf("add event %d has no element", inv.Index))
				continue
			}
			a := &setAdd{outcome: p.Outcome(), inv: inv, comp: -1}
			if p.Completion != nil {
				a.comp = p.Completion.Index
			}
			if a.outcome == history.OK {
				a.acked = p.Completion.Time
			}
			// Elements are meant to be unique; if one is added twice,
			// keep what says most: an ok over an unknown over a fail.
			if old, dup := adds[*inv.Element]; !dup || setRank(a.outcome) > setRank(old.outcome) ||
				(a.outcome == history.OK && old.outcome == history.OK && a.acked < old.acked) {
				adds[*inv.Element] = a
			}
			switch a.outcome {
			case history.OK:
				res.Acknowledged++
			case history.Fail:
				res.Failed++
			default:
				res.Indeterminate++
			}
		case FRead, FFinalRead:
			final := inv.F == FFinalRead
			if final {
				finalAttempts++
			}
			if p.Outcome() != history.OK {
				continue
			}
			elems := slices.Clone(p.Completion.Elements)
			slices.Sort(elems)
			reads = append(reads, setRead{inv: inv, comp: *p.Completion, final: final, elems: elems})
			if final {
				res.FinalReads++
			} else {
				res.Reads++
			}
		default:
			// Another workload's operation.
		}
	}

	// An element is known to be in the set from its acknowledgement or the
	// completion of the first read that returned it, whichever is first.
	// Elements read that were never attempted, or whose add failed, are
	// unexpected instead.
	known := map[int]int64{}
	for e, a := range adds {
		if a.outcome == history.OK {
			known[e] = a.acked
		}
	}
	unexpected := map[int]bool{}
	var unexpectedEx []string
	for _, r := range reads {
		for _, e := range r.elems {
			a := adds[e]
			if a == nil || a.outcome == history.Fail {
				if !unexpected[e] && len(unexpectedEx) < maxExamples {
					why := "no add of it was attempted"
					if a != nil {
						why = fmt.Sprintf("its add #%d-#%d failed", a.inv.Index, a.comp)
					}
					unexpectedEx = append(unexpectedEx, fmt.Sprintf("element %d returned by %s, but %s", e, r.name(), why))
				}
				unexpected[e] = true
				continue
			}
			if t, ok := known[e]; !ok || r.comp.Time < t {
				known[e] = r.comp.Time
			}
		}
	}

	// Every read invoked after an element was known must return it.
	order := make([]int, 0, len(known))
	for e := range known {
		order = append(order, e)
	}
	sort.Slice(order, func(i, j int) bool {
		if known[order[i]] != known[order[j]] {
			return known[order[i]] < known[order[j]]
		}
		return order[i] < order[j]
	})
	lost, stale := map[int]bool{}, map[int]bool{}
	var lostEx, staleEx []string
	for _, r := range reads {
		n := sort.Search(len(order), func(i int) bool { return known[order[i]] >= r.inv.Time })
		for _, e := range order[:n] {
			if r.has(e) {
				continue
			}
			m, ex := stale, &staleEx
			if r.final {
				m, ex = lost, &lostEx
			}
			if !m[e] && len(*ex) < maxExamples {
				*ex = append(*ex, fmt.Sprintf("element %d, %s, is missing from %s", e, knownHow(adds[e], known[e]), r.name()))
			}
			m[e] = true
		}
	}
	for e := range lost {
		delete(stale, e)
	}
	recovered := map[int]bool{}
	for _, r := range reads {
		if !r.final {
			continue
		}
		for _, e := range r.elems {
			if a := adds[e]; a != nil && a.outcome != history.OK && a.outcome != history.Fail && !lost[e] {
				recovered[e] = true
			}
		}
	}

	res.Lost, res.LostElements = len(lost), capped(lost)
	res.Unexpected, res.UnexpectedElements = len(unexpected), capped(unexpected)
	res.Stale, res.StaleElements = len(stale), capped(stale)
	res.Recovered, res.RecoveredElements = len(recovered), capped(recovered)

	var why []string
	why = append(why, problems...)
	if res.FinalReads == 0 {
		why = append(why, fmt.Sprintf("no final read completed ok (%d attempted), so nothing shows that acknowledged adds survived", finalAttempts))
	}
	if res.Lost > 0 {
		why = append(why, fmt.Sprintf("%d elements lost, e.g. %s", res.Lost, strings.Join(lostEx, "; ")))
	}
	if res.Unexpected > 0 {
		why = append(why, fmt.Sprintf("%d unexpected elements, e.g. %s", res.Unexpected, strings.Join(unexpectedEx, "; ")))
	}
	if res.Stale > 0 {
		why = append(why, fmt.Sprintf("%d elements missing from reads during the run after they were known (stale reads), e.g. %s", res.Stale, strings.Join(staleEx, "; ")))
	}
	res.Valid = len(why) == 0
	if len(why) > 0 {
		res.Explanation = strings.Join(why, "\n") + "\n"
	}
	return res
}

func setRank(t history.Type) int {
	switch t {
	case history.OK:
		return 2
	case history.Fail:
		return 0
	}
	return 1
}

func knownHow(a *setAdd, at int64) string {
	if a != nil && a.outcome == history.OK && a.acked == at {
		return fmt.Sprintf("acknowledged at %s (add #%d-#%d)", time.Duration(at), a.inv.Index, a.comp)
	}
	return fmt.Sprintf("returned by a read that completed at %s", time.Duration(at))
}

// capped returns the smallest MaxListed elements of m, sorted.
func capped(m map[int]bool) []int {
	if len(m) == 0 {
		return nil
	}
	out := make([]int, 0, len(m))
	for e := range m {
		out = append(out, e)
	}
	slices.Sort(out)
	if len(out) > MaxListed {
		out = out[:MaxListed]
	}
	return out
}
