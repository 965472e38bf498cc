package store

import "context"

// ServerKey is one ed25519 verify key of a server: another server's, as its
// last fetched /_matrix/key/v2/server response published it, or one of this
// server's own old keys after a rotation. The keyring decides what the
// times mean; the store keeps them.
type ServerKey struct {
	ServerName string
	KeyID      string // "ed25519:abc"
	PublicKey  string // unpadded base64, as published
	// ValidUntilTS (ms): a key of verify_keys may be used for what is
	// dated up to this time (the keyring stores the lesser of the
	// response's valid_until_ts and 7 days after the fetch).
	ValidUntilTS int64
	// ExpiredTS (ms): non-zero for a key of old_verify_keys, valid for
	// what is dated before this time only.
	ExpiredTS int64
	// FetchedTS (ms): when the response that told us was fetched.
	FetchedTS int64
}

// ServerKeyResponse is a server's whole signed key response as it sent it,
// kept so the notary can hand it on (countersigned) and serve it while the
// server is unreachable.
type ServerKeyResponse struct {
	ServerName   string
	ValidUntilTS int64 // as published (not capped)
	FetchedTS    int64
	JSON         []byte
}

// ServerKeys keeps other servers' signing keys (and this server's own old
// ones) for the keyring, shared by every process on a database.
type ServerKeys interface {
	// ServerKeys returns every key stored for serverName, in key ID order;
	// none is an empty slice.
	ServerKeys(ctx context.Context, serverName string) ([]ServerKey, error)
	// StoreServerKeys records keys (all of serverName) and, unless nil, the
	// response they came from, in one transaction. A stored key is replaced
	// by one fetched at the same time or later; an older fetch (another
	// process's, slower) changes nothing. Keys not listed stay.
	StoreServerKeys(ctx context.Context, serverName string, keys []ServerKey, resp *ServerKeyResponse) error
	// ServerKeyResponse returns the last response stored for serverName, or
	// ErrNotFound.
	ServerKeyResponse(ctx context.Context, serverName string) (*ServerKeyResponse, error)
}

// SigningKeyRotator is implemented by stores that hold the server's signing
// key themselves (those several processes may share: see
// Cluster.SharedSigningKey).
type SigningKeyRotator interface {
	// RotateSharedSigningKey replaces the stored signing key oldKey (text
	// form) by newKey and records retired, the old key's public half, as
	// one of this server's old keys, in one transaction. If the stored key
	// is not oldKey (another rotation won) it returns ErrConflict and
	// changes nothing.
	RotateSharedSigningKey(ctx context.Context, oldKey, newKey []byte, retired ServerKey) error
}
