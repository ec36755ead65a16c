//go:build !cairn_bug_txn_no_validate

package fsm

// bugSkipReadValidation is false in every normal build: see
// bug_txn_no_validate.go.
const bugSkipReadValidation = false
