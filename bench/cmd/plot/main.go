// Command plot turns the side-by-side benchmark's results.jsonl into
// table.md (the Markdown table of medians) and one PNG per workload
// (throughput and p99 latency against clients, Cairn and etcd), written
// beside each other in --out.
//
//	go run ./cmd/plot --in results/2026-11-26/results.jsonl --out results/2026-11-26
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cairndb/cairn/bench/report"
)

func main() {
	in := flag.String("in", "results.jsonl", "the results file (JSON lines of sidebyside)")
	out := flag.String("out", ".", "directory for table.md and the PNGs")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "plot:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	recs, err := report.Read(f)
	f.Close()
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return fmt.Errorf("%s holds no results", in)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	table := filepath.Join(out, "table.md")
	tf, err := os.Create(table)
	if err != nil {
		return err
	}
	if err := report.WriteTable(tf, recs); err != nil {
		tf.Close()
		return err
	}
	if err := tf.Close(); err != nil {
		return err
	}
	files, err := report.WritePlots(out, recs)
	if err != nil {
		return err
	}
	fmt.Println(table)
	for _, f := range files {
		fmt.Println(f)
	}
	return nil
}
