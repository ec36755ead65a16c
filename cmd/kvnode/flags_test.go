package main

import (
	"testing"
	"time"
)

// Flags reach the node's configuration; bad values are refused.
func TestServerFlags(t *testing.T) {
	cfg, _, err := serverFlags([]string{"--name", "a", "--request-timeout", "1500ms", "--shards", "6"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "a" || cfg.RequestTimeout != 1500*time.Millisecond || cfg.Shards != 6 {
		t.Fatalf("config %+v", cfg)
	}
	if _, _, err := serverFlags([]string{"--request-timeout", "soon"}); err == nil {
		t.Fatal("a request timeout of \"soon\" was accepted")
	}
}
