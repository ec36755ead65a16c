package main

import (
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

func TestRunWritesTableAndPlots(t *testing.T) {
	out := t.TempDir()
	if err := run("../../report/testdata/results.jsonl", out); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(out, "table.md"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../../report/testdata/table.golden.md")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("table.md differs from report/testdata/table.golden.md:\n%s", got)
	}
	for _, name := range []string{"put.png", "get.png"} {
		f, err := os.Open(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		_, err = png.DecodeConfig(f)
		f.Close()
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	empty := filepath.Join(out, "empty.jsonl")
	os.WriteFile(empty, nil, 0o644)
	if err := run(empty, out); err == nil {
		t.Error("an empty results file did not fail")
	}
}
