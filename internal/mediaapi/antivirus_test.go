package mediaapi_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"

	"conclave/internal/clamd/clamdtest"
	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/store"
)

func TestAntivirus(t *testing.T) {
	d := clamdtest.Start(t)
	for _, addr := range []string{d.TCP, d.Unix} {
		t.Run(strings.SplitN(addr, ":", 2)[0], func(t *testing.T) {
			s := hstest.Start(t, func(c *config.Config) { c.ClamdAddress = addr })
			alice := s.CreateUser(t, "alice")
			ctx := context.Background()

			// A clean file is stored and marked clean.
			id := mustUpload(t, s, alice.Token, "text/plain", "clean.txt", []byte("nothing to see"))
			if m, err := s.HS.Store.GetMedia(ctx, id); err != nil || m.ScanStatus != store.ScanClean {
				t.Fatalf("clean upload row: %+v %v", m, err)
			}

			// EICAR is refused with 403 and nothing is stored.
			files := len(contentFiles(t, s))
			r := upload(t, s, alice.Token, "application/octet-stream", "eicar.com", clamdtest.EICAR())
			wantErr(t, r, 403, "M_FORBIDDEN")
			if !strings.Contains(r.str("error"), clamdtest.Signature) {
				t.Errorf("error message does not name the signature: %q", r.str("error"))
			}
			if len(contentFiles(t, s)) != files || len(tmpFiles(t, s)) != 0 {
				t.Fatal("infected upload left files")
			}
			// The verdict is cached by content hash.
			sum := sha256.Sum256(clamdtest.EICAR())
			v, err := s.HS.Store.GetScanResult(ctx, hex.EncodeToString(sum[:]))
			if err != nil || v.Status != store.ScanInfected || v.Signature != clamdtest.Signature {
				t.Fatalf("cached verdict %+v %v", v, err)
			}
			wantErr(t, upload(t, s, alice.Token, "text/plain", "", clamdtest.EICAR()), 403, "M_FORBIDDEN")

			// Inside a bigger file, through the asynchronous upload: refused,
			// and the media ID stays unfilled.
			c := do(t, s, "POST", "/_matrix/media/v1/create", alice.Token, nil)
			aid := strings.TrimPrefix(c.str("content_uri"), "mxc://localhost/")
			big := append(bytes.Repeat([]byte("padding "), 50000), clamdtest.EICAR()...)
			wantErr(t, do(t, s, "PUT", "/_matrix/media/v3/upload/localhost/"+aid, alice.Token, bytes.NewReader(big)), 403, "M_FORBIDDEN")
			wantErr(t, do(t, s, "GET", dl(aid)+"?timeout_ms=0", alice.Token, nil), 504, "M_NOT_YET_UPLOADED")
			if r := do(t, s, "PUT", "/_matrix/media/v3/upload/localhost/"+aid, alice.Token, strings.NewReader("clean now")); r.Status != 200 {
				t.Fatalf("clean PUT after refusal: %d %s", r.Status, r.Body)
			}
		})
	}
}

func TestAntivirusUnreachable(t *testing.T) {
	// No clamd needed: the address points at nothing.
	nowhere := "unix:" + filepath.Join(t.TempDir(), "absent.sock")
	s := hstest.Start(t, func(c *config.Config) { c.ClamdAddress = nowhere })
	alice := s.CreateUser(t, "alice")
	r := upload(t, s, alice.Token, "text/plain", "", []byte("hello"))
	wantErr(t, r, 503, "M_UNKNOWN")
	if len(contentFiles(t, s)) != 0 || len(tmpFiles(t, s)) != 0 {
		t.Fatal("refused upload left files")
	}

	s = hstest.Start(t, func(c *config.Config) { c.ClamdAddress = nowhere; c.ClamdUnreachable = "accept" })
	alice = s.CreateUser(t, "alice")
	id := mustUpload(t, s, alice.Token, "text/plain", "", []byte("hello"))
	m, err := s.HS.Store.GetMedia(context.Background(), id)
	if err != nil || m.ScanStatus != store.ScanUnscanned {
		t.Fatalf("accepted unscanned upload row: %+v %v", m, err)
	}
	if r := do(t, s, "GET", dl(id), alice.Token, nil); r.Status != 200 {
		t.Fatalf("download: %d", r.Status)
	}
}
