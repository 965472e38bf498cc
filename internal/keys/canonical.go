package keys

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"conclave/internal/event"
)

// Signed JSON (spec: Appendices, "Signing JSON") comes from the event
// package, which owns canonical JSON and signatures for the whole server.

// ErrBadSignature is returned when a signature is missing or does not verify.
var ErrBadSignature = errors.New("signature does not verify")

// VerifySignature checks that obj (a JSON object) carries, under
// signatures[signer][keyID], a valid ed25519 signature by pub (unpadded
// base64) over its canonical form without "signatures" and "unsigned".
func VerifySignature(obj json.RawMessage, signer, keyID, pub string) error {
	key, err := decodeB64(pub)
	if err != nil || len(key) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: public key %s is not a valid ed25519 key", ErrBadSignature, keyID)
	}
	if err := event.VerifyJSON(obj, signer, keyID, ed25519.PublicKey(key)); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	return nil
}

// decodeB64 accepts unpadded (as the spec mandates) and padded base64.
func decodeB64(s string) ([]byte, error) {
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}

// Canonical returns the strict canonical JSON form of raw (integers only).
func Canonical(raw []byte) ([]byte, error) { return event.CanonicalJSON(raw, true) }

// StripForSigning returns the canonical form of obj without "signatures"
// and "unsigned": two key objects are the same key when these are equal.
func StripForSigning(obj json.RawMessage) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		return nil, err
	}
	delete(m, "signatures")
	delete(m, "unsigned")
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return event.CanonicalJSON(b, true)
}
