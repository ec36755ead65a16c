package main

import (
	"testing"
	"time"

	"github.com/cairndb/cairn/shard"
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
	if cfg.Shard.LogStore != shard.LogStoreWAL {
		t.Fatalf("default raft log store %q, want wal", cfg.Shard.LogStore)
	}
	if cfg, _, err = serverFlags([]string{"--raft-log-store", "bolt"}); err != nil || cfg.Shard.LogStore != shard.LogStoreBolt {
		t.Fatalf("--raft-log-store bolt: %q, %v", cfg.Shard.LogStore, err)
	}
	if _, _, err := serverFlags([]string{"--raft-log-store", "rocks"}); err == nil {
		t.Fatal("--raft-log-store rocks was accepted")
	}
}
