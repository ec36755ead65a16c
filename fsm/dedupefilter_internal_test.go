package fsm

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// Every record live at an entry is reported as maybe present there, across
// generations and jumps of the index; records three generations gone are
// forgotten.
func TestDedupeFilterKeepsLiveRecords(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	d := &dedupeFilter{}
	type rec struct {
		index uint64
		id    string
	}
	var recs []rec
	index := uint64(1)
	for step := range 4000 {
		switch r.IntN(10) {
		case 0:
			index += uint64(r.IntN(3 * dedupeGen)) // a long gap
		default:
			index += uint64(r.IntN(200))
		}
		id := fmt.Sprintf("req-%d", step)
		d.add(index, id)
		recs = append(recs, rec{index, id})
		if step%10 != 0 {
			continue
		}
		for _, old := range recs {
			if !dedupeExpired(old.index, index) && !d.mayHave(index, old.id) {
				t.Fatalf("step %d: %s recorded at %d is live at %d but not in the filter", step, old.id, old.index, index)
			}
		}
	}
	// Three generations on, the first records are gone from it.
	d.add(index+3*dedupeGen, "late")
	gone := 0
	for _, old := range recs[len(recs)-100:] {
		if !d.mayHave(index+3*dedupeGen, old.id) {
			gone++
		}
	}
	if gone < 95 {
		t.Fatalf("only %d of 100 expired records left the filter", gone)
	}
}
