package elle

import (
	"encoding/json"
	"testing"
)

// FuzzCheck feeds arbitrary JSON histories to Check: it may reject them,
// but must never panic, and a valid verdict must come without anomalies.
func FuzzCheck(f *testing.F) {
	seeds := [][]Op{
		new(builder).txn(1, OK, app("x", 1)).txn(2, OK, r("x", 1)).ops,
		new(builder).
			invoke(1, app("x", 1), app("y", 1)).
			invoke(2, app("x", 2), app("y", 2)).
			end(1, OK, app("x", 1), app("y", 1)).
			end(2, OK, app("x", 2), app("y", 2)).
			txn(3, OK, r("x", 1, 2), r("y", 2, 1)).ops,
		new(builder).txn(1, Fail, app("x", 1)).txn(2, Info, r("x"), app("x", 2)).txn(3, OK, r("x", 2, 1, 1, 9)).ops,
	}
	for _, h := range seeds {
		data, err := json.Marshal(h)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var h []Op
		if json.Unmarshal(data, &h) != nil {
			return
		}
		for _, m := range models() {
			res, err := Check(h, Options{Model: m, SearchBudget: 1000})
			if err != nil {
				continue
			}
			if res.Valid != (len(res.Anomalies) == 0) {
				t.Fatalf("%s: Valid = %v with %d anomalies", m, res.Valid, len(res.Anomalies))
			}
			_ = res.String()
		}
	})
}
