package event

import "errors"

// Sentinel errors. Functions wrap them with detail; callers test with
// errors.Is and map them to Matrix error codes.
var (
	// ErrBadJSON: the input is not JSON acceptable as canonical JSON
	// (maps to M_BAD_JSON; over federation the event is dropped).
	ErrBadJSON = errors.New("event: bad JSON")
	// ErrTooLarge: the event exceeds MaxPDUSize or a per-key size limit
	// (maps to M_TOO_LARGE).
	ErrTooLarge = errors.New("event: too large")
	// ErrBadEvent: the JSON is well formed but is not a valid PDU for the
	// room version (missing key, wrong type, bad value).
	ErrBadEvent = errors.New("event: malformed event")
	// ErrUnsupportedRoomVersion: no room version was given.
	ErrUnsupportedRoomVersion = errors.New("event: unsupported room version")
	// ErrBadSignature: a signature is missing, undecodable or wrong.
	ErrBadSignature = errors.New("event: bad signature")
	// ErrBadHash: the content hash does not match (the event may have
	// been redacted in transit).
	ErrBadHash = errors.New("event: content hash mismatch")
)

// detailError adds detail to one of the sentinel errors.
type detailError struct {
	base error
	msg  string
}

func (e *detailError) Error() string { return e.base.Error() + ": " + e.msg }
func (e *detailError) Unwrap() error { return e.base }

func errBadEvent(msg string) error   { return &detailError{ErrBadEvent, msg} }
func errTooLarge(msg string) error   { return &detailError{ErrTooLarge, msg} }
func errBadSig(msg string) error     { return &detailError{ErrBadSignature, msg} }
func errBadJSONMsg(msg string) error { return &detailError{ErrBadJSON, msg} }
