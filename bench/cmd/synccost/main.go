//go:build linux

// Command synccost measures what it costs this machine to make a small
// write durable, in wall time and in CPU time of the writing process, for
// the ways a raft log can do it: write then fsync, write then fdatasync,
// a write to a file opened O_DSYNC, and a 4 KiB O_DIRECT|O_DSYNC write;
// and, for the difference, a write that is not made durable.
// The file is preallocated and written once beforehand, as a reused log
// segment would be.
//
//	go run ./cmd/synccost -dir /var/lib/kvnode -n 3000
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
	"unsafe"
)

func main() {
	dir := flag.String("dir", os.TempDir(), "directory on the disk to measure")
	n := flag.Int("n", 3000, "durable writes per method")
	size := flag.Int("size", 512, "bytes per write (O_DIRECT writes 4 KiB)")
	rounds := flag.Int("rounds", 2, "rounds over all methods")
	flag.Parse()
	if *size < 1 || *size > 4096 || *n < 1 {
		fmt.Fprintln(os.Stderr, "synccost: -size must be 1 to 4096 and -n positive")
		os.Exit(2)
	}
	fdatasync := func(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
	methods := []struct {
		name  string
		flags int
		size  int
		sync  func(*os.File) error
	}{
		{"write, no sync (baseline)", 0, *size, nil},
		{"write + fsync", 0, *size, (*os.File).Sync},
		{"write + fdatasync", 0, *size, fdatasync},
		{"O_DSYNC write", syscall.O_DSYNC, *size, nil},
		{"O_DIRECT|O_DSYNC 4 KiB", syscall.O_DIRECT | syscall.O_DSYNC, 4096, nil},
	}
	fmt.Printf("%-26s %12s %12s\n", "method", "wall µs/op", "CPU µs/op")
	for range *rounds {
		for _, m := range methods {
			wall, cpu, err := measure(filepath.Join(*dir, "synccost.tmp"), m.flags, m.size, *n, m.sync)
			if err != nil {
				fmt.Fprintf(os.Stderr, "synccost: %s: %v\n", m.name, err)
				os.Exit(1)
			}
			fmt.Printf("%-26s %12.1f %12.1f\n", m.name, wall, cpu)
		}
	}
}

// measure makes n durable writes of size bytes at consecutive offsets (4
// KiB apart for O_DIRECT) and returns wall and CPU microseconds per write.
func measure(path string, flags, size, n int, sync func(*os.File) error) (float64, float64, error) {
	const fileSize = 64 << 20
	defer os.Remove(path)
	if err := prepare(path, fileSize); err != nil {
		return 0, 0, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|flags, 0o600)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	buf := aligned(4096)
	for i := range buf {
		buf[i] = byte(i)
	}
	step := int64(size)
	if flags&syscall.O_DIRECT != 0 {
		step = 4096
	}
	c0, t0 := cpuTime(), time.Now()
	var off int64
	for range n {
		if _, err := f.WriteAt(buf[:size], off); err != nil {
			return 0, 0, err
		}
		if sync != nil {
			if err := sync(f); err != nil {
				return 0, 0, err
			}
		}
		off = (off + step) % fileSize
	}
	wall, cpu := time.Since(t0), cpuTime()-c0
	return float64(wall.Microseconds()) / float64(n), float64(cpu.Microseconds()) / float64(n), nil
}

// prepare allocates and writes the whole file once, then syncs it.
func prepare(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		return err
	}
	zero := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(zero)) {
		if _, err := f.WriteAt(zero, off); err != nil {
			return err
		}
	}
	return f.Sync()
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// aligned returns n bytes aligned to 4 KiB, as O_DIRECT needs.
func aligned(n int) []byte {
	b := make([]byte, n+4096)
	skip := int(uintptr(unsafe.Pointer(&b[0])) & 4095)
	if skip != 0 {
		skip = 4096 - skip
	}
	return b[skip : skip+n]
}
