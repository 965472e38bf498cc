package mediaapi_test

import (
	"bytes"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/crypto/backup"

	"conclave/internal/clamd/clamdtest"
	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
)

const scanner = "/_matrix/media_proxy/unstable"

// encFile is an attachment as a client sends it: encrypted with mautrix-go
// (the Matrix attachment format), uploaded as ciphertext.
type encFile struct {
	ef         *attachment.EncryptedFile
	url        string
	ciphertext []byte
}

func (f *encFile) json(t testing.TB) map[string]any {
	t.Helper()
	b, err := json.Marshal(f.ef)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["url"] = f.url
	return m
}

func uploadEncrypted(t testing.TB, s *hstest.Server, token string, plaintext []byte) *encFile {
	t.Helper()
	ef := attachment.NewEncryptedFile()
	ct := ef.Encrypt(plaintext)
	id := mustUpload(t, s, token, "application/octet-stream", "", ct)
	return &encFile{ef: ef, url: "mxc://" + s.Config.ServerName + "/" + id, ciphertext: ct}
}

// post sends a JSON (or raw string) body to the scanner.
func post(t testing.TB, s *hstest.Server, path, token string, body any) *resp {
	t.Helper()
	var b []byte
	if raw, ok := body.(string); ok {
		b = []byte(raw)
	} else {
		var err error
		if b, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	return do(t, s, "POST", scanner+path, token, bytes.NewReader(b), "Content-Type", "application/json")
}

// sealFor encrypts body to the scanner's public key as Tchap's clients do
// (PkEncryption; mautrix-go's curve25519-aes-sha2 is the same construction,
// checked against libolm itself in internal/contentscan).
func sealFor(t testing.TB, publicKey string, body any) map[string]any {
	t.Helper()
	raw, err := base64.RawStdEncoding.DecodeString(publicKey)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := ecdh.X25519().NewPublicKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := backup.EncryptSessionDataWithPubkey(pk, body)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(enc)
	var m map[string]any
	json.Unmarshal(b, &m)
	return map[string]any{"encrypted_body": m}
}

func wantReason(t testing.TB, r *resp, status int, reason string) {
	t.Helper()
	if r.Status != status || r.str("reason") != reason || r.str("info") == "" {
		t.Fatalf("want %d {reason: %s, info: …}, got %d %s", status, reason, r.Status, r.Body)
	}
}

func wantVerdict(t testing.TB, r *resp, clean bool) {
	t.Helper()
	if r.Status != 200 || r.JSON["clean"] != clean || r.str("info") == "" {
		t.Fatalf("want 200 {clean: %v, info: …}, got %d %s", clean, r.Status, r.Body)
	}
}

func TestContentScannerOffByDefault(t *testing.T) {
	s := hstest.Start(t)
	r := do(t, s, "GET", scanner+"/public_key", "", nil)
	wantErr(t, r, 404, "M_UNRECOGNIZED")
	if _, err := config.Load([]string{"--content-scanner=true"}, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "content_scanner") {
		t.Fatalf("content_scanner without clamd_address: %v", err)
	}
}

func TestContentScanner(t *testing.T) {
	d := clamdtest.Start(t)

	// First the server runs with clamd out of reach, uploads accepted
	// unscanned: that is how an infected plain file gets stored.
	s := hstest.Start(t, func(c *config.Config) {
		c.ContentScanner = true
		c.ClamdAddress = "unix:" + filepath.Join(t.TempDir(), "absent.sock")
		c.ClamdUnreachable = "accept"
	})
	alice := s.CreateUser(t, "alice")
	plainEICAR := mustUpload(t, s, alice.Token, "application/octet-stream", "eicar.com", clamdtest.EICAR())
	r := do(t, s, "GET", scanner+"/public_key", "", nil)
	if r.Status != 200 || len(r.str("public_key")) != 43 {
		t.Fatalf("public_key: %d %s", r.Status, r.Body)
	}
	publicKey := r.str("public_key")
	// No verdict without clamd: 503, never "clean".
	early := uploadEncrypted(t, s, alice.Token, []byte("scanned later"))
	wantReason(t, post(t, s, "/scan_encrypted", alice.Token, map[string]any{"file": early.json(t)}), 503, "M_UNKNOWN")

	// Restarted with clamd, and with the legacy media freeze on.
	s.Stop()
	cfg := s.Config
	cfg.ClamdAddress, cfg.ClamdUnreachable, cfg.LegacyMediaFreeze = d.TCP, "refuse", true
	s = hstest.StartConfig(t, cfg)
	if r := do(t, s, "GET", scanner+"/public_key", "", nil); r.str("public_key") != publicKey {
		t.Fatalf("public key changed across a restart: %s then %s", publicKey, r.Body)
	}

	secret := []byte("CONTENT-SCANNER-PLAINTEXT-MARKER " + strings.Repeat("x", 100_000))
	clean := uploadEncrypted(t, s, alice.Token, secret)
	infected := uploadEncrypted(t, s, alice.Token, append([]byte("some padding "), clamdtest.EICAR()...))

	t.Run("clean", func(t *testing.T) {
		before := s.HS.ContentScanner.Scans()
		body := map[string]any{"file": clean.json(t)}
		r := post(t, s, "/scan_encrypted", alice.Token, body)
		wantVerdict(t, r, true)
		if r.str("info") != "File is clean" {
			t.Errorf("info %q", r.str("info"))
		}
		// The ciphertext is served; the client decrypts it.
		r = post(t, s, "/download_encrypted", alice.Token, body)
		if r.Status != 200 || !bytes.Equal(r.Body, clean.ciphertext) {
			t.Fatalf("download_encrypted: %d, %d bytes", r.Status, len(r.Body))
		}
		var ef attachment.EncryptedFile // as a receiving client reads it
		if b, _ := json.Marshal(clean.ef); json.Unmarshal(b, &ef) != nil {
			t.Fatal("EncryptedFile JSON")
		}
		got, err := ef.Decrypt(r.Body)
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("decrypting the download: %v", err)
		}
		// Both answers came from one scan: the verdict is cached.
		if n := s.HS.ContentScanner.Scans() - before; n != 1 {
			t.Errorf("%d scans for one file", n)
		}
		// Nothing decrypted was written anywhere under the data directory.
		filepath.WalkDir(s.Config.DataDir, func(p string, e fs.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				if b, _ := os.ReadFile(p); bytes.Contains(b, []byte("CONTENT-SCANNER-PLAINTEXT-MARKER")) {
					t.Errorf("plaintext found in %s", p)
				}
			}
			return nil
		})
	})

	t.Run("infected", func(t *testing.T) {
		body := map[string]any{"file": infected.json(t)}
		r := post(t, s, "/scan_encrypted", alice.Token, body)
		wantVerdict(t, r, false)
		if !strings.Contains(r.str("info"), clamdtest.Signature) {
			t.Errorf("info %q does not name the signature", r.str("info"))
		}
		wantReason(t, post(t, s, "/download_encrypted", alice.Token, body), 403, "MCS_MEDIA_NOT_CLEAN")
	})

	// A verdict is for the content and the key that decrypts it: a scan with
	// a wrong key (garbage, so "clean") must not answer for the right one,
	// or anyone could whitewash an attachment for everyone.
	t.Run("verdict per key", func(t *testing.T) {
		poisoned := uploadEncrypted(t, s, alice.Token, clamdtest.EICAR())
		wrong := poisoned.json(t)
		wrong["key"].(map[string]any)["k"] = attachment.NewEncryptedFile().Key.Key
		wantVerdict(t, post(t, s, "/scan_encrypted", alice.Token, map[string]any{"file": wrong}), true)
		wantVerdict(t, post(t, s, "/scan_encrypted", alice.Token, map[string]any{"file": poisoned.json(t)}), false)
	})

	t.Run("encrypted_body", func(t *testing.T) {
		wantVerdict(t, post(t, s, "/scan_encrypted", alice.Token, sealFor(t, publicKey, map[string]any{"file": clean.json(t)})), true)
		r := post(t, s, "/scan_encrypted", alice.Token, sealFor(t, publicKey, map[string]any{"file": infected.json(t)}))
		wantVerdict(t, r, false)
		// encrypted_body wins over a file beside it.
		sealed := sealFor(t, publicKey, map[string]any{"file": infected.json(t)})
		sealed["file"] = clean.json(t)
		wantReason(t, post(t, s, "/download_encrypted", alice.Token, sealed), 403, "MCS_MEDIA_NOT_CLEAN")
		r = post(t, s, "/download_encrypted", alice.Token, sealFor(t, publicKey, map[string]any{"file": clean.json(t)}))
		if r.Status != 200 || !bytes.Equal(r.Body, clean.ciphertext) {
			t.Fatalf("download_encrypted with encrypted_body: %d", r.Status)
		}
	})

	t.Run("bad key", func(t *testing.T) {
		other, _ := ecdh.X25519().GenerateKey(nil)
		otherKey := base64.RawStdEncoding.EncodeToString(other.PublicKey().Bytes())
		wantReason(t, post(t, s, "/scan_encrypted", alice.Token, sealFor(t, otherKey, map[string]any{"file": clean.json(t)})), 403, "MCS_BAD_DECRYPTION")
		wantReason(t, post(t, s, "/download_encrypted", alice.Token, sealFor(t, otherKey, map[string]any{"file": clean.json(t)})), 403, "MCS_BAD_DECRYPTION")
		// A sealed body that is not an object is malformed, not undecryptable.
		wantReason(t, post(t, s, "/scan_encrypted", alice.Token, sealFor(t, publicKey, "hello")), 400, "MCS_MALFORMED_JSON")
	})

	t.Run("malformed", func(t *testing.T) {
		edit := func(f func(m map[string]any)) map[string]any {
			m := clean.json(t)
			f(m)
			return map[string]any{"file": m}
		}
		for name, body := range map[string]any{
			"not JSON":        "{not json",
			"array":           "[]",
			"no file":         "{}",
			"file null":       `{"file": null}`,
			"encrypted_body":  `{"encrypted_body": "x"}`,
			"version":         edit(func(m map[string]any) { m["v"] = "v1" }),
			"alg":             edit(func(m map[string]any) { m["key"].(map[string]any)["alg"] = "A128CTR" }),
			"key_ops":         edit(func(m map[string]any) { m["key"].(map[string]any)["key_ops"] = []string{"encrypt"} }),
			"ext":             edit(func(m map[string]any) { m["key"].(map[string]any)["ext"] = false }),
			"short key":       edit(func(m map[string]any) { m["key"].(map[string]any)["k"] = "AAAA" }),
			"iv":              edit(func(m map[string]any) { delete(m, "iv") }),
			"hash":            edit(func(m map[string]any) { m["hashes"] = map[string]any{} }),
			"url":             edit(func(m map[string]any) { m["url"] = "https://localhost/x" }),
			"url with a path": edit(func(m map[string]any) { m["url"] = m["url"].(string) + "/more" }),
		} {
			t.Run(name, func(t *testing.T) {
				wantReason(t, post(t, s, "/scan_encrypted", alice.Token, body), 400, "MCS_MALFORMED_JSON")
			})
		}
		// The hash is of the ciphertext: another file's hash does not match.
		wrong := clean.json(t)
		wrong["hashes"] = infected.json(t)["hashes"]
		wantReason(t, post(t, s, "/scan_encrypted", alice.Token, map[string]any{"file": wrong}), 400, "MCS_MEDIA_FAILED_TO_DECRYPT")
	})

	t.Run("unknown media", func(t *testing.T) {
		m := clean.json(t)
		m["url"] = "mxc://localhost/doesNotExist"
		wantReason(t, post(t, s, "/scan_encrypted", alice.Token, map[string]any{"file": m}), 404, "M_NOT_FOUND")
		wantReason(t, do(t, s, "GET", scanner+"/scan/localhost/doesNotExist", alice.Token, nil), 404, "M_NOT_FOUND")
		wantReason(t, do(t, s, "GET", scanner+"/download/localhost/doesNotExist", alice.Token, nil), 404, "M_NOT_FOUND")
	})

	t.Run("auth", func(t *testing.T) {
		body := map[string]any{"file": clean.json(t)}
		wantReason(t, post(t, s, "/scan_encrypted", "not-a-token", body), 401, "M_UNKNOWN_TOKEN")
		r := do(t, s, "GET", scanner+"/scan/localhost/"+plainEICAR, "", nil, "Authorization", "Basic abc")
		wantReason(t, r, 401, "M_MISSING_TOKEN")
		// Without a token the scanner reads media as the unauthenticated
		// endpoints do: media uploaded under the legacy freeze are not
		// there, older ones are.
		wantReason(t, post(t, s, "/scan_encrypted", "", body), 404, "M_NOT_FOUND")
		wantVerdict(t, do(t, s, "GET", scanner+"/scan/localhost/"+plainEICAR, "", nil), false)
		// Browsers may call it from another origin.
		if r := do(t, s, "OPTIONS", scanner+"/scan_encrypted", "", nil); r.Status != 200 || !strings.Contains(r.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
			t.Fatalf("CORS preflight: %d %v", r.Status, r.Header)
		}
		// The public key needs no token.
		if r := do(t, s, "GET", scanner+"/public_key", "", nil); r.Status != 200 {
			t.Fatalf("public_key: %d", r.Status)
		}
	})

	t.Run("plain", func(t *testing.T) {
		img := pngBytes(t, 64, 48)
		id := mustUpload(t, s, alice.Token, "image/png", "pic.png", img)
		wantVerdict(t, do(t, s, "GET", scanner+"/scan/localhost/"+id, alice.Token, nil), true)
		r := do(t, s, "GET", scanner+"/download/localhost/"+id, alice.Token, nil)
		if r.Status != 200 || !bytes.Equal(r.Body, img) || r.Header.Get("Content-Type") != "image/png" {
			t.Fatalf("download: %d %q", r.Status, r.Header.Get("Content-Type"))
		}
		r = do(t, s, "GET", scanner+"/thumbnail/localhost/"+id+"?width=32&height=32&method=crop", alice.Token, nil)
		if r.Status != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "image/") {
			t.Fatalf("thumbnail: %d %s", r.Status, r.Body)
		}
		wantReason(t, do(t, s, "GET", scanner+"/thumbnail/localhost/"+id, alice.Token, nil), 400, "M_MISSING_PARAM")

		// The infected file stored while clamd was away.
		wantVerdict(t, do(t, s, "GET", scanner+"/scan/localhost/"+plainEICAR, alice.Token, nil), false)
		wantReason(t, do(t, s, "GET", scanner+"/download/localhost/"+plainEICAR, alice.Token, nil), 403, "MCS_MEDIA_NOT_CLEAN")
		wantReason(t, do(t, s, "GET", scanner+"/thumbnail/localhost/"+plainEICAR+"?width=32&height=32", alice.Token, nil), 403, "MCS_MEDIA_NOT_CLEAN")
	})

	// Hostile input gets a clear refusal in the scanner's shape, never a 500.
	t.Run("hostile", func(t *testing.T) {
		f := clean.json(t)
		bodies := []string{"", "null", "0", `"x"`, "{", strings.Repeat("[", 5000), "\xff\xfe", `{"file": 5}`, `{"file": []}`,
			`{"encrypted_body": {}}`, `{"encrypted_body": {"ciphertext": 1, "mac": [], "ephemeral": null}}`,
			`{"encrypted_body": {"ciphertext": "AAAA", "mac": "AAAAAAAAAAA", "ephemeral": "` + strings.Repeat("A", 43) + `"}}`}
		for _, mut := range []func(m map[string]any){
			func(m map[string]any) { m["key"] = "x" },
			func(m map[string]any) { m["key"].(map[string]any)["k"] = 5 },
			func(m map[string]any) { m["key"].(map[string]any)["key_ops"] = "encrypt,decrypt" },
			func(m map[string]any) { m["hashes"] = []any{} },
			func(m map[string]any) { m["hashes"] = map[string]any{"sha256": nil} },
			func(m map[string]any) { m["iv"] = strings.Repeat("A", 10000) },
			func(m map[string]any) { m["url"] = "mxc://localhost/%00" },
			func(m map[string]any) { m["url"] = "mxc://" + strings.Repeat("a", 5000) + "/x" },
			func(m map[string]any) { m["url"] = "mxc://localhost/" + strings.Repeat("a", 300) },
			func(m map[string]any) { m["url"] = "mxc://local\u0000host/x" },
		} {
			m := map[string]any{}
			b, _ := json.Marshal(f)
			json.Unmarshal(b, &m)
			mut(m)
			b, _ = json.Marshal(map[string]any{"file": m})
			bodies = append(bodies, string(b))
		}
		for _, path := range []string{"/scan_encrypted", "/download_encrypted"} {
			for _, b := range bodies {
				for _, tok := range []string{alice.Token, ""} {
					r := post(t, s, path, tok, b)
					if r.Status >= 500 || r.Status < 400 || r.str("reason") == "" {
						t.Fatalf("%s %.80q: %d %s", path, b, r.Status, r.Body)
					}
				}
			}
		}
		for _, route := range []string{"/scan/", "/download/", "/thumbnail/"} {
			for _, p := range []string{"localhost/..", "localhost/%00", "%00/x", "localhost/" + strings.Repeat("a", 8000), "a%2Fb/c", "localhost/a?width=-1&height=x"} {
				r := do(t, s, "GET", scanner+route+p, alice.Token, nil)
				if r.Status >= 500 || r.Status < 400 {
					t.Fatalf("GET %s%.80s: %d %s", route, p, r.Status, r.Body)
				}
			}
		}
	})

	t.Run("bounds", func(t *testing.T) {
		big := `{"file": {}, "pad": "` + strings.Repeat("a", 70<<10) + `"}`
		wantReason(t, post(t, s, "/scan_encrypted", alice.Token, big), 413, "M_TOO_LARGE")
	})
}

// An attachment on another server is fetched over federation (and cached)
// like any remote media, then decrypted and scanned here; when that server
// cannot be reached the answer is 502 MCS_MEDIA_REQUEST_FAILED.
func TestContentScannerRemoteMedia(t *testing.T) {
	d := clamdtest.Start(t)
	servers := hstest.StartFederation(t, 2, func(c *config.Config) { c.ContentScanner = true; c.ClamdAddress = d.TCP })
	a, b := servers[0], servers[1]
	alice, bob := a.CreateUser(t, "alice"), b.CreateUser(t, "bob")
	infected := uploadEncrypted(t, b, bob.Token, clamdtest.EICAR())
	clean := uploadEncrypted(t, b, bob.Token, []byte("hello from b"))

	wantVerdict(t, post(t, a, "/scan_encrypted", alice.Token, map[string]any{"file": infected.json(t)}), false)
	r := post(t, a, "/download_encrypted", alice.Token, map[string]any{"file": clean.json(t)})
	if r.Status != 200 || !bytes.Equal(r.Body, clean.ciphertext) {
		t.Fatalf("remote download_encrypted: %d %s", r.Status, r.Body)
	}

	b.Stop()
	// Cached here: still answered.
	wantVerdict(t, post(t, a, "/scan_encrypted", alice.Token, map[string]any{"file": clean.json(t)}), true)
	// Not cached, and its server is down.
	m := clean.json(t)
	m["url"] = "mxc://" + b.ServerName + "/neverFetched"
	wantReason(t, post(t, a, "/scan_encrypted", alice.Token, map[string]any{"file": m}), 502, "MCS_MEDIA_REQUEST_FAILED")
}

// The operator's MIME type policy applies to the type detected from the
// (decrypted) content, whatever the client declared: refused types are 403
// MCS_MIME_TYPE_FORBIDDEN for scans and downloads alike.
func TestContentScannerTypePolicy(t *testing.T) {
	d := clamdtest.Start(t)
	exe := append([]byte("MZ\x90\x00\x03"), bytes.Repeat([]byte{0}, 100)...)
	html := []byte("<!DOCTYPE html><html><body>hi</body></html>")
	img := pngBytes(t, 8, 8)

	s := hstest.Start(t, func(c *config.Config) {
		c.ContentScanner, c.ClamdAddress = true, d.TCP
		c.ContentScannerBlockedTypes = []string{"application/x-dosexec", "text/*"}
	})
	alice := s.CreateUser(t, "alice")
	for _, content := range [][]byte{exe, html} {
		f := uploadEncrypted(t, s, alice.Token, content)
		for _, path := range []string{"/scan_encrypted", "/download_encrypted"} {
			r := post(t, s, path, alice.Token, map[string]any{"file": f.json(t)})
			wantReason(t, r, 403, "MCS_MIME_TYPE_FORBIDDEN")
		}
	}
	wantVerdict(t, post(t, s, "/scan_encrypted", alice.Token, map[string]any{"file": uploadEncrypted(t, s, alice.Token, img).json(t)}), true)
	id := mustUpload(t, s, alice.Token, "image/png", "not-really.png", html)
	r := do(t, s, "GET", scanner+"/scan/localhost/"+id, alice.Token, nil)
	wantReason(t, r, 403, "MCS_MIME_TYPE_FORBIDDEN")
	if r.str("info") != "File type: text/html not allowed" {
		t.Errorf("info %q", r.str("info"))
	}
	wantReason(t, do(t, s, "GET", scanner+"/download/localhost/"+id, alice.Token, nil), 403, "MCS_MIME_TYPE_FORBIDDEN")

	s = hstest.Start(t, func(c *config.Config) {
		c.ContentScanner, c.ClamdAddress = true, d.TCP
		c.ContentScannerAllowedTypes = []string{"image/*"}
	})
	alice = s.CreateUser(t, "alice")
	wantReason(t, post(t, s, "/scan_encrypted", alice.Token, map[string]any{"file": uploadEncrypted(t, s, alice.Token, []byte("plain words")).json(t)}), 403, "MCS_MIME_TYPE_FORBIDDEN")
	wantVerdict(t, post(t, s, "/scan_encrypted", alice.Token, map[string]any{"file": uploadEncrypted(t, s, alice.Token, img).json(t)}), true)

	for _, args := range [][]string{
		{"--content-scanner-allowed-types", "image/*", "--content-scanner-blocked-types", "text/html"},
		{"--content-scanner-blocked-types", "html"},
		{"--content-scanner-allowed-types", "image/png; charset=x"},
	} {
		if _, err := config.Load(args, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "content_scanner_") {
			t.Errorf("%v: %v", args, err)
		}
	}
}
