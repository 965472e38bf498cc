//go:build !unix

package filelock

import "os"

func flock(f *os.File) error { return ErrUnsupported }
