package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A node started in a memory cgroup, as in a container with a memory limit,
// gives its Go heap four fifths of that limit; --memory-limit and
// $GOMEMLIMIT override it. The limit the runtime works with is read back
// from the node's /metrics (go_gc_gomemlimit_bytes).
func TestProcessMemoryLimitFollowsCgroup(t *testing.T) {
	const cgroupLimit = 2 << 30 // room for the race detector's own memory
	procs := memoryCgroup(t, cgroupLimit)
	bin := kvnodeBinary(t)
	for _, c := range []struct {
		name string
		args []string
		env  []string
		want int64
	}{
		{"default (auto)", nil, nil, cgroupLimit / 5 * 4},
		{"--memory-limit 1GiB", []string{"--memory-limit=1GiB"}, nil, 1 << 30},
		{"$GOMEMLIMIT", nil, []string{"GOMEMLIMIT=300MiB"}, 300 << 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			httpAddr := freeAddr(t)
			args := append([]string{
				"-c", `echo $$ >"$0" && exec "$@"`, procs, bin,
				"--name=n1", "--data-dir=" + t.TempDir(), "--http-addr=" + httpAddr,
				"--raft-addr=" + freeAddr(t), "--gossip-addr=" + freeAddr(t), "--gossip-local",
			}, c.args...)
			cmd := exec.Command("/bin/sh", args...)
			logPath := filepath.Join(t.TempDir(), "n1.log")
			logf, err := os.Create(logPath)
			if err != nil {
				t.Fatal(err)
			}
			defer logf.Close()
			cmd.Stdout, cmd.Stderr = logf, logf
			cmd.Env = append(os.Environ(), c.env...)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				if t.Failed() {
					b, _ := os.ReadFile(logPath)
					t.Logf("--- %s ---\n%s", logPath, b)
				}
			}()
			got, err := goMemLimitMetric(t.Context(), httpAddr, 60*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Fatalf("go_gc_gomemlimit_bytes %d, want %d", got, c.want)
			}
		})
	}
}

// memoryCgroup makes a memory cgroup limited to limit bytes for the test and
// returns its cgroup.procs file. It skips the test where no cgroup can be
// made (not root, no memory controller).
func memoryCgroup(t *testing.T, limit int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("making a memory cgroup needs root")
	}
	name := fmt.Sprintf("cairn-test-%d", os.Getpid())
	var dir, limitFile string
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil { // cgroup v2
		ctl, err := os.ReadFile("/sys/fs/cgroup/cgroup.subtree_control")
		if err != nil {
			t.Skipf("cgroup v2: %v", err)
		}
		if !strings.Contains(string(ctl), "memory") {
			if err := os.WriteFile("/sys/fs/cgroup/cgroup.subtree_control", []byte("+memory"), 0o644); err != nil {
				t.Skipf("cgroup v2: cannot enable the memory controller: %v", err)
			}
		}
		dir, limitFile = filepath.Join("/sys/fs/cgroup", name), "memory.max"
	} else if _, err := os.Stat("/sys/fs/cgroup/memory/cgroup.procs"); err == nil { // cgroup v1
		dir, limitFile = filepath.Join("/sys/fs/cgroup/memory", name), "memory.limit_in_bytes"
	} else {
		t.Skip("no memory cgroup controller under /sys/fs/cgroup")
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("cannot make a memory cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove cgroup: %v", err)
		}
	})
	if err := os.WriteFile(filepath.Join(dir, limitFile), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
		t.Fatalf("set the cgroup's memory limit: %v", err)
	}
	return filepath.Join(dir, "cgroup.procs")
}

// goMemLimitMetric polls the node's /metrics until it serves and returns the
// Go runtime's memory limit from it.
func goMemLimitMetric(ctx context.Context, addr string, timeout time.Duration) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		v, err := readGoMemLimit(ctx, addr)
		if err == nil {
			return v, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("no memory limit from http://%s/metrics within %v: %w", addr, timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func readGoMemLimit(ctx context.Context, addr string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, errors.New(resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_gc_gomemlimit_bytes "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return int64(f), err
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no go_gc_gomemlimit_bytes in /metrics")
}
