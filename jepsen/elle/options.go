package elle

import (
	"errors"
	"fmt"
)

// Model is the consistency model a history is checked against.
type Model string

// The models Check understands, weakest first.
const (
	// Serializable: the committed transactions (and any unknown ones that
	// took effect) must be equivalent to some serial order.
	Serializable Model = "serializable"
	// StrongSessionSerializable adds the order of each process: a process's
	// transactions take effect in the order it ran them.
	StrongSessionSerializable Model = "strong-session-serializable"
	// StrictSerializable adds real time: a transaction that completed before
	// another was invoked takes effect first. It implies the process order.
	StrictSerializable Model = "strict-serializable"
)

// DefaultSearchBudget is the default for Options.SearchBudget.
const DefaultSearchBudget = 1 << 22

// Options configure Check. The zero value checks serializability and keeps
// every anomaly found.
type Options struct {
	// Model is the model the system claims. Empty means Serializable.
	Model Model
	// MaxExamples caps how many anomalies of each type Result.Anomalies
	// keeps; Result.Counts stays exact. Zero keeps all of them.
	MaxExamples int
	// SearchBudget bounds the work spent looking for a cycle of one type in
	// one strongly connected component, counted in visited (transaction,
	// search state) pairs. A component always yields at least one cycle;
	// the budget only limits how hard Check tries to find one of every
	// type. Zero means DefaultSearchBudget.
	SearchBudget int
}

// DefaultOptions returns the options a Cairn run uses: strict
// serializability, at most 20 examples of each anomaly type.
func DefaultOptions() Options {
	return Options{Model: StrictSerializable, MaxExamples: 20, SearchBudget: DefaultSearchBudget}
}

// Validate reports every problem with the options.
func (o Options) Validate() error {
	var errs []error
	switch o.Model {
	case "", Serializable, StrongSessionSerializable, StrictSerializable:
	default:
		errs = append(errs, fmt.Errorf("elle: unknown model %q", o.Model))
	}
	if o.MaxExamples < 0 {
		errs = append(errs, fmt.Errorf("elle: MaxExamples %d is negative", o.MaxExamples))
	}
	if o.SearchBudget < 0 {
		errs = append(errs, fmt.Errorf("elle: SearchBudget %d is negative", o.SearchBudget))
	}
	return errors.Join(errs...)
}

// withDefaults fills the zero fields.
func (o Options) withDefaults() Options {
	if o.Model == "" {
		o.Model = Serializable
	}
	if o.SearchBudget == 0 {
		o.SearchBudget = DefaultSearchBudget
	}
	return o
}

// extraEdges returns the non-data edge kind the model adds, and the suffix
// naming cycles that need it.
func (m Model) extraEdges() (edgeKind, string) {
	switch m {
	case StrictSerializable:
		return kindRealtime, "-realtime"
	case StrongSessionSerializable:
		return kindProcess, "-process"
	}
	return 0, ""
}
