package filelock

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestTryLock(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.lock")
	a, err := TryLock(p)
	if err != nil {
		t.Fatal(err)
	}
	// A second open of the file, even in this process, is refused.
	if _, err := TryLock(p); !errors.Is(err, ErrLocked) {
		t.Fatalf("second TryLock: %v, want ErrLocked", err)
	}
	if got := Holder(p); got != strconv.Itoa(os.Getpid()) {
		t.Fatalf("Holder = %q", got)
	}
	a.Close()
	b, err := TryLock(p)
	if err != nil {
		t.Fatalf("TryLock after release: %v", err)
	}
	b.Close()
}
