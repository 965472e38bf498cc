package keys

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"conclave/internal/matrix"
	"conclave/internal/store"
)

// Server-side key backups (spec: "Server-side key backups").

// BackupVersionInfo is the answer of GET /room_keys/version[/{version}].
type BackupVersionInfo struct {
	Algorithm string          `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Count     int64           `json:"count"`
	Etag      string          `json:"etag"`
	Version   string          `json:"version"`
}

// BackupCounts is the answer of room key writes and deletions.
type BackupCounts struct {
	Etag  string `json:"etag"`
	Count int64  `json:"count"`
}

// BackupVersionRequest is the body of POST and PUT /room_keys/version.
type BackupVersionRequest struct {
	Algorithm *string         `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Version   *string         `json:"version"`
}

func (r *BackupVersionRequest) check() error {
	if r.Algorithm == nil || *r.Algorithm == "" {
		return matrix.MissingParam("algorithm is required")
	}
	if len(r.AuthData) == 0 || string(r.AuthData) == "null" {
		return matrix.MissingParam("auth_data is required")
	}
	if r.AuthData[0] != '{' {
		return matrix.BadJSON("auth_data must be an object")
	}
	return nil
}

func info(b *store.BackupVersion) *BackupVersionInfo {
	return &BackupVersionInfo{Algorithm: b.Algorithm, AuthData: b.AuthData, Count: b.Count, Etag: strconv.FormatInt(b.Etag, 10), Version: strconv.FormatInt(b.Version, 10)}
}

// parseVersion reads a version string; anything that is not a version we
// could have issued does not exist.
func parseVersion(v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 || strconv.FormatInt(n, 10) != v {
		return 0, matrix.NotFound("Unknown backup version")
	}
	return n, nil
}

func noBackup(err error, what string) error {
	if errors.Is(err, store.ErrNotFound) {
		return matrix.NotFound("%s", what)
	}
	return err
}

// CreateBackup makes a new backup version, which becomes the current one.
func (s *Service) CreateBackup(ctx context.Context, userID string, req *BackupVersionRequest) (string, error) {
	if err := req.check(); err != nil {
		return "", err
	}
	auth, err := Canonical(req.AuthData)
	if err != nil {
		return "", matrix.BadJSON("auth_data: %v", err)
	}
	v, err := s.store.CreateBackupVersion(ctx, userID, *req.Algorithm, auth)
	if err != nil {
		return "", err
	}
	return strconv.FormatInt(v, 10), nil
}

// GetBackup returns a version ("" for the current one).
func (s *Service) GetBackup(ctx context.Context, userID, version string) (*BackupVersionInfo, error) {
	var v int64
	if version != "" {
		var err error
		if v, err = parseVersion(version); err != nil {
			return nil, err
		}
	}
	b, err := s.store.BackupVersion(ctx, userID, v)
	if err != nil {
		return nil, noBackup(err, "No current backup version")
	}
	return info(b), nil
}

// UpdateBackup replaces a version's auth_data; the algorithm cannot change.
func (s *Service) UpdateBackup(ctx context.Context, userID, version string, req *BackupVersionRequest) error {
	v, err := parseVersion(version)
	if err != nil {
		return err
	}
	if err := req.check(); err != nil {
		return err
	}
	if req.Version != nil && *req.Version != version {
		return matrix.InvalidParam("version in the body does not match the version in the path")
	}
	b, err := s.store.BackupVersion(ctx, userID, v)
	if err != nil {
		return noBackup(err, "Unknown backup version")
	}
	if b.Algorithm != *req.Algorithm {
		return matrix.InvalidParam("The algorithm of a backup version cannot change")
	}
	auth, err := Canonical(req.AuthData)
	if err != nil {
		return matrix.BadJSON("auth_data: %v", err)
	}
	return noBackup(s.store.UpdateBackupVersion(ctx, userID, v, auth), "Unknown backup version")
}

// DeleteBackup deletes a version and its keys.
func (s *Service) DeleteBackup(ctx context.Context, userID, version string) error {
	v, err := parseVersion(version)
	if err != nil {
		return err
	}
	return noBackup(s.store.DeleteBackupVersion(ctx, userID, v), "Unknown backup version")
}

// KeyBackupData is one session's backup as clients send and receive it.
type KeyBackupData struct {
	FirstMessageIndex *int64          `json:"first_message_index"`
	ForwardedCount    *int64          `json:"forwarded_count"`
	IsVerified        *bool           `json:"is_verified"`
	SessionData       json.RawMessage `json:"session_data"`
}

// SessionsBody is {"sessions": {sessionID: KeyBackupData}}.
type SessionsBody struct {
	Sessions map[string]json.RawMessage `json:"sessions"`
}

// RoomsBody is {"rooms": {roomID: SessionsBody}}.
type RoomsBody struct {
	Rooms map[string]json.RawMessage `json:"rooms"`
}

// MaxBackupKeys bounds the sessions in one room key upload.
const MaxBackupKeys = 10000

// ParseSession validates one session's data.
func ParseSession(roomID, sessionID string, raw json.RawMessage) (*store.RoomKey, error) {
	var d KeyBackupData
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &d) != nil {
		return nil, matrix.BadJSON("Key backup data for %s must be an object with first_message_index, forwarded_count, is_verified and session_data", sessionID)
	}
	if d.FirstMessageIndex == nil || d.ForwardedCount == nil || d.IsVerified == nil || len(d.SessionData) == 0 {
		return nil, matrix.BadJSON("Key backup data for %s needs first_message_index, forwarded_count, is_verified and session_data", sessionID)
	}
	if d.SessionData[0] != '{' {
		return nil, matrix.BadJSON("session_data of %s must be an object", sessionID)
	}
	if *d.FirstMessageIndex < 0 || *d.ForwardedCount < 0 {
		return nil, matrix.BadJSON("first_message_index and forwarded_count must not be negative")
	}
	if roomID == "" || sessionID == "" || len(roomID) > 255 || len(sessionID) > 255 {
		return nil, matrix.InvalidParam("Invalid room or session ID")
	}
	data, err := Canonical(d.SessionData)
	if err != nil {
		return nil, matrix.BadJSON("session_data: %v", err)
	}
	return &store.RoomKey{RoomID: roomID, SessionID: sessionID, FirstMessageIndex: *d.FirstMessageIndex, ForwardedCount: *d.ForwardedCount, IsVerified: *d.IsVerified, SessionData: data}, nil
}

// BetterRoomKey is the spec's rule for replacing a backed-up session: a
// verified key beats an unverified one; then the lower first_message_index
// wins; then the lower forwarded_count. An equal key does not replace the
// stored one (Synapse's rule).
func BetterRoomKey(old, new *store.RoomKey) bool {
	if old.IsVerified != new.IsVerified {
		return new.IsVerified
	}
	if old.FirstMessageIndex != new.FirstMessageIndex {
		return new.FirstMessageIndex < old.FirstMessageIndex
	}
	return new.ForwardedCount < old.ForwardedCount
}

// PutRoomKeys stores keys in the given version, which must be the current one.
func (s *Service) PutRoomKeys(ctx context.Context, userID, version string, keys []store.RoomKey) (*BackupCounts, error) {
	if version == "" {
		return nil, matrix.MissingParam("The version query parameter is required")
	}
	if len(keys) > MaxBackupKeys {
		return nil, matrix.InvalidParam("At most %d sessions can be uploaded at once", MaxBackupKeys)
	}
	v, err := strconv.ParseInt(version, 10, 64)
	if err != nil || strconv.FormatInt(v, 10) != version {
		v = -1 // cannot be current: answered below as a wrong version
	}
	b, err := s.store.PutRoomKeys(ctx, userID, v, keys, BetterRoomKey)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, matrix.NotFound("Unknown backup version")
	case errors.Is(err, store.ErrWrongBackupVersion):
		cur, err := s.store.BackupVersion(ctx, userID, 0)
		if err != nil {
			return nil, noBackup(err, "Unknown backup version")
		}
		return nil, matrix.Errorf(http.StatusForbidden, matrix.ErrWrongRoomKeysVer, "Wrong backup version").With("current_version", strconv.FormatInt(cur.Version, 10))
	case err != nil:
		return nil, err
	}
	return &BackupCounts{Etag: strconv.FormatInt(b.Etag, 10), Count: b.Count}, nil
}

// RoomKeys reads keys of a version, narrowed to a room and session if given.
func (s *Service) RoomKeys(ctx context.Context, userID, version, roomID, sessionID string) ([]store.RoomKey, error) {
	if version == "" {
		return nil, matrix.MissingParam("The version query parameter is required")
	}
	v, err := parseVersion(version)
	if err != nil {
		return nil, err
	}
	keys, err := s.store.RoomKeys(ctx, userID, v, roomID, sessionID)
	if err != nil {
		return nil, noBackup(err, "Unknown backup version")
	}
	return keys, nil
}

// DeleteRoomKeys deletes keys of a version, narrowed to a room and session if given.
func (s *Service) DeleteRoomKeys(ctx context.Context, userID, version, roomID, sessionID string) (*BackupCounts, error) {
	if version == "" {
		return nil, matrix.MissingParam("The version query parameter is required")
	}
	v, err := parseVersion(version)
	if err != nil {
		return nil, err
	}
	b, err := s.store.DeleteRoomKeys(ctx, userID, v, roomID, sessionID)
	if err != nil {
		return nil, noBackup(err, "Unknown backup version")
	}
	return &BackupCounts{Etag: strconv.FormatInt(b.Etag, 10), Count: b.Count}, nil
}

// BackupDataJSON renders a stored key the way clients read it.
func BackupDataJSON(k *store.RoomKey) map[string]any {
	return map[string]any{
		"first_message_index": k.FirstMessageIndex,
		"forwarded_count":     k.ForwardedCount,
		"is_verified":         k.IsVerified,
		"session_data":        k.SessionData,
	}
}
