// Package filelock owns the advisory file locks that keep two processes
// from using what only one may: a SQLite database (store/sqlite) and a
// media staging directory (media). A lock is an exclusive flock(2) on a
// file; the kernel releases it when the holder exits, however it exits, so
// a lock that can be taken proves the previous holder is gone.
package filelock

import (
	"errors"
	"os"
	"strconv"
	"strings"
)

// ErrLocked is returned by TryLock while another open file holds the lock.
var ErrLocked = errors.New("locked by another process")

// ErrUnsupported is returned where the platform or filesystem has no flock.
var ErrUnsupported = errors.New("file locks are not supported here")

// Lock is a held lock; Close releases it.
type Lock struct {
	f *os.File
}

// TryLock opens (creating) path and takes an exclusive lock on it without
// waiting: ErrLocked if another process (or another open of the file in
// this process) holds it. On success it writes the holder's PID into the
// file, for error messages (Holder).
func TryLock(path string) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := flock(f); err != nil {
		f.Close()
		return nil, err
	}
	// Whoever removes a lock file does so while holding its lock: if ours is
	// no longer the file at path, we locked a removed file, which protects
	// nothing; someone else handled it.
	held, err1 := f.Stat()
	now, err2 := os.Stat(path)
	if err1 != nil || err2 != nil || !os.SameFile(held, now) {
		f.Close()
		return nil, ErrLocked
	}
	if f.Truncate(0) == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Close releases the lock.
func (l *Lock) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// Holder returns the PID the lock file names ("" if unknown): the process
// holding it, when TryLock just returned ErrLocked.
func Holder(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	pid := strings.TrimSpace(string(b))
	if _, err := strconv.Atoi(pid); err != nil {
		return ""
	}
	return pid
}
