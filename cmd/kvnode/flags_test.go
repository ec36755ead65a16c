package main

import (
	"strings"
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

func TestMemoryFlags(t *testing.T) {
	cfg, o, err := serverFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !o.memoryLimitAuto || o.gcPercent != 25 || cfg.Store.BaseTableSize != 2<<20 || cfg.Store.ValueThreshold != 1<<10 || o.memoryRelease != 5*time.Second {
		t.Fatalf("defaults: memory limit auto %v, gc percent %d, table size %d, value threshold %d, memory release %v; want true, 25, %d, 1024, 5s",
			o.memoryLimitAuto, o.gcPercent, cfg.Store.BaseTableSize, cfg.Store.ValueThreshold, o.memoryRelease, 2<<20)
	}
	cfg, o, err = serverFlags([]string{"--memory-limit", "1GiB", "--gc-percent", "80", "--table-size", "512KiB", "--value-threshold", "128B", "--memory-release-interval", "0"})
	if err != nil || o.memoryLimitAuto || o.memoryLimit != 1<<30 || o.gcPercent != 80 || cfg.Store.BaseTableSize != 512<<10 || cfg.Store.ValueThreshold != 128 || o.memoryRelease != 0 {
		t.Fatalf("--memory-limit 1GiB --gc-percent 80 --table-size 512KiB --value-threshold 128B --memory-release-interval 0: %v, %d, %d, %d, %d, %v, %v",
			o.memoryLimitAuto, o.memoryLimit, o.gcPercent, cfg.Store.BaseTableSize, cfg.Store.ValueThreshold, o.memoryRelease, err)
	}
	if cfg.Store.TableRelease != time.Second {
		t.Fatalf("default --table-release-interval %v, want 1s", cfg.Store.TableRelease)
	}
	for arg, want := range map[string]time.Duration{"0": 0, "5s": 5 * time.Second} {
		if cfg, _, err = serverFlags([]string{"--table-release-interval", arg}); err != nil || cfg.Store.TableRelease != want {
			t.Fatalf("--table-release-interval %s: %v, %v; want %v", arg, cfg.Store.TableRelease, err, want)
		}
	}
	if _, o, err = serverFlags([]string{"--memory-limit", "0"}); err != nil || o.memoryLimitAuto || o.memoryLimit != 0 {
		t.Fatalf("--memory-limit 0: auto %v, %d, %v", o.memoryLimitAuto, o.memoryLimit, err)
	}
	if _, o, err = serverFlags([]string{"--memory-limit", "auto"}); err != nil || !o.memoryLimitAuto {
		t.Fatalf("--memory-limit auto: auto %v, %v", o.memoryLimitAuto, err)
	}
	for _, args := range [][]string{{"--memory-release-interval", "-1s"}, {"--memory-release-interval", "often"}, {"--gc-percent", "0"}, {"--gc-percent", "-1"}, {"--memory-limit", "lots"}, {"--memory-limit", "Auto"}, {"--table-size", "16KiB"}, {"--table-size", "64MiB"}, {"--table-size", "big"},
		{"--value-threshold", "32B"}, {"--value-threshold", "2MiB"}, {"--value-threshold", "small"},
		{"--table-release-interval", "-1s"}, {"--table-release-interval", "100ms"}} {
		if _, _, err := serverFlags(args); err == nil {
			t.Errorf("%q was accepted", args)
		}
	}
}

// kvnode -h lists the subcommands and then every flag of a node, with its
// default, but never the gossip key from the environment.
func TestHelpListsFlags(t *testing.T) {
	const key = "MDEyMzQ1Njc4OWFiY2RlZg=="
	t.Setenv("CAIRN_GOSSIP_KEY", key)
	var b strings.Builder
	printHelp(&b)
	out := b.String()
	for _, want := range []string{"kvnode demo", "-data-dir", "-min-free-disk", "(default \"1.0 GiB\")", "-shards", "-value-threshold"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, key) {
		t.Errorf("help prints the gossip key from the environment:\n%s", out)
	}
	// The environment still supplies the key when the flag is not given.
	cfg, _, err := serverFlags(nil)
	if err != nil || string(cfg.GossipKey) != "0123456789abcdef" {
		t.Fatalf("gossip key from the environment: %q, %v", cfg.GossipKey, err)
	}
}
