package contentscan

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"maunium.net/go/mautrix/crypto/backup"
)

func testKey(t testing.TB, b byte) *Key {
	t.Helper()
	k, err := DeriveKey(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// pkEncrypt seals body for pub as a client does. mautrix-go's key backup
// encryption is the spec's m.megolm_backup.v1.curve25519-aes-sha2, which is
// libolm's PkEncryption (MAC over the empty string included).
func pkEncrypt(t testing.TB, pub string, body any) PkMessage {
	t.Helper()
	raw, err := base64.RawStdEncoding.DecodeString(pub)
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
	b, err := json.Marshal(enc)
	if err != nil {
		t.Fatal(err)
	}
	var m PkMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestPkDecryptOpensWhatPkEncryptionSeals(t *testing.T) {
	k := testKey(t, 7)
	if len(k.PublicKey()) != 43 {
		t.Fatalf("public key %q is not 32 bytes in unpadded base64", k.PublicKey())
	}
	body := map[string]any{"file": map[string]any{"url": "mxc://a/b"}}
	m := pkEncrypt(t, k.PublicKey(), body)
	plain, err := k.Decrypt(m)
	if err != nil {
		t.Fatal(err)
	}
	if string(plain) != `{"file":{"url":"mxc://a/b"}}` {
		t.Fatalf("plaintext %s", plain)
	}

	// Another key cannot open it; nor can a changed MAC, ephemeral key or
	// a ciphertext that is not whole blocks.
	if _, err := testKey(t, 8).Decrypt(m); err == nil {
		t.Fatal("another key opened the message")
	}
	bad := m
	bad.MAC = base64.RawStdEncoding.EncodeToString([]byte("12345678"))
	if _, err := k.Decrypt(bad); err == nil {
		t.Fatal("a wrong MAC was accepted")
	}
	bad = m
	other := pkEncrypt(t, k.PublicKey(), body)
	bad.Ephemeral = other.Ephemeral
	if _, err := k.Decrypt(bad); err == nil {
		t.Fatal("a wrong ephemeral key was accepted")
	}
	bad = m
	bad.Ciphertext = bad.Ciphertext[:len(bad.Ciphertext)-4]
	if _, err := k.Decrypt(bad); err == nil {
		t.Fatal("a truncated ciphertext was accepted")
	}
	for _, junk := range []PkMessage{{}, {Ciphertext: "!!", MAC: m.MAC, Ephemeral: m.Ephemeral}, {Ciphertext: m.Ciphertext, MAC: m.MAC, Ephemeral: "AAAA"}} {
		if _, err := k.Decrypt(junk); err == nil {
			t.Fatalf("junk %+v accepted", junk)
		}
	}
}

// The key is derived, so it is the same for the same secret (every process,
// every restart) and differs for another.
func TestDeriveKeyIsStable(t *testing.T) {
	if testKey(t, 1).PublicKey() != testKey(t, 1).PublicKey() {
		t.Fatal("same secret, different keys")
	}
	if testKey(t, 1).PublicKey() == testKey(t, 2).PublicKey() {
		t.Fatal("different secrets, same key")
	}
	if _, err := DeriveKey(make([]byte, 16)); err == nil {
		t.Fatal("a short secret was accepted")
	}
}

// With the olm library the web clients use (matrix-js-sdk's dependency
// @matrix-org/olm, installed by `make test-js`'s npm ci in tests/js), its
// PkEncryption output opens here. Skipped when node or the module is absent.
func TestPkDecryptOpensLibolmPkEncryption(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	mod := filepath.Join(filepath.Dir(file), "../../tests/js/node_modules/@matrix-org/olm/olm.js")
	node, err := exec.LookPath("node")
	if _, serr := os.Stat(mod); err != nil || serr != nil {
		t.Skip("node or tests/js/node_modules/@matrix-org/olm missing (cd tests/js && npm ci)")
	}
	k := testKey(t, 9)
	const body = `{"file":{"v":"v2","url":"mxc://example.org/abc"}}`
	script := `
const Olm = require(process.argv[1]);
Olm.init().then(() => {
  const e = new Olm.PkEncryption();
  e.set_recipient_key(process.argv[2]);
  process.stdout.write(JSON.stringify(e.encrypt(process.argv[3])));
  e.free();
});`
	for i := 0; i < 3; i++ {
		out, err := exec.Command(node, "-e", script, mod, k.PublicKey(), body).Output()
		if err != nil {
			t.Fatalf("node: %v", err)
		}
		var m PkMessage
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("olm output %s: %v", out, err)
		}
		plain, err := k.Decrypt(m)
		if err != nil {
			t.Fatalf("libolm's message %s does not open: %v", out, err)
		}
		if string(plain) != body {
			t.Fatalf("plaintext %s", plain)
		}
	}
}

func TestUnpadRefusesBadPadding(t *testing.T) {
	block := make([]byte, 16)
	rand.Read(block)
	for _, last := range []byte{0, 17, 200} {
		block[15] = last
		if _, err := unpad(block); err == nil {
			t.Fatalf("padding byte %d accepted", last)
		}
	}
	block[15], block[14] = 2, 3
	if _, err := unpad(block); err == nil {
		t.Fatal("inconsistent padding accepted")
	}
	block[14] = 2
	if out, err := unpad(block); err != nil || len(out) != 14 {
		t.Fatalf("good padding: %d %v", len(out), err)
	}
}
