//go:build cairn_bug_txn_no_validate

package fsm

// bugSkipReadValidation is a planted bug for the Jepsen harness to find:
// built with the cairn_bug_txn_no_validate tag, a cross-shard prepare locks
// its keys without checking that the versions the transaction read are
// still current, so a transaction can commit on stale reads (lost updates,
// G-single). Never build a release with this tag.
const bugSkipReadValidation = true
