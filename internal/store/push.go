package store

import (
	"context"
	"encoding/json"
	"errors"
)

// Pusher is one push gateway registration (spec: "Push Notifications",
// POST /pushers/set). It belongs to the device that created it and goes
// with it (logout, device deletion, password change with logout_devices).
type Pusher struct {
	UserID            string
	DeviceID          string
	AppID             string
	PushKey           string
	Kind              string
	AppDisplayName    string
	DeviceDisplayName string
	ProfileTag        string
	Lang              string
	Data              json.RawMessage
	CreatedTS         int64
}

// ErrTooManyPushers is returned by SetPusher when the user has reached the limit.
var ErrTooManyPushers = errors.New("store: too many pushers")

// Pushers keeps pushers.
type Pushers interface {
	// SetPusher creates or replaces the pusher (UserID, AppID, PushKey). With
	// replaceOthers, pushers of other users with the same app ID and pushkey
	// are removed in the same transaction. A new pusher beyond max for the
	// user fails with ErrTooManyPushers.
	SetPusher(ctx context.Context, p *Pusher, replaceOthers bool, max int) error
	// DeletePusher removes one pusher of the user (no error if absent).
	DeletePusher(ctx context.Context, userID, appID, pushKey string) error
	// PushersOf lists the user's pushers, oldest first.
	PushersOf(ctx context.Context, userID string) ([]Pusher, error)
}
