package checker

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairndb/cairn/jepsen/history"
)

func checkReg(t *testing.T, ops []history.Op) RegisterResult {
	t.Helper()
	res, err := CheckRegister(ops, RegisterOptions{Timeout: time.Minute})
	if err != nil {
		t.Fatalf("CheckRegister: %v", err)
	}
	return res
}

func TestRegisterValidHistories(t *testing.T) {
	cases := []struct {
		name  string
		build func(h *hist)
	}{
		{"sequential", func(h *hist) {
			h.sGet(0, "x", nil).sPut(0, "x", 1).sGet(1, "x", iv(1)).sPut(1, "x", 2).sGet(0, "x", iv(2))
		}},
		{"read overlapping a put sees the old value", func(h *hist) {
			h.sPut(0, "x", 1)
			h.put(0, "x", 2).get(1, "x").read(1, iv(1)).ok(0)
			h.sGet(1, "x", iv(2))
		}},
		{"read overlapping a put sees the new value", func(h *hist) {
			h.sPut(0, "x", 1)
			h.put(0, "x", 2).get(1, "x").read(1, iv(2)).ok(0)
			h.sGet(1, "x", iv(2))
		}},
		{"concurrent puts take effect in either order", func(h *hist) {
			h.put(0, "x", 1).put(1, "x", 2).ok(1).ok(0)
			h.sGet(2, "x", iv(1)).sGet(2, "x", iv(1))
		}},
		{"concurrent reads see a put in real-time order", func(h *hist) {
			h.put(0, "x", 1).get(1, "x").get(2, "x").read(1, nil).read(2, iv(1)).ok(0)
		}},
		{"info put observed later", func(h *hist) {
			h.sPut(0, "x", 1).put(0, "x", 2).info(0)
			h.sGet(1, "x", iv(1)).sGet(1, "x", iv(2)).sGet(1, "x", iv(2))
		}},
		{"info put never observed", func(h *hist) {
			h.sPut(0, "x", 1).put(0, "x", 2).info(0)
			h.sGet(1, "x", iv(1)).sGet(1, "x", iv(1))
		}},
		{"put without completion observed", func(h *hist) {
			h.sPut(1, "x", 1).put(0, "x", 2).sGet(1, "x", iv(1)).sGet(1, "x", iv(2))
		}},
		{"cas success and mismatch", func(h *hist) {
			h.sPut(0, "x", 1)
			h.cas(0, "x", 1, 2).ok(0)
			h.sGet(1, "x", iv(2))
			h.cas(1, "x", 1, 3).fail(1, ErrorVersionMismatch)
			h.sGet(0, "x", iv(2))
		}},
		{"cas mismatch on an absent key", func(h *hist) {
			h.cas(0, "x", 1, 2).fail(0, ErrorVersionMismatch).sGet(0, "x", nil)
		}},
		{"cas mismatch explained by a concurrent put", func(h *hist) {
			h.sPut(0, "x", 1)
			h.cas(0, "x", 1, 2).sPut(1, "x", 3).fail(0, ErrorVersionMismatch)
			h.sGet(1, "x", iv(3))
		}},
		{"cas that failed otherwise did not happen", func(h *hist) {
			h.sPut(0, "x", 1).cas(0, "x", 1, 2).fail(0, "unavailable").sGet(0, "x", iv(1))
		}},
		{"info cas applied later", func(h *hist) {
			h.sPut(0, "x", 1).cas(0, "x", 1, 2).info(0)
			h.sGet(1, "x", iv(1)).sGet(1, "x", iv(2))
		}},
		{"info cas never applied", func(h *hist) {
			h.sPut(0, "x", 1).cas(0, "x", 1, 2).info(0)
			h.sGet(1, "x", iv(1)).sPut(1, "x", 3).sGet(1, "x", iv(3))
		}},
		{"info cas whose condition never holds", func(h *hist) {
			h.sPut(0, "x", 3).cas(0, "x", 1, 2).info(0)
			h.sGet(1, "x", iv(3)).sGet(1, "x", iv(3))
		}},
		{"deletes", func(h *hist) {
			h.sPut(0, "x", 1).sDel(0, "x").sGet(1, "x", nil).sPut(1, "x", 2).sGet(0, "x", iv(2))
			h.del(0, "x").info(0)
			h.sGet(1, "x", iv(2)).sGet(1, "x", nil)
		}},
		{"cas on a deleted key mismatches", func(h *hist) {
			h.sPut(0, "x", 1).sDel(0, "x").cas(0, "x", 1, 2).fail(0, ErrorVersionMismatch)
		}},
		{"failed put and info get are left out", func(h *hist) {
			h.sPut(0, "x", 1).put(0, "x", 2).fail(0, "not_leader")
			h.get(1, "x").info(1)
			h.sGet(2, "x", iv(1))
		}},
		{"empty history", func(h *hist) {}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHist()
			c.build(h)
			res := checkReg(t, h.ops)
			if !res.Valid || res.Unknown || len(res.FailedKeys) != 0 {
				t.Fatalf("want valid, got %+v\n%s", res, res)
			}
		})
	}
}

func TestRegisterInvalidHistories(t *testing.T) {
	cases := []struct {
		name  string
		build func(h *hist)
	}{
		{"stale read", func(h *hist) {
			h.sPut(0, "x", 1).sPut(0, "x", 2).sGet(1, "x", iv(1))
		}},
		{"lost write", func(h *hist) {
			h.sPut(0, "x", 1).sGet(1, "x", iv(1)).sPut(0, "x", 2)
			h.sGet(1, "x", iv(1)).sGet(2, "x", iv(1)).sGet(1, "x", iv(1))
		}},
		{"read of a value never written", func(h *hist) {
			h.sPut(0, "x", 1).sGet(1, "x", iv(42))
		}},
		{"read of a value whose put failed", func(h *hist) {
			h.sPut(0, "x", 1).put(0, "x", 2).fail(0, "not_leader").sGet(1, "x", iv(2))
		}},
		{"read of a value before its put was invoked", func(h *hist) {
			h.sGet(1, "x", iv(1)).sPut(0, "x", 1)
		}},
		{"cas succeeded though the value was not From", func(h *hist) {
			h.sPut(0, "x", 1).cas(0, "x", 5, 6).ok(0)
		}},
		{"cas succeeded on an absent key", func(h *hist) {
			h.cas(0, "x", 5, 6).ok(0)
		}},
		{"cas mismatch though the value was From", func(h *hist) {
			h.sPut(0, "x", 1).cas(0, "x", 1, 2).fail(0, ErrorVersionMismatch)
		}},
		{"read of the old value after a delete", func(h *hist) {
			h.sPut(0, "x", 1).sDel(0, "x").sGet(1, "x", iv(1))
		}},
		{"read absent after a put", func(h *hist) {
			h.sPut(0, "x", 1).sGet(1, "x", nil)
		}},
		{"info put observed then reverted", func(h *hist) {
			h.sPut(0, "x", 1).put(0, "x", 2).info(0)
			h.sGet(1, "x", iv(2)).sGet(1, "x", iv(1))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHist()
			c.build(h)
			res := checkReg(t, h.ops)
			if res.Valid || res.Unknown || !slices.Equal(res.FailedKeys, []string{"x"}) {
				t.Fatalf("want key x not linearizable, got %+v\n%s", res, res)
			}
			if !strings.Contains(res.Explanation, `key "x" is not linearizable`) {
				t.Fatalf("explanation does not name the key:\n%s", res.Explanation)
			}
		})
	}
}

func TestRegisterCounts(t *testing.T) {
	h := newHist()
	h.sPut(0, "a", 1)                                 // checked
	h.put(0, "a", 2).info(0)                          // checked, unknown
	h.put(1, "b", 3)                                  // checked, no completion: unknown
	h.get(2, "a").info(2)                             // dropped
	h.sDel(2, "b")                                    // checked
	h.cas(2, "a", 1, 4).fail(2, "x")                  // dropped
	h.cas(2, "a", 9, 5).fail(2, ErrorVersionMismatch) // checked
	h.nemesis("start-partition", "n1 | n2 n3")
	h.sGet(2, "c", nil) // checked
	res := checkReg(t, h.ops)
	want := RegisterResult{Valid: true, Keys: 3, Ops: 6, Indeterminate: 2, Dropped: 2}
	res.Explanation = ""
	if !equalResult(res, want) {
		t.Fatalf("got %+v, want %+v", res, want)
	}
}

func equalResult(a, b RegisterResult) bool {
	return a.Valid == b.Valid && a.Unknown == b.Unknown && a.Keys == b.Keys && a.Ops == b.Ops &&
		a.Indeterminate == b.Indeterminate && a.Dropped == b.Dropped &&
		slices.Equal(a.FailedKeys, b.FailedKeys) && slices.Equal(a.UnknownKeys, b.UnknownKeys) &&
		a.Visualization == b.Visualization
}

// A violation on one key must be pinned on that key alone.
func TestRegisterPartitioning(t *testing.T) {
	h := newHist()
	h.put(0, "a", 1).put(1, "b", 2).put(2, "c", 3).ok(0).ok(1).ok(2)
	h.get(0, "a").get(1, "b").get(2, "c").read(0, iv(1)).read(1, iv(2)).read(2, iv(3))
	h.sPut(0, "a", 4).sPut(1, "b", 5).sPut(2, "c", 6)
	h.sGet(0, "a", iv(4)).sGet(1, "b", iv(2)).sGet(2, "c", iv(6)) // b is stale
	h.sGet(0, "d", nil)
	res := checkReg(t, h.ops)
	if res.Valid || res.Unknown || res.Keys != 4 || !slices.Equal(res.FailedKeys, []string{"b"}) {
		t.Fatalf("want only b failed of 4 keys, got %+v", res)
	}
	for _, k := range []string{`"a"`, `"c"`, `"d"`} {
		if strings.Contains(res.Explanation, "key "+k) {
			t.Fatalf("explanation mentions clean key %s:\n%s", k, res.Explanation)
		}
	}
}

func TestRegisterExplanation(t *testing.T) {
	h := newHist()
	h.sPut(0, "x", 1).sPut(0, "x", 2).sGet(1, "x", iv(1))
	res := checkReg(t, h.ops)
	for _, want := range []string{
		`key "x" is not linearizable (3 operations)`,
		`longest linearizable prefix: 2 of 3 operations, ending with put("x", 2) [process 0, events #2-#3, 30ns to 40ns]; the value is then 2`,
		`first operation that cannot be linearized: get("x") -> 1 [process 1, events #4-#5, 50ns to 60ns]`,
	} {
		if !strings.Contains(res.Explanation, want) {
			t.Errorf("explanation lacks %q:\n%s", want, res.Explanation)
		}
	}
	if s := res.String(); !strings.Contains(s, "NOT LINEARIZABLE") || !strings.Contains(s, `failed keys: "x"`) {
		t.Errorf("summary:\n%s", s)
	}

	// When nothing can come first, the explanation says so.
	h = newHist()
	h.sGet(0, "y", iv(7))
	res = checkReg(t, h.ops)
	if !strings.Contains(res.Explanation, "no operation can come first") ||
		!strings.Contains(res.Explanation, `first operation that cannot be linearized: get("y") -> 7`) {
		t.Errorf("explanation:\n%s", res.Explanation)
	}

	// Concurrent candidates are listed.
	h = newHist()
	h.sPut(0, "z", 1).sPut(0, "z", 2).get(1, "z").get(2, "z").read(1, iv(1)).read(2, iv(1))
	res = checkReg(t, h.ops)
	if !strings.Contains(res.Explanation, "could have come next") || strings.Count(res.Explanation, `get("z") -> 1`) != 2 {
		t.Errorf("explanation:\n%s", res.Explanation)
	}
}

func TestRegisterVisualization(t *testing.T) {
	dir := t.TempDir()
	bad := newHist()
	bad.nemesis("start-partition", "isolated n1 from n2 n3")
	bad.sPut(0, "x", 1).sPut(0, "x", 2)
	bad.nemesis("stop-partition", "healed")
	bad.nemesis("start-pause", "SIGSTOP n2")
	bad.sGet(1, "x", iv(1))

	path := filepath.Join(dir, "bad.html")
	res, err := CheckRegister(bad.ops, RegisterOptions{HTMLPath: path})
	if err != nil {
		t.Fatal(err)
	}
	if res.Valid || res.Visualization != path {
		t.Fatalf("got %+v", res)
	}
	html, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"Tag":"nemesis partition"`, `"Description":"partition"`, `"Details":"isolated n1 from n2 n3"`,
		`"Tag":"nemesis pause"`, `SIGSTOP n2 (still active when the history ended)`,
		`"BackgroundColor":"` + nemesisColour + `"`,
		`get(\"x\") -\u003e 1`, "process 1, events #7-#8",
	} {
		if !strings.Contains(string(html), want) {
			t.Errorf("visualization lacks %q", want)
		}
	}
	if !strings.Contains(res.String(), "visualization: "+path) {
		t.Errorf("summary does not give the visualization:\n%s", res)
	}

	// A linearizable history writes nothing unless asked to.
	good := newHist()
	good.nemesis("start-kill", "n3")
	good.sPut(0, "x", 1).sGet(0, "x", iv(1)).sPut(0, "y", 1)
	path = filepath.Join(dir, "good.html")
	res, err = CheckRegister(good.ops, RegisterOptions{HTMLPath: path})
	if err != nil || !res.Valid || res.Visualization != "" {
		t.Fatalf("got %+v, %v", res, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("visualization written for a valid history: %v", err)
	}
	res, err = CheckRegister(good.ops, RegisterOptions{HTMLPath: path, AlwaysVisualize: true})
	if err != nil || !res.Valid || res.Visualization != path {
		t.Fatalf("got %+v, %v", res, err)
	}
	html, err = os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"Description":"kill"`, `put(\"x\", 1)`, `put(\"y\", 1)`} {
		if !strings.Contains(string(html), want) {
			t.Errorf("visualization lacks %q", want)
		}
	}
}

// Several failing keys end up in one visualization.
func TestRegisterVisualizationSeveralKeys(t *testing.T) {
	h := newHist()
	h.nemesis("start-partition", "halves")
	h.sPut(0, "a", 1).sPut(0, "a", 2).sGet(1, "a", iv(1))
	h.sPut(0, "b", 3).sGet(1, "b", iv(4))
	h.sPut(0, "c", 5).sGet(1, "c", iv(5))
	path := filepath.Join(t.TempDir(), "v.html")
	res, err := CheckRegister(h.ops, RegisterOptions{HTMLPath: path})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.FailedKeys, []string{"a", "b"}) {
		t.Fatalf("got %+v", res)
	}
	html, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(html)
	if !strings.Contains(s, `get(\"a\") -\u003e 1`) || !strings.Contains(s, `get(\"b\") -\u003e 4`) ||
		strings.Contains(s, `get(\"c\")`) || !strings.Contains(s, `"Details":"halves (still active when the history ended)"`) {
		t.Fatal("visualization should hold exactly the failed keys a and b, and the fault window")
	}
}

func TestRegisterVisualizationWriteError(t *testing.T) {
	h := newHist()
	h.sPut(0, "x", 1).sGet(1, "x", iv(2))
	res, err := CheckRegister(h.ops, RegisterOptions{HTMLPath: filepath.Join(t.TempDir(), "missing", "v.html")})
	if err == nil || res.Valid || !slices.Equal(res.FailedKeys, []string{"x"}) || res.Visualization != "" {
		t.Fatalf("want the verdict and an error, got %+v, %v", res, err)
	}
}

// A check that runs out of time is not a pass.
func TestRegisterTimeoutIsUnknown(t *testing.T) {
	h := newHist()
	for i := range 50 {
		h.sPut(0, "x", i).sGet(1, "x", iv(i)).sPut(0, "y", i)
	}
	res, err := CheckRegister(h.ops, RegisterOptions{Timeout: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Valid || !res.Unknown || len(res.FailedKeys) != 0 || !slices.Equal(res.UnknownKeys, []string{"x", "y"}) {
		t.Fatalf("want unknown, got %+v", res)
	}
	if !strings.Contains(res.String(), "UNKNOWN") || !strings.Contains(res.Explanation, "ran out of time") {
		t.Fatalf("summary:\n%s", res)
	}
}

// Here porcupine itself gives up: thirty writes of unknown outcome before an
// impossible read leave it 2^30 orders to try.
func TestRegisterSearchTimeoutIsUnknown(t *testing.T) {
	h := newHist()
	for p := range 30 {
		h.put(p, "x", p).info(p)
	}
	h.sGet(99, "x", iv(1000)).sPut(99, "y", 1)
	start := time.Now()
	res, err := CheckRegister(h.ops, RegisterOptions{Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Valid || !res.Unknown || len(res.FailedKeys) != 0 || !slices.Equal(res.UnknownKeys, []string{"x"}) {
		t.Fatalf("want x undecided, got %+v", res)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the timeout was not honoured: %v", d)
	}
}

func TestRegisterRejectsBadHistories(t *testing.T) {
	cases := map[string][]history.Op{
		"put without value": newHist().invoke(0, history.Op{F: FPut, Key: "x"}).ok(0).ops,
		"cas without value": newHist().invoke(0, history.Op{F: FCas, Key: "x", From: iv(1)}).ok(0).ops,
		"double invocation": {
			{Index: 0, Time: 1, Process: 0, Type: history.Invoke, F: FGet, Key: "x"},
			{Index: 1, Time: 2, Process: 0, Type: history.Invoke, F: FGet, Key: "x"},
		},
	}
	for name, ops := range cases {
		t.Run(name, func(t *testing.T) {
			res, err := CheckRegister(ops, RegisterOptions{})
			if err == nil || res.Valid {
				t.Fatalf("want an error, got %+v", res)
			}
		})
	}
}

func TestRegisterResultJSON(t *testing.T) {
	h := newHist()
	h.sPut(0, "x", 1).sGet(1, "x", iv(2))
	res := checkReg(t, h.ops)
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var back RegisterResult
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !equalResult(back, res) || back.Explanation != res.Explanation {
		t.Fatalf("round trip: %s", b)
	}
	if !strings.Contains(string(b), `"failed_keys":["x"]`) {
		t.Fatalf("json: %s", b)
	}
}
