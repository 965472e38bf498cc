// Package accountdata owns per-user global and per-room account data
// (spec: Client-Server API, "Client Config").
package accountdata

import (
	"conclave/internal/changes"
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"conclave/internal/matrix"
	"conclave/internal/store"
)

const (
	// MaxContentBytes bounds one account data object.
	MaxContentBytes = 64 << 10
	// MaxTypeLen bounds the type string.
	MaxTypeLen = 255
)

// Server-managed types that clients cannot set through the account data API.
const (
	TypeFullyRead = "m.fully_read" // room account data, set through read markers
	TypePushRules = "m.push_rules" // global account data, set through /pushrules
)

// Service is the account data service.
type Service struct {
	store store.AccountData
	// Notify, if set, is called after a change with the users whose /sync
	// must wake up.
	Notify func(userIDs ...string)
	// Changes, if set, has every write marked before it commits.
	Changes *changes.Tracker
}

// New returns the service.
func New(st store.AccountData) *Service { return &Service{store: st} }

// Check validates a request's parameters: the caller may only touch their
// own account data, and roomID ("" for global data) must be a room ID.
func Check(requester, target, roomID, typ string) error {
	if !matrix.ValidUserID(target) {
		return matrix.InvalidParam("Invalid user ID")
	}
	if requester != target {
		return matrix.Forbidden("Cannot access account data of other users")
	}
	if roomID != "" && !matrix.ValidRoomID(roomID) {
		return matrix.InvalidParam("Invalid room ID")
	}
	if typ == "" || len(typ) > MaxTypeLen {
		return matrix.InvalidParam("Account data type must be 1 to %d bytes", MaxTypeLen)
	}
	return nil
}

// Put stores content (a JSON object) as the client's account data. The spec
// answers 405 M_BAD_JSON for types the server controls (m.fully_read in a
// room, m.push_rules globally).
func (s *Service) Put(ctx context.Context, requester, target, roomID, typ string, content json.RawMessage) error {
	if err := Check(requester, target, roomID, typ); err != nil {
		return err
	}
	if (roomID != "" && typ == TypeFullyRead) || (roomID == "" && typ == TypePushRules) {
		return matrix.Errorf(http.StatusMethodNotAllowed, matrix.ErrBadJSON, "Cannot set %s through this API", typ)
	}
	return s.PutInternal(ctx, target, roomID, typ, content)
}

// PutInternal stores account data without the client API's restrictions:
// for server-managed types (read markers, push rules).
func (s *Service) PutInternal(ctx context.Context, userID, roomID, typ string, content json.RawMessage) error {
	if len(content) > MaxContentBytes {
		return matrix.TooLarge("Account data is larger than %d bytes", MaxContentBytes)
	}
	w := s.Changes.Begin(changes.Key{Kind: changes.AccountData, Subject: userID})
	pos, err := s.store.PutAccountData(w.Context(ctx), userID, roomID, typ, content)
	w.Done(pos)
	if err != nil {
		return err
	}
	if s.Notify != nil {
		s.Notify(userID)
	}
	return nil
}

// Get returns the account data of the requester: 404 M_NOT_FOUND if none.
func (s *Service) Get(ctx context.Context, requester, target, roomID, typ string) (json.RawMessage, error) {
	if err := Check(requester, target, roomID, typ); err != nil {
		return nil, err
	}
	c, err := s.store.GetAccountData(ctx, target, roomID, typ)
	if errors.Is(err, store.ErrNotFound) {
		return nil, matrix.NotFound("No account data has been provided for this user with the given type")
	}
	return c, err
}

// Since lists the user's account data changed after pos, for /sync.
func (s *Service) Since(ctx context.Context, userID string, pos int64) ([]store.AccountDataItem, error) {
	return s.store.AccountDataSince(ctx, userID, pos)
}
