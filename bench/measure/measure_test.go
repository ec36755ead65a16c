package measure

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and parentheses; utime 1234, stime 66.
	stat := "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 3000 0 0 0 1234 66 0 0 20 0 9 0 100 2000000 5000 18446744073709551615\n"
	got, err := parseStatCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if want := 1300 * ClockTick; got != want {
		t.Errorf("CPU = %v, want %v", got, want)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 x 12"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("parseStatCPU(%q) did not fail", bad)
		}
	}
}

func TestField(t *testing.T) {
	status := "Name:\tkvnode\nVmPeak:\t  900 kB\nVmHWM:\t   51200 kB\nVmRSS:\t 40000 kB\n"
	if n, err := field([]byte(status), "VmHWM:", 1024); err != nil || n != 51200*1024 {
		t.Errorf("VmHWM = %d, %v", n, err)
	}
	if _, err := field([]byte(status), "VmSwap:", 1024); err == nil {
		t.Error("a missing field did not fail")
	}
}

func TestParseRSS(t *testing.T) {
	status := "Name:\tkvnode\nVmHWM:\t   51200 kB\nVmRSS:\t   40000 kB\nRssAnon:\t   30000 kB\nRssFile:\t    9000 kB\nRssShmem:\t    1000 kB\n"
	r, err := parseRSS([]byte(status))
	if want := (RSS{Total: 40000 << 10, Anon: 30000 << 10, File: 9000 << 10}); err != nil || r != want {
		t.Errorf("parseRSS = %+v, %v; want %+v", r, err, want)
	}
	if _, err := parseRSS([]byte("VmRSS:\t 40000 kB\nRssAnon:\t 30000 kB\n")); err == nil {
		t.Error("a status without RssFile did not fail")
	}
	self, err := ReadRSS(os.Getpid())
	if err != nil || self.Total <= 0 || self.Anon <= 0 || self.File <= 0 || self.Anon+self.File > self.Total {
		t.Errorf("ReadRSS of this process = %+v, %v", self, err)
	}
	if _, err := ReadRSS(1 << 30); err == nil {
		t.Error("ReadRSS of a missing pid did not fail")
	}
}

func TestReadSelfAndChild(t *testing.T) {
	// A child that burns CPU, writes and fsyncs 4 MiB, and writes 4 MiB
	// more to a file it deletes at once, before the kernel writes it back.
	dir := t.TempDir()
	script := "dd if=/dev/zero of=" + filepath.Join(dir, "f") + " bs=1M count=4 conv=fsync 2>/dev/null; " +
		"dd if=/dev/zero of=" + filepath.Join(dir, "g") + " bs=1M count=4 2>/dev/null; rm " + filepath.Join(dir, "g") + "; " +
		"i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; sleep 5"
	cmd := exec.Command("sh", "-c", script)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pid := cmd.Process.Pid
	before, err := Snapshot([]int{pid})
	if err != nil {
		t.Fatal(err)
	}
	if err := ResetPeak(pid); err != nil {
		t.Skipf("cannot reset the peak RSS here: %v", err)
	}
	var u Usage
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		after, err := Snapshot([]int{pid})
		if err != nil {
			t.Fatal(err)
		}
		if u = Between(before, after); u.WriteBytes >= 8<<20 && u.CancelledBytes >= 2<<20 && u.CPU >= 100*time.Millisecond {
			break
		}
		time.Sleep(50 * time.Millisecond) // poll the child's counters
	}
	// The deleted file's pages are counted as written and then as
	// cancelled (all of them unless the kernel wrote some back first).
	if u.WriteBytes < 8<<20 || u.CancelledBytes < 2<<20 || u.Written() < 4<<20 || u.Written() > u.WriteBytes-(2<<20) || u.CPU < 100*time.Millisecond {
		t.Errorf("usage %+v (written %d): want ≥ 8 MiB dirtied, ≥ 2 MiB of it cancelled, ≥ 4 MiB written and ≥ 100 ms CPU", u, u.Written())
	}
	if u.PeakRSSMax <= 0 || u.PeakRSSSum != u.PeakRSSMax {
		t.Errorf("peak RSS max %d sum %d for one process", u.PeakRSSMax, u.PeakRSSSum)
	}
	if _, err := Read(1 << 30); err == nil {
		t.Error("Read of a missing pid did not fail")
	}
}

func TestBetweenSums(t *testing.T) {
	before := []Sample{{CPU: time.Second, WriteBytes: 100, CancelledBytes: 10}, {CPU: 2 * time.Second, WriteBytes: 0}}
	after := []Sample{{CPU: 3 * time.Second, WriteBytes: 150, CancelledBytes: 40, PeakRSS: 10}, {CPU: 2500 * time.Millisecond, WriteBytes: 70, CancelledBytes: 5, PeakRSS: 30}}
	u := Between(before, after)
	want := Usage{CPU: 2500 * time.Millisecond, WriteBytes: 120, CancelledBytes: 35, PeakRSSMax: 30, PeakRSSSum: 40}
	if u != want || u.Written() != 85 {
		t.Errorf("Between = %+v (written %d), want %+v (written 85)", u, u.Written(), want)
	}
}

func TestDiskUsage(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(a, "data"), make([]byte, 100_000), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(a, "data"), filepath.Join(b, "link")); err != nil {
		t.Fatal(err)
	}
	sparse, err := os.Create(filepath.Join(b, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sparse.Truncate(1 << 30); err != nil { // 1 GiB apparent, no blocks
		t.Fatal(err)
	}
	sparse.Close()
	n, err := DiskUsage([]string{a, b})
	if err != nil {
		t.Fatal(err)
	}
	// The 100 kB file once (the hard link is the same inode), the sparse
	// file next to nothing, plus the directories' own blocks.
	if n < 100_000 || n > 200_000 {
		t.Errorf("DiskUsage = %d, want about 100 kB", n)
	}
	if _, err := DiskUsage([]string{filepath.Join(a, "missing")}); err != nil {
		t.Errorf("a missing directory: %v, want 0 bytes and no error", err)
	}
}
