package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cairndb/cairn/client"
)

// A node whose data disk fills up refuses further puts with disk_full
// before they are proposed, stays up, serves every acknowledged write and
// accepts deletes; once the disk has room again it takes writes, and after
// a restart every acknowledged write is still there. The disk is a small
// tmpfs: without the check, Badger's next write through its memory-mapped
// value log on a full disk kills the process with SIGBUS.
func TestProcessDiskFullRefusesWritesAndRecovers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs as the node's disk needs root")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256m", "cairn-test-disk", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount: %v: %s", err, out)
		}
	})
	// One data shard: its raft log and Badger's memtables can take about
	// 70 MiB between two measures, well inside the 128 MiB kept free.
	pc, p := startOneNode(t, filepath.Join(mnt, "n1"), "--min-free-disk=128MiB")

	value := func(k string) []byte { return bytes.Repeat([]byte(k), (32<<10)/len(k)+1)[:32<<10] }
	var (
		mu      sync.Mutex
		acked   = map[string][]byte{} // key → value written
		refused atomic.Bool
		failure atomic.Pointer[error]
		wg      sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for w := range 4 {
		wg.Go(func() {
			for i := 0; !refused.Load() && ctx.Err() == nil; i++ {
				k := fmt.Sprintf("w%d-%06d", w, i)
				v := value(k)
				_, err := p.client.Put(ctx, k, v)
				switch {
				case err == nil:
					mu.Lock()
					acked[k] = v
					mu.Unlock()
				case errors.Is(err, client.ErrDiskFull):
					refused.Store(true)
				default:
					failure.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := failure.Load(); err != nil {
		t.Fatalf("a put failed otherwise than disk_full: %v", *err)
	}
	if !refused.Load() {
		t.Fatalf("no put was refused within the time (%d acknowledged)", len(acked))
	}
	select {
	case err := <-p.exited:
		p.exited = nil
		t.Fatalf("the node exited with its disk full: %v", err)
	default:
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d puts of 32 KiB acknowledged, then refused with %d MiB free", len(acked), st.Bavail*uint64(st.Bsize)>>20)

	checkAll := func(when string) {
		t.Helper()
		for k, want := range acked {
			v, _, err := p.client.Get(ctx, k)
			if err != nil || !bytes.Equal(v, want) {
				t.Fatalf("%s: acknowledged key %s: %d bytes, %v", when, k, len(v), err)
			}
		}
	}
	checkAll("disk full")
	if _, err := p.client.Put(ctx, "late", []byte("x")); !errors.Is(err, client.ErrDiskFull) {
		t.Fatalf("put on the full disk: %v", err)
	}
	if err := p.client.Delete(ctx, "w0-000000"); err != nil {
		t.Fatalf("delete on the full disk: %v", err)
	}
	delete(acked, "w0-000000")
	if _, _, err := p.client.Get(ctx, "w0-000000"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("the deleted key: %v", err)
	}

	if out, err := exec.Command("mount", "-o", "remount,size=512m", mnt).CombinedOutput(); err != nil {
		t.Fatalf("grow the tmpfs: %v: %s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := p.client.Put(ctx, "late", []byte("x"))
		if err == nil {
			break
		}
		if !errors.Is(err, client.ErrDiskFull) || time.Now().After(deadline) {
			t.Fatalf("put once the disk has room: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // the node measures its disk every second
	}
	acked["late"] = []byte("x")

	if err := p.stop(30 * time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}
	p.start()
	pc.waitReady(90 * time.Second)
	checkAll("after a restart")
}

// A stop must end even when the node cannot close its storage cleanly. With
// its Badger directory gone, Badger retries flushing its memtable forever
// and the node's Close never returns; the node must still exit within its
// two stages of --shutdown-timeout, with status 1 and the reason logged.
func TestProcessStopEndsWhenStorageCannotClose(t *testing.T) {
	_, p := startOneNode(t, filepath.Join(t.TempDir(), "n1"), "--shutdown-timeout=2s")
	for i := range 200 {
		k := fmt.Sprintf("k%03d", i)
		if _, err := p.client.Put(t.Context(), k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	if v, _, err := p.client.Get(t.Context(), "k199"); err != nil || string(v) != "k199" {
		t.Fatalf("get k199: %q %v", v, err)
	}
	if err := os.RemoveAll(filepath.Join(p.dir, "badger")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := p.stop(40 * time.Second)
	took := time.Since(start)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("stop: %v after %v, want exit status 1 within the two 2 s stages", err, took)
	}
	if took > 20*time.Second {
		t.Fatalf("the node took %v to stop, want about two 2 s stages", took)
	}
	b, _ := os.ReadFile(p.log)
	if !bytes.Contains(b, []byte("did not close within 2s")) {
		t.Fatalf("the log does not say why the node stopped without a clean close")
	}
	t.Logf("stopped in %v", took.Round(10*time.Millisecond))
}

// startOneNode starts a one-node cluster of one data shard keeping its data
// in dir, with more flags, and shows the tail of its log if the test fails.
func startOneNode(t *testing.T, dir string, flags ...string) (*procCluster, *proc) {
	t.Helper()
	pc := &procCluster{t: t, bin: kvnodeBinary(t), procs: map[string]*proc{}, names: []string{"n1"}}
	p := &proc{t: t, name: "n1", http: freeAddr(t), raft: freeAddr(t), gossip: freeAddr(t)}
	p.dir, p.log = dir, filepath.Join(t.TempDir(), "n1.log")
	p.client = client.New(p.http, client.WithRetries(0, 0))
	p.args = append([]string{"--name=n1", "--data-dir=" + p.dir, "--http-addr=" + p.http, "--raft-addr=" + p.raft,
		"--gossip-addr=" + p.gossip, "--gossip-local", "--shards=1"}, flags...)
	pc.procs["n1"] = p
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("--- tail of %s ---\n%s", p.log, b)
		}
	})
	p.start()
	pc.waitReady(90 * time.Second)
	return pc, p
}
