package loadtest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/PID/stat. It is
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// ProcSample is one reading of a process's resource use.
type ProcSample struct {
	CPU time.Duration // user + system time since the process started
	RSS int64         // resident set size, bytes
}

// ReadProc reads the CPU time and memory of process pid from /proc.
func ReadProc(pid int) (ProcSample, error) {
	var s ProcSample
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name (field 2) may hold spaces; fields after it start
	// after the last ')'.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return s, fmt.Errorf("loadtest: odd /proc/%d/stat", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("loadtest: short /proc/%d/stat", pid)
	}
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	s.CPU = time.Duration(ut+st) * time.Second / clockTicks
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
		n, _ := strconv.ParseInt(v, 10, 64)
		if k == "VmRSS" {
			s.RSS = n * 1024
		}
	}
	return s, nil
}

// TreeCPU is the CPU time of pid and its live child processes: a database
// server such as PostgreSQL runs one backend process per connection.
// Backends that exited during the run are not counted.
func TreeCPU(pid int) time.Duration {
	total := time.Duration(0)
	if s, err := ReadProc(pid); err == nil {
		total += s.CPU
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil || child == pid {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(stat), ')')
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 13 || f[1] != strconv.Itoa(pid) {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(ut+st) * time.Second / clockTicks
	}
	return total
}

// SelfCPU is the load tool's own user + system CPU time.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Meter measures a phase: server CPU and memory (when a PID is known) and
// the tool's own CPU, with RSS sampled every 50 ms for the phase's peak.
type Meter struct {
	pid      int
	dbPID    int
	db0      time.Duration
	start    time.Time
	srv0     ProcSample
	self0    time.Duration
	stop     chan struct{}
	done     sync.WaitGroup
	mu       sync.Mutex
	peakRSS  int64
	sumRSS   int64
	nSamples int64
}

// PhaseFigures is what a Meter measured.
type PhaseFigures struct {
	Seconds         float64 `json:"seconds"`
	ServerCPUSec    float64 `json:"server_cpu_seconds,omitempty"`
	ServerPeakRSSMB float64 `json:"server_peak_rss_mb,omitempty"`
	ServerMeanRSSMB float64 `json:"server_mean_rss_mb,omitempty"`
	ServerEndRSSMB  float64 `json:"server_end_rss_mb,omitempty"`
	ToolCPUSec      float64 `json:"tool_cpu_seconds"`
	// The database server's processes (PostgreSQL), when its PID is given.
	DatabaseCPUSec float64 `json:"database_cpu_seconds,omitempty"`
}

// DatabasePID is the PID of a separate database server (the PostgreSQL
// postmaster) whose CPU, with its backends', the meters report too.
var DatabasePID int

// StartMeter begins measuring; pid 0 measures only the tool itself.
func StartMeter(pid int) *Meter {
	m := &Meter{pid: pid, dbPID: DatabasePID, start: time.Now(), self0: SelfCPU(), stop: make(chan struct{})}
	if m.dbPID > 0 {
		m.db0 = TreeCPU(m.dbPID)
	}
	if pid > 0 {
		m.srv0, _ = ReadProc(pid)
		m.peakRSS = m.srv0.RSS
		m.done.Add(1)
		go func() {
			defer m.done.Done()
			t := time.NewTicker(50 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-m.stop:
					return
				case <-t.C:
					if s, err := ReadProc(pid); err == nil {
						m.mu.Lock()
						if s.RSS > m.peakRSS {
							m.peakRSS = s.RSS
						}
						m.sumRSS += s.RSS
						m.nSamples++
						m.mu.Unlock()
					}
				}
			}
		}()
	}
	return m
}

// Stop ends the phase and returns its figures.
func (m *Meter) Stop() PhaseFigures {
	close(m.stop)
	m.done.Wait()
	f := PhaseFigures{Seconds: time.Since(m.start).Seconds(), ToolCPUSec: (SelfCPU() - m.self0).Seconds()}
	if m.dbPID > 0 {
		f.DatabaseCPUSec = (TreeCPU(m.dbPID) - m.db0).Seconds()
	}
	if m.pid > 0 {
		end, err := ReadProc(m.pid)
		if err == nil {
			f.ServerCPUSec = (end.CPU - m.srv0.CPU).Seconds()
			f.ServerEndRSSMB = mb(end.RSS)
			if end.RSS > m.peakRSS {
				m.peakRSS = end.RSS
			}
		}
		f.ServerPeakRSSMB = mb(m.peakRSS)
		if m.nSamples > 0 {
			f.ServerMeanRSSMB = mb(m.sumRSS / m.nSamples)
		}
	}
	return f
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }
