package report

import (
	"bytes"
	"flag"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/table.golden.md")

func readFixture(t *testing.T) []Record {
	t.Helper()
	f, err := os.Open("testdata/results.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := Read(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 17 {
		t.Fatalf("read %d records, want 17", len(recs))
	}
	return recs
}

func TestTableGolden(t *testing.T) {
	var b bytes.Buffer
	if err := WriteTable(&b, readFixture(t)); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "table.golden.md")
	if *update {
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != string(want) {
		t.Errorf("table differs from %s (rerun with -update and review the diff):\n%s", golden, got)
	}
}

func TestSummarizeMedians(t *testing.T) {
	s := Summarize(readFixture(t))
	wantRows := []Row{{"put", 1, 0}, {"put", 16, 0}, {"get", 1, 0}, {"get", 64, 0}, {"mix", 16, 1000}}
	if !slices.Equal(s.Rows, wantRows) {
		t.Fatalf("rows %v, want %v", s.Rows, wantRows)
	}
	put1 := s.Cells[Row{"put", 1, 0}]
	// runs of Cairn put at 1 client: 200, 210, 190 ops/s; RSS 41, 42, 43.
	if c := put1[Cairn]; c.Runs != 3 || c.OpsPerSec != 200 || c.PeakRSSMax != 42 || math.Abs(c.P50-4.39) > 1e-9 {
		t.Errorf("Cairn put 1 = %+v, want 3 runs, 200 ops/s, 42 MB, p50 4.39", c)
	}
	if e := put1[Etcd]; e.OpsPerSec != 495 {
		t.Errorf("etcd put 1 ops/s %v, want 495", e.OpsPerSec)
	}
	// Two runs: the mean of the middle two.
	if c := s.Cells[Row{"get", 64, 0}][Cairn]; c.OpsPerSec != 6455.5 || c.Errors != 1.5 || !strings.Contains(c.FirstError, "no leader") {
		t.Errorf("Cairn get 64 = %+v, want 6455.5 ops/s, 1.5 errors, the first error", c)
	}
	if _, ok := s.Cells[Row{"get", 64, 0}][Etcd]; ok {
		t.Error("an etcd cell for get 64 that was never run")
	}
	if e := s.Cells[Row{"mix", 16, 1000}][Etcd]; e.Measured {
		t.Error("a cell without server figures is marked measured")
	}
	// Disk: the last cell of each run's cluster (16 clients), median over runs.
	if d := s.Disk["put"][Cairn]; d != 12e6 {
		t.Errorf("Cairn put disk %v, want 12e6 (median of 6, 12, 18 MB)", d)
	}
	if d := s.Disk["put"][Etcd]; d != 133e6 {
		t.Errorf("etcd put disk %v, want 133e6", d)
	}
}

func TestFormat(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 999.4: "999", 1234.5: "1,235", 1234567: "1,234,567", -4321: "-4,321"} {
		if got := thousands(v); got != want {
			t.Errorf("thousands(%v) = %q, want %q", v, got, want)
		}
	}
	for v, want := range map[float64]string{4.374: "4.37", 13.24: "13.2", 198.4: "198", 1999.6: "2,000", 0.8: "0.80"} {
		if got := sig3(v); got != want {
			t.Errorf("sig3(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestPlots(t *testing.T) {
	dir := t.TempDir()
	files, err := WritePlots(dir, readFixture(t))
	if err != nil {
		t.Fatal(err)
	}
	// mix has only open-loop rows: no plot.
	want := []string{filepath.Join(dir, "put.png"), filepath.Join(dir, "get.png")}
	if !slices.Equal(files, want) {
		t.Fatalf("files %v, want %v", files, want)
	}
	f, err := os.Open(files[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("put.png: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 1000 || b.Dy() < 400 {
		t.Errorf("put.png is %v, want at least 1000×400", b)
	}
	// Both systems' lines are drawn: count pixels of each colour.
	count := map[string]int{}
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y++ {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x++ {
			for sys, st := range styles {
				if near(img.At(x, y), st.color) {
					count[sys]++
				}
			}
		}
	}
	for _, sys := range []string{Cairn, Etcd} {
		if count[sys] < 500 {
			t.Errorf("%d pixels of %s's colour in put.png, want its lines (≥ 500)", count[sys], sys)
		}
	}
}

func near(c, want color.Color) bool {
	r, g, b, _ := c.RGBA()
	wr, wg, wb, _ := want.RGBA()
	d := func(a, b uint32) float64 { return math.Abs(float64(a>>8) - float64(b>>8)) }
	return d(r, wr)+d(g, wg)+d(b, wb) < 30
}

func TestReadRejectsGarbage(t *testing.T) {
	if _, err := Read(strings.NewReader("{\"system\":\"cairn\"}\n\nnot json\n")); err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("Read = %v, want an error naming line 3", err)
	}
}

// Load cells get a table of their own: medians of the resident memory
// after settling, the ratio of the two systems' RSS, and nothing of them
// in the main table, its preamble or the plots.
func TestLoadTable(t *testing.T) {
	load := func(sys string, run int, rss, anon, file, peak float64) Record {
		return Record{Time: "2026-11-26T21:00:00Z", System: sys, Workload: LoadCell, Clients: 64, Run: run, Keys: 1_000_000, ValueSize: 256,
			DurationS: 200, Ops: 1_000_000, OpsPerSec: 5000 + float64(run), ServerProcs: 3, ServerCPUS: 300, CPUMsPerOp: 0.3, PeakRSSMax: peak,
			WriteBytes: 4e9, BytesPerOp: 4000, SettleS: 10, RSSMax: rss, RSSAnon: anon, RSSFile: file, RSSSum: 3 * rss}
	}
	recs := []Record{
		{Time: "2026-11-26T20:00:00Z", System: Cairn, Workload: "put", Clients: 1, Run: 1, Keys: 10000, ValueSize: 256, DurationS: 10, Ops: 2000, OpsPerSec: 200},
		load(Cairn, 1, 300, 150, 140, 500), load(Cairn, 2, 320, 170, 145, 520), load(Cairn, 3, 280, 130, 142, 480),
		load(Etcd, 1, 600, 100, 500, 700), load(Etcd, 2, 640, 110, 520, 720), load(Etcd, 3, 590, 90, 495, 690),
	}
	var b bytes.Buffer
	if err := WriteTable(&b, recs); err != nil {
		t.Fatal(err)
	}
	got := b.String()
	main, loads, ok := strings.Cut(got, "Memory after the same load")
	if !ok {
		t.Fatalf("no load table:\n%s", got)
	}
	if strings.Contains(main, "| load |") || strings.Contains(main, "1000000 keys") || strings.Contains(main, "200 s") {
		t.Errorf("the load cells leaked into the main table or its preamble:\n%s", main)
	}
	want := "| 1,000,000 | 64 | 10.0 | 5,002 | 5,002 | 300 (150 + 142) | 600 (100 + 500) | 0.50 | 500 | 700 | 0.30 | 0.30 | 4,000 | 4,000 |"
	if !strings.Contains(loads, want) {
		t.Errorf("load table lacks the row\n%s\n%s", want, loads)
	}
	b.Reset()
	if err := WriteTable(&b, recs[1:]); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); strings.Contains(got, "| workload |") || strings.Contains(got, " keys, ") || !strings.Contains(got, want) {
		t.Errorf("a report of load cells only:\n%s", got)
	}
	files, err := WritePlots(t.TempDir(), recs)
	if err != nil || len(files) != 1 || filepath.Base(files[0]) != "put.png" {
		t.Errorf("plots %v, %v; want put.png only", files, err)
	}
}
