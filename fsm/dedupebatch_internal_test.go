package fsm

import (
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

// A batch decodes to the records it was made of, and a damaged one gives an
// error instead of a panic or a made-up record.
func TestDedupeBatchEncoding(t *testing.T) {
	recs := []dedupeRecord{
		{id: "a", index: 7, seq: 11, result: []byte{1, 2, 3}},
		{id: "request-two", index: 7, seq: 12, result: nil},
		{id: "c", index: 9, seq: 15, result: make([]byte, 300)},
	}
	b := encodeDedupeBatch(recs)
	if got := binary.BigEndian.Uint64(b); got != 9 {
		t.Fatalf("batch header %d, want the last record's index 9", got)
	}
	var got []dedupeRecord
	if err := decodeDedupeBatch(b, func(r dedupeRecord) bool { got = append(got, r); return true }); err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if len(got[i].result) == 0 {
			got[i].result = nil
		}
	}
	if !reflect.DeepEqual(got, recs) {
		t.Fatalf("decoded %+v, want %+v", got, recs)
	}
	// Every truncation inside a record is an error.
	ends := map[int]bool{8: true}
	n := 8
	for _, r := range recs {
		n += len(r.append(nil))
		ends[n] = true
	}
	for cut := 0; cut < len(b); cut++ {
		err := decodeDedupeBatch(b[:cut], func(dedupeRecord) bool { return true })
		if ends[cut] != (err == nil) {
			t.Fatalf("cut at %d of %d: %v", cut, len(b), err)
		}
	}
	// A length beyond the batch, even one that wraps around when added to.
	huge := binary.AppendUvarint(binary.BigEndian.AppendUint64(nil, 1), ^uint64(0)-3)
	if err := decodeDedupeBatch(append(huge, make([]byte, 20)...), func(dedupeRecord) bool { return true }); !errors.Is(err, errDedupeBatch) {
		t.Fatalf("huge length: %v", err)
	}
}
