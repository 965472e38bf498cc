package store

import (
	"context"
	"encoding/json"
	"errors"
)

// ErrWrongBackupVersion is returned when room keys are written to a backup
// version that is not the user's current one.
var ErrWrongBackupVersion = errors.New("store: not the current backup version")

// DeviceKeys is a device's signed identity keys as uploaded.
type DeviceKeys struct {
	UserID     string
	DeviceID   string
	JSON       json.RawMessage // as uploaded (signatures included, unsigned removed)
	Ed25519    string
	Curve25519 string
	// DisplayName is the device's current display name (read only).
	DisplayName *string
}

// OneTimeKey is a one-time or fallback key: KeyID is "algorithm:id".
type OneTimeKey struct {
	KeyID     string
	Algorithm string
	JSON      json.RawMessage
}

// KeyUpload is one /keys/upload, stored atomically.
type KeyUpload struct {
	UserID, DeviceID string
	DeviceKeys       *DeviceKeys  // nil: leave as is
	OneTimeKeys      []OneTimeKey // in upload order
	FallbackKeys     []OneTimeKey // at most one per algorithm
}

// ClaimRequest asks for one key of Algorithm for a device.
type ClaimRequest struct {
	UserID, DeviceID, Algorithm string
}

// ClaimedKey is a key handed out by ClaimKeys.
type ClaimedKey struct {
	UserID, DeviceID string
	Key              OneTimeKey
}

// CrossSigningKey is a user's master, self_signing or user_signing key.
type CrossSigningKey struct {
	UserID string
	Type   string // "master", "self_signing", "user_signing"
	PubKey string // unpadded base64 ed25519 key (the key ID is "ed25519:"+PubKey)
	JSON   json.RawMessage
}

// KeySignature is a signature one key made over another, uploaded through
// /keys/signatures/upload and merged into the target's signatures on query.
type KeySignature struct {
	TargetUserID string
	TargetKeyID  string // a device ID or a cross-signing public key
	SignerUserID string
	SignerKeyID  string // "ed25519:<device ID or public key>"
	Signature    string
}

// ToDeviceSend is one message to store for one device ("*": every device
// the user has when the message is stored).
type ToDeviceSend struct {
	UserID, DeviceID string
	JSON             json.RawMessage // {"sender","type","content"} as delivered
}

// ToDeviceMessage is a stored message awaiting acknowledgement.
type ToDeviceMessage struct {
	Pos  int64
	JSON json.RawMessage
}

// BackupVersion is one server-side key backup of a user.
type BackupVersion struct {
	UserID    string
	Version   int64
	Algorithm string
	AuthData  json.RawMessage
	Etag      int64
	Count     int64
}

// RoomKey is one backed-up Megolm session.
type RoomKey struct {
	RoomID            string
	SessionID         string
	FirstMessageIndex int64
	ForwardedCount    int64
	IsVerified        bool
	SessionData       json.RawMessage
}

// Keys keeps end-to-end encryption keys, to-device messages and key backups.
type Keys interface {
	// UploadKeys stores device keys, one-time keys and fallback keys in one
	// transaction. Device keys with other identity keys (ed25519,
	// curve25519) than the stored ones replace them and drop the device's
	// earlier one-time and fallback keys. A one-time key ID already stored with different content is
	// ErrConflict (nothing written); with the same content it is skipped.
	// Changed device keys record a device list change. It returns the
	// one-time key counts after the upload and whether the device list changed.
	UploadKeys(ctx context.Context, u *KeyUpload) (counts map[string]int, listChanged bool, err error)
	OneTimeKeyCounts(ctx context.Context, userID, deviceID string) (map[string]int, error)
	// UnusedFallbackKeyAlgorithms lists algorithms with a fallback key not yet claimed.
	UnusedFallbackKeyAlgorithms(ctx context.Context, userID, deviceID string) ([]string, error)
	// DeviceKeys lists the uploaded keys of a user's devices (all when deviceIDs is empty).
	DeviceKeys(ctx context.Context, userID string, deviceIDs []string) ([]DeviceKeys, error)
	// ClaimKeys hands out, atomically, one key per request: the oldest
	// one-time key, removed, or else the fallback key, marked used and kept.
	ClaimKeys(ctx context.Context, reqs []ClaimRequest) ([]ClaimedKey, error)

	CrossSigningKeys(ctx context.Context, userID string) (map[string]CrossSigningKey, error)
	// PutCrossSigningKeys stores (replacing) a user's cross-signing keys;
	// signatures made by or over replaced keys are dropped.
	PutCrossSigningKeys(ctx context.Context, userID string, keys []CrossSigningKey) error
	// PutKeySignatures stores signatures; changedUsers get a device list change.
	PutKeySignatures(ctx context.Context, sigs []KeySignature, changedUsers []string) error
	// KeySignatures lists the stored signatures over a user's keys.
	KeySignatures(ctx context.Context, targetUserID string) ([]KeySignature, error)

	// DeviceListChanges lists the users among those sharing a joined room with
	// userID (and userID itself) whose devices or keys changed in (from, to],
	// plus users who started sharing a room in that range (changed) and users
	// who no longer share any room after a membership change in it (left).
	DeviceListChanges(ctx context.Context, userID string, from, to int64) (changed, left []string, err error)

	// SendToDevice stores messages for local devices with fresh stream
	// positions, queues fed (the m.direct_to_device EDUs for other servers,
	// as FedEnqueue does) and records the sender's transaction, atomically:
	// a retry that finds the transaction recorded finds its EDUs queued
	// too. A repeated transaction stores and queues nothing and returns
	// dup=true. It returns the users who got at least one message.
	SendToDevice(ctx context.Context, senderUserID, senderDeviceID, txnID string, msgs []ToDeviceSend, fed []FedEnqueue) (recipients []string, dup bool, err error)
	// ToDeviceMessages deletes the device's messages at or below ack and
	// returns up to limit messages in (after, upto], oldest first.
	ToDeviceMessages(ctx context.Context, userID, deviceID string, ack, after, upto int64, limit int) ([]ToDeviceMessage, error)

	// PutDehydratedDevice replaces the user's dehydrated device (MSC3814):
	// the old one is deleted like any device, a new device without usable
	// token is created with the data and keys, in one transaction.
	// ErrConflict if deviceID names another existing device of the user.
	PutDehydratedDevice(ctx context.Context, userID, deviceID string, displayName *string, data json.RawMessage, keys *KeyUpload, now int64, tokenHash []byte) error
	DehydratedDevice(ctx context.Context, userID string) (deviceID string, data json.RawMessage, err error)
	// DeleteDehydratedDevice deletes it and returns its ID (ErrNotFound if none).
	DeleteDehydratedDevice(ctx context.Context, userID string) (string, error)

	CreateBackupVersion(ctx context.Context, userID, algorithm string, authData json.RawMessage) (int64, error)
	// BackupVersion returns a version (the current one when version is 0).
	BackupVersion(ctx context.Context, userID string, version int64) (*BackupVersion, error)
	UpdateBackupVersion(ctx context.Context, userID string, version int64, authData json.RawMessage) error
	DeleteBackupVersion(ctx context.Context, userID string, version int64) error
	// PutRoomKeys writes keys to the current version (ErrWrongBackupVersion
	// otherwise), replacing a stored session only when better(old, new);
	// the etag changes when anything changed.
	PutRoomKeys(ctx context.Context, userID string, version int64, keys []RoomKey, better func(old, new *RoomKey) bool) (*BackupVersion, error)
	// RoomKeys lists keys of a version, optionally narrowed to a room and session.
	RoomKeys(ctx context.Context, userID string, version int64, roomID, sessionID string) ([]RoomKey, error)
	DeleteRoomKeys(ctx context.Context, userID string, version int64, roomID, sessionID string) (*BackupVersion, error)
}
