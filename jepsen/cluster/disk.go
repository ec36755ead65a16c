package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// diskSource marks the tmpfs data disks of this harness in the mount table
// (followed by the owner's PID), so that Cleanup finds those of a harness
// that died.
const diskSource = "cairn-jepsen-disk-"

// diskDir is where node i's own file system is mounted (with
// Config.DiskSize); its data directory and the filler live inside.
func (c *Cluster) diskDir(i int) string {
	return filepath.Join(c.cfg.Dir, "n"+strconv.Itoa(i), "disk")
}

// fillPath is the file FillDisk allocates on node i's disk.
func (c *Cluster) fillPath(i int) string { return filepath.Join(c.diskDir(i), "fill") }

// mountDisks gives every node a tmpfs of Config.DiskSize bytes for its
// data directory.
func (c *Cluster) mountDisks() error {
	if c.cfg.DiskSize <= 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return errors.New("cluster: a data disk per node (DiskSize) needs root to mount it")
	}
	for i := 1; i <= len(c.nodes); i++ {
		dir := c.diskDir(i)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
		src := diskSource + strconv.Itoa(os.Getpid())
		if err := syscall.Mount(src, dir, "tmpfs", 0, "size="+strconv.FormatInt(c.cfg.DiskSize, 10)); err != nil {
			return fmt.Errorf("cluster: mount a tmpfs for n%d's data: %w", i, err)
		}
		c.mounted = append(c.mounted, dir)
	}
	return nil
}

// unmountDisks unmounts the nodes' disks; their processes must have ended.
func (c *Cluster) unmountDisks() error {
	var errs []error
	for _, dir := range c.mounted {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("cluster: unmount %s: %w", dir, err))
		}
	}
	c.mounted = nil
	return errors.Join(errs...)
}

// DiskFree returns the bytes free on node i's disk (with Config.DiskSize).
func (c *Cluster) DiskFree(i int) (int64, error) {
	if err := c.check(i); err != nil {
		return 0, err
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(c.diskDir(i), &st); err != nil {
		return 0, fmt.Errorf("cluster: %w", err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// FillDisk allocates a file on node i's disk that leaves about leave bytes
// free (with Config.DiskSize), as another program filling the disk would.
// FreeDisk removes it.
func (c *Cluster) FillDisk(i int, leave int64) error {
	if !c.Supports("disk") {
		return errors.New("cluster: no disks of their own (Config.DiskSize)")
	}
	free, err := c.DiskFree(i)
	if err != nil {
		return err
	}
	if free <= leave {
		return nil
	}
	f, err := os.OpenFile(c.fillPath(i), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if err := syscall.Fallocate(int(f.Fd()), 0, info.Size(), free-leave); err != nil {
		return fmt.Errorf("cluster: fill n%d's disk: %w", i, err)
	}
	return nil
}

// FreeDisk removes what FillDisk allocated on node i's disk.
func (c *Cluster) FreeDisk(i int) error {
	if err := c.check(i); err != nil {
		return err
	}
	if err := os.Remove(c.fillPath(i)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cluster: %w", err)
	}
	return nil
}

// cleanupDisks unmounts the disks of harnesses that died.
func cleanupDisks(dead func(owner string) bool) error {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil
	}
	var errs []error
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		if owner, ok := strings.CutPrefix(f[0], diskSource); ok && dead(owner) {
			if err := syscall.Unmount(f[1], syscall.MNT_DETACH); err != nil {
				errs = append(errs, fmt.Errorf("cluster: unmount %s: %w", f[1], err))
			}
		}
	}
	return errors.Join(errs...)
}
