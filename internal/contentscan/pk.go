package contentscan

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"strings"
)

// Key is the scanner's Curve25519 key pair: clients encrypt request bodies
// to its public key (GET /public_key) with libolm's PkEncryption, and the
// scanner opens them with PkDecryption.
type Key struct {
	priv *ecdh.PrivateKey
}

// keyInfo separates the scanner key from every other use of the secret it
// is derived from.
const keyInfo = "conclave content scanner curve25519 v1"

// DeriveKey derives the key pair from secret (the server's signing key
// seed): HKDF-SHA-256 with its own info string, so the scanner key reveals
// nothing about the secret. Deriving it instead of storing a second secret
// makes it the same in every process sharing the database and stable across
// restarts, wherever the signing key is kept; a rotated signing key changes
// it, and clients then get MCS_BAD_DECRYPTION once, fetch the new public key
// and retry, as the scanner API asks of them.
func DeriveKey(secret []byte) (*Key, error) {
	if len(secret) < 32 {
		return nil, errors.New("content scanner key: the secret is shorter than 32 bytes")
	}
	seed, err := hkdf.Key(sha256.New, secret, nil, keyInfo, 32)
	if err != nil {
		return nil, err
	}
	priv, err := ecdh.X25519().NewPrivateKey(seed)
	if err != nil {
		return nil, err
	}
	return &Key{priv: priv}, nil
}

// PublicKey is the public key as clients read it: unpadded base64, as olm
// writes Curve25519 keys.
func (k *Key) PublicKey() string {
	return base64.RawStdEncoding.EncodeToString(k.priv.PublicKey().Bytes())
}

// PkMessage is an encrypted_body: PkEncryption's three outputs.
type PkMessage struct {
	Ciphertext string `json:"ciphertext"`
	MAC        string `json:"mac"`
	Ephemeral  string `json:"ephemeral"`
}

// errBadDecryption is any failure to open a PkMessage: the client most
// likely encrypted to an old public key.
var errBadDecryption = errors.New("bad decryption")

// Decrypt opens a message PkEncryption sealed for this key. The
// construction is libolm's (and vodozemac's) PkDecryption, the one the
// spec's m.megolm_backup.v1.curve25519-aes-sha2 names (Client-Server API,
// "Backup algorithm: m.megolm_backup.v1.curve25519-aes-sha2"): X25519 with
// the ephemeral key, HKDF-SHA-256 (no salt, empty info) to 80 bytes — AES
// key, MAC key, IV — then AES-256-CBC with PKCS#7 padding. The MAC is
// HMAC-SHA-256 truncated to 8 bytes; libolm computes it over an empty
// message rather than the ciphertext (the spec since v1.10 records this),
// so it only proves the right shared secret. Both forms are accepted: the
// one libolm and vodozemac send, and the one the spec first described.
func (k *Key) Decrypt(m PkMessage) ([]byte, error) {
	eph, err := decodeB64(m.Ephemeral)
	if err != nil || len(eph) != 32 {
		return nil, errBadDecryption
	}
	mac, err := decodeB64(m.MAC)
	if err != nil || len(mac) != 8 {
		return nil, errBadDecryption
	}
	ct, err := decodeB64(m.Ciphertext)
	if err != nil || len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return nil, errBadDecryption
	}
	pub, err := ecdh.X25519().NewPublicKey(eph)
	if err != nil {
		return nil, errBadDecryption
	}
	shared, err := k.priv.ECDH(pub) // fails on a low-order point
	if err != nil {
		return nil, errBadDecryption
	}
	keys, err := hkdf.Key(sha256.New, shared, nil, "", 80)
	if err != nil {
		return nil, errBadDecryption
	}
	aesKey, macKey, iv := keys[:32], keys[32:64], keys[64:]
	if !hmac.Equal(truncatedMAC(macKey, nil), mac) && !hmac.Equal(truncatedMAC(macKey, ct), mac) {
		return nil, errBadDecryption
	}
	block, err := aes.NewCipher(aesKey)
	if err != nil {
		return nil, errBadDecryption
	}
	out := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, ct)
	return unpad(out)
}

func truncatedMAC(key, msg []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(msg)
	return h.Sum(nil)[:8]
}

// unpad removes PKCS#7 padding, checking every padding byte.
func unpad(b []byte) ([]byte, error) {
	n := int(b[len(b)-1])
	if n == 0 || n > aes.BlockSize || n > len(b) {
		return nil, errBadDecryption
	}
	want := make([]byte, n)
	for i := range want {
		want[i] = byte(n)
	}
	if subtle.ConstantTimeCompare(b[len(b)-n:], want) != 1 {
		return nil, errBadDecryption
	}
	return b[:len(b)-n], nil
}

// decodeB64 reads base64 as Matrix clients write it: unpadded or padded,
// standard or URL-safe alphabet (JWK keys are URL-safe, olm output and IVs
// standard).
func decodeB64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}
