package media

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"conclave/internal/store/sqlite"
)

// Two Services on one database and one media directory stand for two
// processes sharing them (docs/deployment.md): each has its own in-process
// lock, so only the placement protocol orders one's writes against the
// other's deletions. The hooks force the interleavings.

func twoProcesses(t *testing.T) (a, b *Service) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "media.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	root := t.TempDir()
	svc := func() *Service {
		fs, err := NewFileStorage(root)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { fs.Close() })
		return New(db, fs, Options{ServerName: "hs", MaxUploadBytes: 1 << 20})
	}
	return svc(), svc()
}

func upload(t *testing.T, s *Service, data string) string {
	t.Helper()
	mxc, err := s.Upload(context.Background(), "@u:hs", Upload{Body: strings.NewReader(data), ContentLength: int64(len(data)), ContentType: "text/plain"})
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(mxc, "mxc://hs/")
}

// readable checks a media ID's content through both processes.
func readable(t *testing.T, id, want string, ss ...*Service) {
	t.Helper()
	for i, s := range ss {
		c, err := s.Download(context.Background(), Request{ServerName: "hs", MediaID: id})
		if err != nil {
			t.Fatalf("process %d: download %s: %v", i, id, err)
		}
		got, _ := io.ReadAll(c.Object)
		c.Object.Close()
		if string(got) != want {
			t.Fatalf("process %d: %s has %q, want %q", i, id, got, want)
		}
	}
}

// A's upload has placed its file; B's orphan cleanup, or B deleting the
// last other media with the same content, runs before A's row commits.
func TestDeletionBetweenPlaceAndCommit(t *testing.T) {
	for _, how := range []string{"orphan cleanup", "delete"} {
		t.Run(how, func(t *testing.T) {
			a, b := twoProcesses(t)
			var old string
			if how == "delete" {
				old = upload(t, a, "same content")
			}
			ran := false
			a.hookPlaced = func(string) {
				a.hookPlaced, ran = nil, true
				if how == "delete" {
					if err := b.Delete(context.Background(), "hs", old); err != nil {
						t.Error(err)
					}
					return
				}
				if n, err := b.CleanupOrphans(context.Background()); err != nil || n != 1 {
					t.Errorf("cleanup removed %d, %v; want the not yet referenced file", n, err)
				}
			}
			id := upload(t, a, "same content")
			if !ran {
				t.Fatal("hook did not run")
			}
			readable(t, id, "same content", a, b)
		})
	}
}

// B's first read of the rows finds the content unreferenced; A's whole
// upload of the same content (place, commit, place again) completes before
// B sets the content aside. B's second read sees A's row and puts it back.
func TestUploadBetweenCheckAndAside(t *testing.T) {
	a, b := twoProcesses(t)
	old := upload(t, a, "shared bytes")
	var id string
	b.hookChecked = func() {
		b.hookChecked = nil
		id = upload(t, a, "shared bytes")
	}
	if err := b.Delete(context.Background(), "hs", old); err != nil {
		t.Fatal(err)
	}
	readable(t, id, "shared bytes", a, b)
}

// B has set the content aside; A uploads the same content meanwhile (and
// places its own copy). Both end with the content in place once.
func TestUploadWhileAside(t *testing.T) {
	a, b := twoProcesses(t)
	old := upload(t, a, "aside bytes")
	var id string
	b.hookAside = func() {
		b.hookAside = nil
		id = upload(t, a, "aside bytes")
	}
	if err := b.Delete(context.Background(), "hs", old); err != nil {
		t.Fatal(err)
	}
	readable(t, id, "aside bytes", a, b)
	if files := stagedFiles(t, a.storage.(*FileStorage).Root); len(files) != 0 {
		t.Fatalf("staging files left: %v", files)
	}
}

func stagedFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	filepath.Walk(filepath.Join(root, "staging"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && !strings.HasSuffix(p, ".lock") {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// A starting process leaves the staging files of a running one alone, and
// cleans up after one that is gone: its sealed files (possibly the only
// copy of committed content) are placed, partial ones removed.
func TestStagingAcrossProcesses(t *testing.T) {
	root := t.TempDir()
	a, err := NewFileStorage(root)
	if err != nil {
		t.Fatal(err)
	}
	partial, err := a.TempFile()
	if err != nil {
		t.Fatal(err)
	}
	partial.WriteString("half an upl")
	partial.Close()
	sealed, err := a.TempFile()
	if err != nil {
		t.Fatal(err)
	}
	content := []byte("a complete upload")
	sealed.Write(content)
	sealed.Close()
	sum := sha256.Sum256(content)
	hash := hex.EncodeToString(sum[:])
	sealedPath, err := a.Seal(sealed.Name(), hash)
	if err != nil {
		t.Fatal(err)
	}

	// B starts while A runs: A's files stay, and A can still place them.
	b, err := NewFileStorage(root)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, p := range []string{partial.Name(), sealedPath} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("a start removed a running process's staging file: %v", err)
		}
	}

	// A dies (its lock is released, nothing else happens); C starts.
	a.lock.Close()
	c, err := NewFileStorage(root)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := os.Stat(filepath.Dir(partial.Name())); !os.IsNotExist(err) {
		t.Fatalf("a dead process's staging directory is still there: %v", err)
	}
	obj, err := c.Open(context.Background(), hash)
	if err != nil {
		t.Fatalf("the dead process's sealed file was not placed: %v", err)
	}
	got, _ := io.ReadAll(obj)
	obj.Close()
	if !bytes.Equal(got, content) {
		t.Fatalf("placed content %q", got)
	}
	if files := stagedFiles(t, root); len(files) != 0 {
		t.Fatalf("staging files left: %v", files)
	}
}
