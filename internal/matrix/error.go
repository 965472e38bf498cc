// Package matrix holds the Matrix domain primitives every layer shares: the
// error type that carries an errcode and HTTP status, and identifier grammar
// (user IDs, room IDs, aliases, server names). It imports nothing of ours.
package matrix

import (
	"errors"
	"fmt"
	"net/http"
)

// Error codes from the Client-Server API, "Standard error response".
const (
	ErrForbidden             = "M_FORBIDDEN"
	ErrUnknownToken          = "M_UNKNOWN_TOKEN"
	ErrMissingToken          = "M_MISSING_TOKEN"
	ErrBadJSON               = "M_BAD_JSON"
	ErrNotJSON               = "M_NOT_JSON"
	ErrNotFound              = "M_NOT_FOUND"
	ErrLimitExceeded         = "M_LIMIT_EXCEEDED"
	ErrUnrecognized          = "M_UNRECOGNIZED"
	ErrUnknown               = "M_UNKNOWN"
	ErrUserInUse             = "M_USER_IN_USE"
	ErrInvalidUsername       = "M_INVALID_USERNAME"
	ErrRoomInUse             = "M_ROOM_IN_USE"
	ErrInvalidRoomState      = "M_INVALID_ROOM_STATE"
	ErrUnsupportedRoomVer    = "M_UNSUPPORTED_ROOM_VERSION"
	ErrIncompatibleRoomVer   = "M_INCOMPATIBLE_ROOM_VERSION"
	ErrUnableToAuthoriseJoin = "M_UNABLE_TO_AUTHORISE_JOIN"
	ErrBadState              = "M_BAD_STATE"
	ErrGuestAccessForbid     = "M_GUEST_ACCESS_FORBIDDEN"
	ErrMissingParam          = "M_MISSING_PARAM"
	ErrInvalidParam          = "M_INVALID_PARAM"
	ErrTooLarge              = "M_TOO_LARGE"
	ErrExclusive             = "M_EXCLUSIVE"
	ErrUserDeactivated       = "M_USER_DEACTIVATED"
	ErrThreepidInUse         = "M_THREEPID_IN_USE"
	ErrWeakPassword          = "M_WEAK_PASSWORD"
	ErrUnknownPos            = "M_UNKNOWN_POS"
	ErrWrongRoomKeysVer      = "M_WRONG_ROOM_KEYS_VERSION"
	ErrUnauthorized          = "M_UNAUTHORIZED"
	ErrNotYetUploaded        = "M_NOT_YET_UPLOADED"
	ErrCannotOverwrite       = "M_CANNOT_OVERWRITE_MEDIA"
	ErrBadAlias              = "M_BAD_ALIAS"
)

// Error is a failure a client may see: an errcode, a message and the HTTP
// status to answer with. Services return it; the HTTP edge writes it.
// Extra holds additional top-level keys (retry_after_ms, soft_logout, …).
type Error struct {
	Code   string
	Msg    string
	Status int
	Extra  map[string]any
}

func (e *Error) Error() string { return e.Code + ": " + e.Msg }

// With returns a copy of e carrying an extra response key.
func (e *Error) With(key string, value any) *Error {
	c := *e
	c.Extra = make(map[string]any, len(e.Extra)+1)
	for k, v := range e.Extra {
		c.Extra[k] = v
	}
	c.Extra[key] = value
	return &c
}

// Errorf builds an *Error.
func Errorf(status int, code, format string, args ...any) *Error {
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	return &Error{Code: code, Msg: msg, Status: status}
}

// Shorthands for the common cases.
func Forbidden(format string, args ...any) *Error {
	return Errorf(http.StatusForbidden, ErrForbidden, format, args...)
}
func NotFound(format string, args ...any) *Error {
	return Errorf(http.StatusNotFound, ErrNotFound, format, args...)
}
func BadJSON(format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, ErrBadJSON, format, args...)
}
func NotJSON(format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, ErrNotJSON, format, args...)
}
func MissingParam(format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, ErrMissingParam, format, args...)
}
func InvalidParam(format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, ErrInvalidParam, format, args...)
}
func TooLarge(format string, args ...any) *Error {
	return Errorf(http.StatusRequestEntityTooLarge, ErrTooLarge, format, args...)
}
func Unrecognized(format string, args ...any) *Error {
	return Errorf(http.StatusNotFound, ErrUnrecognized, format, args...)
}
func LimitExceeded(retryAfterMS int64) *Error {
	return Errorf(http.StatusTooManyRequests, ErrLimitExceeded, "Too many requests").With("retry_after_ms", retryAfterMS)
}

// AsError returns the *Error inside err, if any.
func AsError(err error) (*Error, bool) {
	var me *Error
	if errors.As(err, &me) {
		return me, true
	}
	return nil, false
}
