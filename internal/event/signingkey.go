package event

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"strings"
)

// SigningKey is a server's ed25519 signing key. ID is the signing key
// identifier, the algorithm and version joined by a colon ("ed25519:a_AbCd").
type SigningKey struct {
	ID      string
	Private ed25519.PrivateKey
}

// unpadded is the "Unpadded Base64" of the spec appendix: the standard
// alphabet without '=' padding. Hashes, signatures and keys use it.
var unpadded = base64.RawStdEncoding

// urlUnpadded is "URL-safe Unpadded Base64", used for event IDs (v4+) and
// v12 room IDs.
var urlUnpadded = base64.RawURLEncoding

// decodeBase64 accepts unpadded and padded standard base64. The spec
// mandates unpadded output; accepting padding on input costs nothing and
// matches what other servers tolerate.
func decodeBase64(s string) ([]byte, error) {
	return unpadded.DecodeString(strings.TrimRight(s, "="))
}

// GenerateSigningKey creates a new key with a random version of the form
// "a_XXXX", the shape Synapse uses, from the system's secure random source.
func GenerateSigningKey() (*SigningKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	var r [4]byte
	if _, err := rand.Read(r[:]); err != nil {
		return nil, err
	}
	v := []byte("a_")
	for _, b := range r {
		v = append(v, letters[int(b)%len(letters)])
	}
	return &SigningKey{ID: "ed25519:" + string(v), Private: priv}, nil
}

// NewSigningKey makes a key from its version (the part after "ed25519:")
// and 32-byte seed.
func NewSigningKey(version string, seed []byte) (*SigningKey, error) {
	if !ValidKeyVersion(version) {
		return nil, errBadJSONMsg("invalid signing key version " + version)
	}
	if len(seed) != ed25519.SeedSize {
		return nil, errBadJSONMsg("ed25519 seed must be 32 bytes")
	}
	return &SigningKey{ID: "ed25519:" + version, Private: ed25519.NewKeyFromSeed(seed)}, nil
}

// ValidKeyVersion checks the grammar of a key version, and of an
// algorithm name (appendix "Signing Keys": key identifiers are
// algorithm:version, each [a-zA-Z0-9_]+).
func ValidKeyVersion(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Version returns the key version, the part of ID after "ed25519:".
func (k *SigningKey) Version() string {
	_, v, _ := strings.Cut(k.ID, ":")
	return v
}

// PublicKey returns the verification key.
func (k *SigningKey) PublicKey() ed25519.PublicKey {
	return k.Private.Public().(ed25519.PublicKey)
}

// PublicKeyBase64 returns the verification key in unpadded base64, as
// published in /_matrix/key/v2/server.
func (k *SigningKey) PublicKeyBase64() string {
	return unpadded.EncodeToString(k.PublicKey())
}

// MarshalText writes the key in the Synapse signing-key file format,
// "ed25519 <version> <unpadded base64 seed>\n", so that keys can move
// between Conclave and Synapse deployments.
func (k *SigningKey) MarshalText() ([]byte, error) {
	alg, ver, ok := strings.Cut(k.ID, ":")
	if !ok || alg != "ed25519" || !ValidKeyVersion(ver) || len(k.Private) != ed25519.PrivateKeySize {
		return nil, errBadJSONMsg("not a valid ed25519 signing key")
	}
	out := make([]byte, 0, len(k.ID)+48)
	out = append(out, "ed25519 "...)
	out = append(out, ver...)
	out = append(out, ' ')
	out = unpadded.AppendEncode(out, k.Private.Seed())
	return append(out, '\n'), nil
}

// UnmarshalText reads the first key of a Synapse signing-key file.
func (k *SigningKey) UnmarshalText(text []byte) error {
	p, err := ParseSigningKey(text)
	if err != nil {
		return err
	}
	*k = *p
	return nil
}

// ParseSigningKey reads a Synapse signing-key file and returns its first
// key, the one Synapse signs with.
func ParseSigningKey(text []byte) (*SigningKey, error) {
	keys, err := ParseSigningKeys(text)
	if err != nil {
		return nil, err
	}
	return keys[0], nil
}

// ParseSigningKeys reads every key of a Synapse signing-key file: one key
// per line, "<algorithm> <version> <base64 seed>"; blank lines are skipped.
func ParseSigningKeys(text []byte) ([]*SigningKey, error) {
	var keys []*SigningKey
	for line := range bytes.Lines(text) {
		f := strings.Fields(string(line))
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 || f[0] != "ed25519" {
			return nil, errBadJSONMsg("signing key line must be \"ed25519 <version> <seed>\"")
		}
		seed, err := decodeBase64(f[2])
		if err != nil {
			return nil, errBadJSONMsg("signing key seed is not base64")
		}
		k, err := NewSigningKey(f[1], seed)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errBadJSONMsg("no signing key found")
	}
	return keys, nil
}

// ValidKeyID reports whether id is "ed25519:" and a valid version: the only
// key algorithm servers sign with.
func ValidKeyID(id string) bool {
	v, ok := strings.CutPrefix(id, "ed25519:")
	return ok && ValidKeyVersion(v)
}
