package contentscan

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"conclave/internal/media"
)

// MaxBodyBytes bounds a scan_encrypted or download_encrypted body. The
// metadata of one file, even encrypted to the scanner, is well under 2 KB.
const MaxBodyBytes = 64 << 10

// File is an encrypted attachment's metadata as a client sends it: the
// EncryptedFile of the Client-Server API ("Sending encrypted attachments"),
// checked and decoded.
type File struct {
	ServerName string
	MediaID    string
	Key        []byte // AES-256 key (JWK k)
	IV         []byte // 16 bytes: the initial counter block
	SHA256     []byte // of the ciphertext (hashes.sha256)
}

// wire forms: pointers tell a missing field from a zero value.
type requestBody struct {
	File          json.RawMessage `json:"file"`
	EncryptedBody json.RawMessage `json:"encrypted_body"`
}

type encryptedFile struct {
	V      *string            `json:"v"`
	URL    *string            `json:"url"`
	IV     *string            `json:"iv"`
	Hashes map[string]*string `json:"hashes"`
	Key    *struct {
		Alg    *string   `json:"alg"`
		Kty    *string   `json:"kty"`
		K      *string   `json:"k"`
		KeyOps *[]string `json:"key_ops"`
		Ext    *bool     `json:"ext"`
	} `json:"key"`
}

func malformed(format string, args ...any) *Error {
	return errorf(http.StatusBadRequest, ReasonMalformedJSON, format, args...)
}

// ParseBody reads the body of scan_encrypted and download_encrypted:
// {"file": EncryptedFile}, or {"encrypted_body": PkMessage} whose plaintext
// is that object (then "file" beside it is ignored, as the scanner API
// says). Errors are 400 MCS_MALFORMED_JSON for a body of the wrong shape and
// 403 MCS_BAD_DECRYPTION for an encrypted_body this key cannot open (the
// client should fetch the public key again and retry once).
func (s *Service) ParseBody(body []byte) (*File, error) {
	var rb requestBody
	if err := decodeObject(body, &rb); err != nil {
		return nil, err
	}
	if len(rb.EncryptedBody) > 0 && !isNull(rb.EncryptedBody) {
		var m PkMessage
		if err := decodeObject(rb.EncryptedBody, &m); err != nil {
			return nil, malformed("encrypted_body must be an object with string ciphertext, mac and ephemeral")
		}
		if m.Ciphertext == "" || m.MAC == "" || m.Ephemeral == "" {
			return nil, malformed("encrypted_body must have ciphertext, mac and ephemeral")
		}
		plain, err := s.key.Decrypt(m)
		if err != nil {
			return nil, errorf(http.StatusForbidden, ReasonBadDecryption, "Could not decrypt encrypted_body: fetch the public key again")
		}
		rb = requestBody{}
		if err := decodeObject(plain, &rb); err != nil {
			return nil, malformed("The decrypted encrypted_body is not a JSON object")
		}
	}
	if len(rb.File) == 0 || isNull(rb.File) {
		return nil, malformed("Missing file")
	}
	return parseFile(rb.File)
}

func isNull(b json.RawMessage) bool { return string(bytes.TrimSpace(b)) == "null" }

// decodeObject decodes a JSON object into v; anything else is
// MCS_MALFORMED_JSON.
func decodeObject(b []byte, v any) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' || !json.Valid(b) {
		return malformed("The body is not a JSON object")
	}
	if err := json.Unmarshal(b, v); err != nil {
		return malformed("The body has the wrong shape: %v", err)
	}
	return nil
}

// parseFile checks an EncryptedFile as the scanner API's schema does: v
// "v2", key {alg A256CTR, kty oct, ext true, key_ops with encrypt and
// decrypt, k}, iv, hashes.sha256 and an mxc url; and decodes the key (32
// bytes), the IV (16) and the hash (32).
func parseFile(raw json.RawMessage) (*File, error) {
	var ef encryptedFile
	if err := decodeObject(raw, &ef); err != nil {
		return nil, malformed("file must be an EncryptedFile object")
	}
	switch {
	case ef.V == nil || *ef.V != "v2":
		return nil, malformed(`file.v must be "v2"`)
	case ef.URL == nil:
		return nil, malformed("Missing file.url")
	case ef.IV == nil:
		return nil, malformed("Missing file.iv")
	case ef.Hashes == nil || ef.Hashes["sha256"] == nil:
		return nil, malformed("Missing file.hashes.sha256")
	case ef.Key == nil:
		return nil, malformed("Missing file.key")
	case ef.Key.Alg == nil || *ef.Key.Alg != "A256CTR":
		return nil, malformed(`file.key.alg must be "A256CTR"`)
	case ef.Key.Kty == nil || *ef.Key.Kty != "oct":
		return nil, malformed(`file.key.kty must be "oct"`)
	case ef.Key.Ext == nil || !*ef.Key.Ext:
		return nil, malformed("file.key.ext must be true")
	case ef.Key.KeyOps == nil || !slices.Contains(*ef.Key.KeyOps, "encrypt") || !slices.Contains(*ef.Key.KeyOps, "decrypt"):
		return nil, malformed(`file.key.key_ops must contain "encrypt" and "decrypt"`)
	case ef.Key.K == nil:
		return nil, malformed("Missing file.key.k")
	}
	f := &File{}
	var ok bool
	if f.ServerName, f.MediaID, ok = parseMXC(*ef.URL); !ok {
		return nil, malformed("file.url must be an mxc://server/mediaId URI")
	}
	var err error
	if f.Key, err = decodeB64(*ef.Key.K); err != nil || len(f.Key) != 32 {
		return nil, malformed("file.key.k must be a base64 AES-256 key")
	}
	if f.IV, err = decodeB64(*ef.IV); err != nil || len(f.IV) != aes.BlockSize {
		return nil, malformed("file.iv must be 16 bytes in base64")
	}
	if f.SHA256, err = decodeB64(*ef.Hashes["sha256"]); err != nil || len(f.SHA256) != 32 {
		return nil, malformed("file.hashes.sha256 must be a SHA-256 hash in base64")
	}
	return f, nil
}

// parseMXC splits mxc://server/mediaId; the media service decides whether
// the ID names anything.
func parseMXC(uri string) (server, mediaID string, ok bool) {
	rest, ok := strings.CutPrefix(uri, "mxc://")
	if !ok {
		return "", "", false
	}
	server, mediaID, ok = strings.Cut(rest, "/")
	if !ok || server == "" || mediaID == "" || strings.Contains(mediaID, "/") {
		return "", "", false
	}
	return server, mediaID, true
}

// Request is the media request for the file's ciphertext.
func (f *File) Request(legacy bool) media.Request {
	return media.Request{ServerName: f.ServerName, MediaID: f.MediaID, Legacy: legacy, Wait: media.DefaultWait}
}

// decrypter returns the AES-CTR keystream of the file: the Matrix
// attachment format is AES-256 in counter mode, the IV being the initial
// 128-bit counter block (its low 64 bits start at zero, so Go's 128-bit
// increment and WebCrypto's 64-bit counter agree for any real size).
func (f *File) decrypter() cipher.Stream {
	block, err := aes.NewCipher(f.Key)
	if err != nil {
		panic(err) // the key was checked to be 32 bytes
	}
	return cipher.NewCTR(block, f.IV)
}
