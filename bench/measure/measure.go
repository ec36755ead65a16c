// Package measure reads what the server processes of a benchmark cell
// cost, from Linux's /proc, and how much disk their data directories use.
//
// CPU time is utime+stime of /proc/<pid>/stat (every thread of the
// process), in clock ticks of ClockTick. Bytes written are write_bytes of
// /proc/<pid>/io: what the process caused to be sent to the storage layer
// (fsynced or written back), not what it passed to write(2). The kernel
// counts a page there when the process dirties it, so a file deleted or
// truncated before its dirty pages were written back (a memtable's log that
// is never synced, say) is counted although it never reached the disk;
// cancelled_write_bytes counts those pages, and Usage.Written subtracts
// them. Peak RSS is
// VmHWM of /proc/<pid>/status, which ResetPeak sets back to the current RSS
// (by writing 5 to /proc/<pid>/clear_refs; root or the process's owner).
// ReadRSS splits the current RSS into anonymous and file-backed memory.
package measure

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ClockTick is the unit of utime and stime: USER_HZ, 100 on every Linux
// architecture Go supports.
const ClockTick = 10 * time.Millisecond

// Sample is one process's counters at one moment.
type Sample struct {
	CPU            time.Duration // utime + stime
	WriteBytes     int64         // write_bytes
	CancelledBytes int64         // cancelled_write_bytes
	PeakRSS        int64         // VmHWM, bytes
}

// Read samples process pid.
func Read(pid int) (Sample, error) {
	var s Sample
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("measure: %w", err)
	}
	if s.CPU, err = parseStatCPU(stat); err != nil {
		return s, fmt.Errorf("measure: pid %d: %w", pid, err)
	}
	io, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return s, fmt.Errorf("measure: %w", err)
	}
	if s.WriteBytes, err = field(io, "write_bytes:", 1); err != nil {
		return s, fmt.Errorf("measure: pid %d io: %w", pid, err)
	}
	if s.CancelledBytes, err = field(io, "cancelled_write_bytes:", 1); err != nil {
		return s, fmt.Errorf("measure: pid %d io: %w", pid, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("measure: %w", err)
	}
	if s.PeakRSS, err = field(status, "VmHWM:", 1024); err != nil {
		return s, fmt.Errorf("measure: pid %d status: %w", pid, err)
	}
	return s, nil
}

// ResetPeak sets pid's VmHWM back to its current RSS.
func ResetPeak(pid int) error {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return fmt.Errorf("measure: reset peak RSS: %w", err)
	}
	return nil
}

// parseStatCPU returns utime+stime of a /proc/<pid>/stat line. The command
// name (field 2) may hold spaces and parentheses, so fields are counted
// from the last ')'.
func parseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("stat: no ')'")
	}
	f := strings.Fields(string(stat[i+1:])) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, errors.New("stat: too few fields")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("stat: %w", err)
	}
	return time.Duration(utime+stime) * ClockTick, nil
}

// field returns the number after name at the start of a line, times unit.
func field(b []byte, name string, unit int64) (int64, error) {
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, name); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s %w", name, err)
			}
			return n * unit, nil
		}
	}
	return 0, fmt.Errorf("no %s line", name)
}

// RSS is a process's resident memory at one moment, in bytes: Total is
// VmRSS, Anon the part not backed by files (heap, stacks), File the part
// that maps files (the binary, and the data files a store maps).
type RSS struct {
	Total, Anon, File int64
}

// ReadRSS samples pid's resident memory.
func ReadRSS(pid int) (RSS, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return RSS{}, fmt.Errorf("measure: %w", err)
	}
	r, err := parseRSS(status)
	if err != nil {
		return RSS{}, fmt.Errorf("measure: pid %d status: %w", pid, err)
	}
	return r, nil
}

func parseRSS(status []byte) (RSS, error) {
	var r RSS
	var err1, err2, err3 error
	r.Total, err1 = field(status, "VmRSS:", 1024)
	r.Anon, err2 = field(status, "RssAnon:", 1024)
	r.File, err3 = field(status, "RssFile:", 1024)
	return r, errors.Join(err1, err2, err3)
}

// Usage is what a set of processes used between two snapshots.
type Usage struct {
	CPU            time.Duration // summed over the processes
	WriteBytes     int64         // summed
	CancelledBytes int64         // summed
	PeakRSSMax     int64         // the largest VmHWM of one process
	PeakRSSSum     int64         // VmHWM summed
}

// Written is what the processes wrote to storage: the pages they dirtied
// less those dropped unwritten when their file was deleted or truncated.
func (u Usage) Written() int64 { return u.WriteBytes - u.CancelledBytes }

// Snapshot samples every process of pids.
func Snapshot(pids []int) ([]Sample, error) {
	out := make([]Sample, len(pids))
	for i, pid := range pids {
		s, err := Read(pid)
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

// Between returns the usage from before to after (two Snapshots of the same
// pids); peaks are after's.
func Between(before, after []Sample) Usage {
	var u Usage
	for i := range after {
		u.CPU += after[i].CPU - before[i].CPU
		u.WriteBytes += after[i].WriteBytes - before[i].WriteBytes
		u.CancelledBytes += after[i].CancelledBytes - before[i].CancelledBytes
		u.PeakRSSSum += after[i].PeakRSS
		u.PeakRSSMax = max(u.PeakRSSMax, after[i].PeakRSS)
	}
	return u
}

// DiskUsage returns the bytes of disk that the files under dirs occupy
// (allocated blocks, each inode counted once), as du(1) reports them.
func DiskUsage(dirs []string) (int64, error) {
	type inode struct{ dev, ino uint64 }
	seen := map[inode]bool{}
	var total int64
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil // removed while we walked (a compaction's old file)
				}
				return err
			}
			info, err := d.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			st, ok := info.Sys().(*syscall.Stat_t)
			if !ok {
				total += info.Size()
				return nil
			}
			k := inode{uint64(st.Dev), st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
			total += st.Blocks * 512
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("measure: disk usage of %s: %w", dir, err)
		}
	}
	return total, nil
}
