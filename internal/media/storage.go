package media

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"conclave/internal/filelock"
)

// Storage keeps content bytes addressed by their SHA-256 (lower-case hex).
// The filesystem implementation is the only one today; an object-store
// backend can implement the same methods later.
//
// Several processes may share one Storage (docs/deployment.md), so content
// is never deleted outright: a deleter sets it aside, checks the store
// again and puts it back if a row references it; a writer places its file,
// commits its row and places it again. Service.removeIfUnreferenced gives
// the argument.
type Storage interface {
	// TempFile returns a new empty staging file, private to this process.
	TempFile() (*os.File, error)
	// Seal marks the staging file at path, fully written and synced, as the
	// complete content of hash, and returns its new path. A sealed file
	// left behind by a process that died is placed by the next start (it
	// may be the only copy of content a committed row references); an
	// unsealed one is partial and is removed.
	Seal(path, hash string) (string, error)
	// Place makes the sealed file at path available as the content hash
	// unless that content is already there. The file at path stays (the
	// caller removes it), so it can be placed again.
	Place(ctx context.Context, hash, path string) error
	// Aside moves the content out of reach into this process's staging
	// area and returns the path of the sealed file it became (Place puts it
	// back; os.Remove deletes it). Absent content gives an error wrapping
	// fs.ErrNotExist.
	Aside(ctx context.Context, hash string) (string, error)
	// Open returns the content; an error wrapping fs.ErrNotExist if absent.
	Open(ctx context.Context, hash string) (Object, error)
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
// fan-out so no directory grows huge) and stages uploads in a directory of
// its own, Root/staging/ID, on the same filesystem so placing is a link.
//
// Every process sharing Root has its own staging directory, locked through
// Root/staging/ID.lock for the process's lifetime (package filelock: the
// kernel releases the lock when the process dies, however it dies). A start
// removes the staging directories whose lock it can take, i.e. of processes
// that are gone, after placing their sealed files; it never touches the
// files of a process that runs. Where the filesystem has no flock, a
// staging directory counts as abandoned when nothing in it changed for
// staleStaging.
type FileStorage struct {
	Root string

	id   string // this process's staging directory, under Root/staging
	lock *filelock.Lock
}

// staleStaging is how long staging files must sit untouched before they
// are taken for leftovers when no lock says whether their process lives: an
// upload in flight writes its file continuously and places it within the
// time a scan takes, and the longest request lives minutes, not a day.
const staleStaging = 24 * time.Hour

// NewFileStorage creates the directories, takes a staging directory of its
// own and cleans up the staging directories of processes that are gone.
func NewFileStorage(root string) (*FileStorage, error) {
	fsto := &FileStorage{Root: root}
	if err := os.MkdirAll(filepath.Join(root, "content"), 0o700); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(fsto.stagingRoot(), 0o700); err != nil {
		return nil, err
	}
	for {
		fsto.id = randomName()
		l, err := filelock.TryLock(fsto.lockPath(fsto.id))
		if errors.Is(err, filelock.ErrLocked) {
			continue // a sweeper raced us for the new name: take another
		}
		if err != nil && !errors.Is(err, filelock.ErrUnsupported) {
			return nil, err
		}
		fsto.lock = l
		break
	}
	if err := os.MkdirAll(fsto.stagingDir(), 0o700); err != nil {
		fsto.lock.Close()
		return nil, err
	}
	fsto.sweep()
	return fsto, nil
}

// Close places this process's sealed staging files, removes its staging
// directory and releases its lock.
func (s *FileStorage) Close() error {
	s.recover(s.id)
	err := os.Remove(s.lockPath(s.id))
	return errors.Join(err, s.lock.Close())
}

// randomName names a staging directory: host-pid-random.
func randomName() string {
	return fmt.Sprintf("%s-%d-%s", hostname(), os.Getpid(), randomHex())
}

func hostname() string {
	h, _ := os.Hostname()
	return strings.NewReplacer(string(filepath.Separator), "_", ".", "_").Replace(h)
}

// sameHost reports whether staging directory id was made on this host.
func sameHost(id string) bool {
	rest, ok := strings.CutPrefix(id, hostname()+"-")
	if !ok {
		return false
	}
	pid, _, ok := strings.Cut(rest, "-")
	return ok && pid != "" && strings.Trim(pid, "0123456789") == ""
}

func (s *FileStorage) stagingRoot() string           { return filepath.Join(s.Root, "staging") }
func (s *FileStorage) stagingDir() string            { return filepath.Join(s.stagingRoot(), s.id) }
func (s *FileStorage) lockPath(id string) string     { return filepath.Join(s.stagingRoot(), id+".lock") }
func (s *FileStorage) stagingDirOf(id string) string { return filepath.Join(s.stagingRoot(), id) }

// sweep cleans up after processes that are gone. Failures only leave files
// for the next start.
func (s *FileStorage) sweep() {
	es, _ := os.ReadDir(s.stagingRoot())
	locks := map[string]bool{}
	for _, e := range es {
		if id, ok := strings.CutSuffix(e.Name(), ".lock"); ok && !e.IsDir() {
			locks[id] = true
		}
	}
	for _, e := range es {
		id := e.Name()
		if !e.IsDir() || id == s.id {
			continue
		}
		if !locks[id] {
			// A lock file is made before its directory and removed after it,
			// so this one was left by a sweep that was interrupted, or the
			// filesystem has no locks: only its age can tell.
			if s.untouchedFor(s.stagingDirOf(id), staleStaging) {
				s.recover(id)
			}
			continue
		}
		l, err := filelock.TryLock(s.lockPath(id))
		switch {
		case err == nil:
			// Its process is gone, if the lock can be trusted: always on
			// this host; from another host only where the shared filesystem
			// carries locks (NFS mounted nolock keeps them local), which
			// cannot be told from here, so there its age must agree. The
			// lock is held while the files are placed and removed, so two
			// starting processes never both do it.
			if sameHost(id) || s.untouchedFor(s.stagingDirOf(id), staleStaging) {
				s.recover(id)
				os.Remove(s.lockPath(id))
			}
			l.Close()
		case errors.Is(err, filelock.ErrUnsupported):
			if s.untouchedFor(s.stagingDirOf(id), staleStaging) {
				s.recover(id)
				os.Remove(s.lockPath(id))
			}
		}
	}
	// Versions before per-process staging directories staged in Root/tmp
	// and emptied it on every start; a process of such a version may still
	// run beside this one, so only its old files go.
	legacy := filepath.Join(s.Root, "tmp")
	if es, err := os.ReadDir(legacy); err == nil {
		for _, e := range es {
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleStaging {
				os.RemoveAll(filepath.Join(legacy, e.Name()))
			}
		}
		os.Remove(legacy) // only if empty
	}
}

// untouchedFor reports whether nothing in dir was modified within d.
func (s *FileStorage) untouchedFor(dir string, d time.Duration) bool {
	es, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range es {
		fi, err := e.Info()
		if err != nil || time.Since(fi.ModTime()) < d {
			return false
		}
	}
	fi, err := os.Stat(dir)
	return err == nil && time.Since(fi.ModTime()) >= d
}

// recover places the sealed files of staging directory id (each may be the
// only copy of content a committed row references: a writer that died
// between committing its row and placing its file again, a deleter that
// died with content set aside) and removes the directory. What it places
// and nothing references goes at the next orphan cleanup.
func (s *FileStorage) recover(id string) {
	dir := s.stagingDirOf(id)
	es, _ := os.ReadDir(dir)
	for _, e := range es {
		if h := sealedHash(e.Name()); h != "" && !e.IsDir() {
			s.Place(context.Background(), h, filepath.Join(dir, e.Name()))
		}
	}
	os.RemoveAll(dir)
}

// sealedHash is the hash a sealed staging file's name ends with, or "".
func sealedHash(name string) string {
	i := strings.LastIndexByte(name, '.')
	if i < 0 || !validHash(name[i+1:]) {
		return ""
	}
	return name[i+1:]
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
	f, err := os.CreateTemp(s.stagingDir(), "upload-*")
	if errors.Is(err, fs.ErrNotExist) {
		// Removed under us (a filesystem without locks, a process that took
		// us for dead after staleStaging idle): make it again.
		if err := os.MkdirAll(s.stagingDir(), 0o700); err != nil {
			return nil, err
		}
		f, err = os.CreateTemp(s.stagingDir(), "upload-*")
	}
	return f, err
}

func (s *FileStorage) Seal(path, hash string) (string, error) {
	if !validHash(hash) {
		return "", fmt.Errorf("media storage: invalid content hash %q", hash)
	}
	sealed := path + "." + hash
	if err := os.Rename(path, sealed); err != nil {
		return "", err
	}
	return sealed, nil
}

func (s *FileStorage) Place(ctx context.Context, hash, src string) error {
	dst, err := s.path(hash)
	if err != nil {
		return err
	}
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// A link is atomic and answered by the filesystem itself (also over
	// NFS, where a stat may come from a cache): it either adds the content
	// or says it is there.
	err = os.Link(src, dst)
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrExist):
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return err
	default:
		// No hard links on this filesystem: a copy renamed into place
		// (replacing identical content if it appeared meanwhile).
		if err := s.copyInto(src, dst); err != nil {
			return err
		}
	}
	// The new entry is durable only once the directory is on disk.
	return syncDir(dir)
}

func (s *FileStorage) copyInto(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := s.TempFile()
	if err != nil {
		return err
	}
	defer os.Remove(out.Name())
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(out.Name(), dst)
}

func (s *FileStorage) Aside(ctx context.Context, hash string) (string, error) {
	p, err := s.path(hash)
	if err != nil {
		return "", err
	}
	aside := filepath.Join(s.stagingDir(), "aside-"+randomHex()+"."+hash)
	if err := os.Rename(p, aside); err != nil {
		return "", err
	}
	return aside, nil
}

func randomHex() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
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
