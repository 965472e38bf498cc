package keys

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Signed JSON (spec: Appendices, "Signing JSON"). The event package is
// getting its own implementation (event.VerifyJSON); this one is kept small
// and behind VerifySignature so that the two can be unified at merge.

// ErrBadSignature is returned when a signature is missing or does not verify.
var ErrBadSignature = errors.New("signature does not verify")

// VerifySignature checks that obj (a JSON object) carries, under
// signatures[signer][keyID], a valid ed25519 signature by pub (unpadded
// base64) over its canonical form without "signatures" and "unsigned".
var VerifySignature = verifyJSON

func verifyJSON(obj json.RawMessage, signer, keyID, pub string) error {
	key, err := decodeB64(pub)
	if err != nil || len(key) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: public key %s is not a valid ed25519 key", ErrBadSignature, keyID)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		return err
	}
	var sigs map[string]map[string]string
	if raw, ok := m["signatures"]; !ok || json.Unmarshal(raw, &sigs) != nil {
		return fmt.Errorf("%w: no signatures", ErrBadSignature)
	}
	sigB64, ok := sigs[signer][keyID]
	if !ok {
		return fmt.Errorf("%w: no signature by %s %s", ErrBadSignature, signer, keyID)
	}
	sig, err := decodeB64(sigB64)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: malformed signature by %s", ErrBadSignature, keyID)
	}
	delete(m, "signatures")
	delete(m, "unsigned")
	msg, err := canonicalObject(m)
	if err != nil {
		return err
	}
	if !ed25519.Verify(ed25519.PublicKey(key), msg, sig) {
		return fmt.Errorf("%w: signature by %s %s is invalid", ErrBadSignature, signer, keyID)
	}
	return nil
}

// decodeB64 accepts unpadded (as the spec mandates) and padded base64.
func decodeB64(s string) ([]byte, error) {
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}

// Canonical returns the canonical JSON form of raw: object keys sorted by
// code point, no insignificant whitespace, strings with only the mandatory
// escapes, integers only (floats and out-of-range numbers are errors).
func Canonical(raw []byte) ([]byte, error) {
	var buf bytes.Buffer
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after JSON value")
	}
	if err := encodeCanonical(&buf, v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func canonicalObject(m map[string]json.RawMessage) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return Canonical(b)
}

// StripForSigning returns the canonical form of obj without "signatures"
// and "unsigned": two key objects are the same key when these are equal.
func StripForSigning(obj json.RawMessage) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		return nil, err
	}
	delete(m, "signatures")
	delete(m, "unsigned")
	return canonicalObject(m)
}

const maxSafeInt = 1<<53 - 1

func encodeCanonical(buf *bytes.Buffer, v any) error {
	switch x := v.(type) {
	case nil:
		buf.WriteString("null")
	case bool:
		if x {
			buf.WriteString("true")
		} else {
			buf.WriteString("false")
		}
	case json.Number:
		n, err := strconv.ParseInt(string(x), 10, 64)
		if err != nil {
			// 1.0 and 1e2 are integers written oddly; canonical JSON has none.
			f, ferr := strconv.ParseFloat(string(x), 64)
			if ferr != nil || f != math.Trunc(f) || math.Abs(f) > maxSafeInt {
				return fmt.Errorf("number %s is not an integer in the canonical JSON range", x)
			}
			n = int64(f)
		}
		if n > maxSafeInt || n < -maxSafeInt {
			return fmt.Errorf("number %s is out of the canonical JSON range", x)
		}
		buf.WriteString(strconv.FormatInt(n, 10))
	case string:
		writeString(buf, x)
	case []any:
		buf.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := encodeCanonical(buf, e); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		// Go compares strings bytewise; for UTF-8 that is code point order.
		sort.Strings(keys)
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeString(buf, k)
			buf.WriteByte(':')
			if err := encodeCanonical(buf, x[k]); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	default:
		return fmt.Errorf("unexpected JSON value %T", v)
	}
	return nil
}

func writeString(buf *bytes.Buffer, s string) {
	buf.WriteByte('"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch c {
			case '"':
				buf.WriteString(`\"`)
			case '\\':
				buf.WriteString(`\\`)
			case '\b':
				buf.WriteString(`\b`)
			case '\f':
				buf.WriteString(`\f`)
			case '\n':
				buf.WriteString(`\n`)
			case '\r':
				buf.WriteString(`\r`)
			case '\t':
				buf.WriteString(`\t`)
			default:
				if c < 0x20 {
					fmt.Fprintf(buf, `\u%04x`, c)
				} else {
					buf.WriteByte(c)
				}
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			buf.WriteString(`\ufffd`)
		} else {
			buf.WriteString(s[i : i+size])
		}
		i += size
	}
	buf.WriteByte('"')
}
