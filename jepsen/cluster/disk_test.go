package cluster

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairndb/cairn/client"
)

// With DiskSize, every node's data directory sits on a tmpfs of its own.
// FillDisk leaves about what it is asked on one of them, and the cluster
// then refuses puts with disk_full; FreeDisk lets it write again; Close
// unmounts the disks, and Cleanup unmounts those of a harness that died.
func TestDisksFillAndFree(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting the nodes' disks needs root")
	}
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 75*time.Second)
	defer cancel()
	c, err := Start(ctx, Config{
		Nodes: 3, Binary: kvnodeBin, Dir: dir, Mode: Loopback, Shards: 2,
		DiskSize: 512 << 20, ExtraArgs: []string{"--min-free-disk=128MiB"},
		Log: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			c.Close()
		}
	})
	if !c.Supports("disk") {
		t.Fatal("a cluster with DiskSize does not support the disk fault")
	}
	for _, n := range c.Nodes() {
		var st syscall.Statfs_t
		if err := syscall.Statfs(n.DataDir, &st); err != nil {
			t.Fatal(err)
		}
		if size := int64(st.Blocks) * int64(st.Bsize); size != 512<<20 {
			t.Fatalf("%s's data directory is on a file system of %d bytes, want its own 512 MiB", n.Name, size)
		}
	}
	if err := c.FillDisk(2, 64<<20); err != nil {
		t.Fatal(err)
	}
	if free, err := c.DiskFree(2); err != nil || free < 56<<20 || free > 72<<20 {
		t.Fatalf("n2's disk has %d MiB free after FillDisk(64 MiB), %v", free>>20, err)
	}
	cl := c.Client(1, client.WithRetries(0, 0))
	put := func() error {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := cl.Put(pctx, "k", []byte("v"))
		return err
	}
	deadline := time.Now().Add(20 * time.Second)
	for err := put(); !errors.Is(err, client.ErrDiskFull); err = put() {
		if time.Now().After(deadline) {
			t.Fatalf("puts through n1 while n2's disk is full: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // nodes measure their disks every second
	}
	if err := c.FreeDisk(2); err != nil {
		t.Fatal(err)
	}
	for err := put(); err != nil; err = put() {
		if !errors.Is(err, client.ErrDiskFull) || time.Now().After(deadline.Add(20*time.Second)) {
			t.Fatalf("puts once n2's disk has room: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // as above
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	if mounts, _ := os.ReadFile("/proc/self/mounts"); strings.Contains(string(mounts), dir) {
		t.Fatalf("disks under %s still mounted after Close", dir)
	}

	// A disk left mounted by a harness that died.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	left := t.TempDir()
	if err := syscall.Mount(diskSource+strconv.Itoa(cmd.Process.Pid), left, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(left, syscall.MNT_DETACH) })
	if err := cleanupDisks(func(owner string) bool { return owner == strconv.Itoa(cmd.Process.Pid) }); err != nil {
		t.Fatal(err)
	}
	if mounts, _ := os.ReadFile("/proc/self/mounts"); strings.Contains(string(mounts), left) {
		t.Fatalf("the dead harness's disk at %s is still mounted", left)
	}
}
