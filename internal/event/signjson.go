package event

import (
	"crypto/ed25519"
	"strings"
	"sync"
)

// SignJSON signs a JSON object per the appendix "Signing JSON": the object
// without "signatures" and "unsigned" is encoded as canonical JSON and
// signed; the signature goes into signatures[serverName][key.ID], next to
// any signatures already present, and "unsigned" is kept. The result is the
// canonical encoding of the signed object.
//
// The input must be strict canonical JSON material (integers only): what
// Conclave signs must be verifiable by every implementation.
func SignJSON(obj []byte, serverName string, key *SigningKey) ([]byte, error) {
	c, err := AppendCanonicalJSON(nil, obj, true)
	if err != nil {
		return nil, err
	}
	if len(c) == 0 || c[0] != '{' {
		return nil, errBadJSONMsg("only objects can be signed")
	}
	return signCanonical(nil, c, serverName, key)
}

// VerifyJSON checks signatures[serverName][keyID] of a JSON object against
// pub, per the appendix "Checking for a Signature". Only ed25519 key IDs are
// understood. Numbers outside the strict canonical range are tolerated here
// because objects signed by other servers (older Synapse key responses,
// old-room events) may contain them and were signed in their encoding.
func VerifyJSON(obj []byte, serverName, keyID string, pub ed25519.PublicKey) error {
	b := bufPool.Get().(*[]byte)
	defer bufPool.Put(b)
	c, err := AppendCanonicalJSON((*b)[:0], obj, false)
	*b = c
	if err != nil {
		return err
	}
	if len(c) == 0 || c[0] != '{' {
		return errBadJSONMsg("only objects can be verified")
	}
	return verifyCanonical(c, serverName, keyID, pub)
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// signCanonical appends to dst the canonical object c with a signature by
// key added under serverName.
func signCanonical(dst, c []byte, serverName string, key *SigningKey) ([]byte, error) {
	if !strings.HasPrefix(key.ID, "ed25519:") || len(key.Private) != ed25519.PrivateKeySize {
		return nil, errBadSig("signing key is not an ed25519 key")
	}
	sigs, ok := getMember(c, "signatures")
	if !ok {
		sigs = []byte("{}")
	} else if sigs[0] != '{' {
		return nil, errBadSig("signatures is not an object")
	}
	server, ok := getMember(sigs, serverName)
	if !ok {
		server = []byte("{}")
	} else if server[0] != '{' {
		return nil, errBadSig("signatures of " + serverName + " is not an object")
	}

	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := appendWithout((*bp)[:0], c, "signatures", "unsigned")
	sig := ed25519.Sign(key.Private, buf)

	// Reuse buf for the nested edits: signature string, then the server's
	// map, then the signatures map.
	buf = buf[:0]
	buf = append(buf, '"')
	buf = unpadded.AppendEncode(buf, sig)
	buf = append(buf, '"')
	n := len(buf)
	buf = appendWithMember(buf, server, key.ID, buf[:n])
	m := len(buf)
	buf = appendWithMember(buf, sigs, serverName, buf[n:m])
	dst = appendWithMember(dst, c, "signatures", buf[m:])
	*bp = buf
	return dst, nil
}

// verifyCanonical checks one signature of the canonical object c.
func verifyCanonical(c []byte, serverName, keyID string, pub ed25519.PublicKey) error {
	if !strings.HasPrefix(keyID, "ed25519:") {
		return errBadSig("unsupported signing algorithm in " + keyID)
	}
	if len(pub) != ed25519.PublicKeySize {
		return errBadSig("verification key is not an ed25519 key")
	}
	sigs, ok := getMember(c, "signatures")
	if !ok {
		return errBadSig("no signatures")
	}
	server, ok := getMember(sigs, serverName)
	if !ok {
		return errBadSig("not signed by " + serverName)
	}
	v, ok := getMember(server, keyID)
	if !ok {
		return errBadSig("not signed by " + serverName + " with " + keyID)
	}
	s, ok := stringValue(v)
	if !ok {
		return errBadSig("signature is not a string")
	}
	sig, err := decodeBase64(s)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return errBadSig("signature is not base64 of 64 bytes")
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := appendWithout((*bp)[:0], c, "signatures", "unsigned")
	*bp = buf
	if !ed25519.Verify(pub, buf, sig) {
		return errBadSig("signature by " + serverName + " " + keyID + " does not verify")
	}
	return nil
}
