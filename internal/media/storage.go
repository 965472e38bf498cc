package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Storage keeps content bytes addressed by their SHA-256 (lower-case hex).
// The filesystem implementation is the only one today; an object-store
// backend can implement the same methods later.
type Storage interface {
	// TempFile returns a new empty staging file that Put can consume cheaply.
	TempFile() (*os.File, error)
	// Put moves the fully written and synced staging file at tmpPath into
	// place under hash. If content with that hash exists, the staging file
	// is removed instead (identical content is stored once). Either way
	// tmpPath is gone when Put returns nil.
	Put(ctx context.Context, hash, tmpPath string) error
	// Open returns the content; an error wrapping fs.ErrNotExist if absent.
	Open(ctx context.Context, hash string) (Object, error)
	// Delete removes the content; absent content is not an error.
	Delete(ctx context.Context, hash string) error
	// Walk calls fn with every stored hash, in no particular order.
	Walk(ctx context.Context, fn func(hash string) error) error
}

// Object is stored content being read.
type Object interface {
	io.ReadSeekCloser
	Size() int64
	ModTime() time.Time
}

// FileStorage stores content under Root/content/ab/cd/abcd… (two levels of
// fan-out so no directory grows huge) and stages uploads in Root/tmp, on the
// same filesystem so Put is a rename.
type FileStorage struct {
	Root string
}

// NewFileStorage creates the directories and removes staging files left
// over by a crash.
func NewFileStorage(root string) (*FileStorage, error) {
	fsto := &FileStorage{Root: root}
	if err := os.MkdirAll(filepath.Join(root, "content"), 0o700); err != nil {
		return nil, err
	}
	tmp := filepath.Join(root, "tmp")
	if err := os.RemoveAll(tmp); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, err
	}
	return fsto, nil
}

// validHash accepts exactly 64 lower-case hex digits, so a hash can never
// name anything outside the content tree.
func validHash(h string) bool {
	if len(h) != 64 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (s *FileStorage) path(hash string) (string, error) {
	if !validHash(hash) {
		return "", fmt.Errorf("media storage: invalid content hash %q", hash)
	}
	return filepath.Join(s.Root, "content", hash[0:2], hash[2:4], hash), nil
}

func (s *FileStorage) TempFile() (*os.File, error) {
	return os.CreateTemp(filepath.Join(s.Root, "tmp"), "upload-*")
}

func (s *FileStorage) Put(ctx context.Context, hash, tmpPath string) error {
	dst, err := s.path(hash)
	if err != nil {
		os.Remove(tmpPath)
		return err
	}
	if _, err := os.Stat(dst); err == nil {
		return os.Remove(tmpPath)
	}
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		os.Remove(tmpPath)
		return err
	}
	if err := os.Rename(tmpPath, dst); err != nil {
		os.Remove(tmpPath)
		return err
	}
	// The rename is durable only once the directory entry is on disk.
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

type fileObject struct {
	*os.File
	size int64
	mod  time.Time
}

func (o *fileObject) Size() int64        { return o.size }
func (o *fileObject) ModTime() time.Time { return o.mod }

func (s *FileStorage) Open(ctx context.Context, hash string) (Object, error) {
	p, err := s.path(hash)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &fileObject{File: f, size: st.Size(), mod: st.ModTime()}, nil
}

func (s *FileStorage) Delete(ctx context.Context, hash string) error {
	p, err := s.path(hash)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func (s *FileStorage) Walk(ctx context.Context, fn func(hash string) error) error {
	root := filepath.Join(s.Root, "content")
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if name := d.Name(); validHash(name) && p == filepath.Join(root, name[0:2], name[2:4], name) {
			return fn(name)
		}
		return nil
	})
}
