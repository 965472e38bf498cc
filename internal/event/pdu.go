// Package event owns the Matrix PDU: its JSON format per room version,
// canonical JSON, content and reference hashes, event IDs, ed25519 signatures
// and the redaction algorithm. It is pure: no I/O, no clock, no database.
package event

import "encoding/json"

// MaxPDUSize is the largest PDU the spec allows, in bytes of canonical JSON
// (Server-Server API, "Size limits"). Clients get M_TOO_LARGE beyond it.
const MaxPDUSize = 65536

// PDU is a persistent data unit (an event). The exported fields are parsed
// from Raw and must not be changed: Raw is the exact signed form (without
// event_id from room version 3 on), and EventID is derived from it (read
// from it in room versions 1 and 2).
type PDU struct {
	EventID        string          `json:"-"`
	RoomID         string          `json:"room_id,omitempty"` // empty only for a v12 m.room.create
	Sender         string          `json:"sender"`
	Type           string          `json:"type"`
	StateKey       *string         `json:"state_key,omitempty"`
	Content        json.RawMessage `json:"content"`
	PrevEvents     []string        `json:"prev_events"`
	AuthEvents     []string        `json:"auth_events"`
	Depth          int64           `json:"depth"`
	OriginServerTS int64           `json:"origin_server_ts"`
	// Redacts is the target of an m.room.redaction: the top-level key before
	// room version 11, content.redacts from 11 on (filled from either).
	Redacts string `json:"-"`

	Version *RoomVersion `json:"-"`
	// Raw is the full event as signed and stored (federation format):
	// canonical JSON, without "unsigned" (and without "event_id" from room
	// version 3 on).
	Raw []byte `json:"-"`
	// Unsigned is the "unsigned" object received with the event, if any.
	// It is covered by neither hashes nor signatures: untrusted.
	Unsigned json.RawMessage `json:"-"`
}

// IsState reports whether the event is a state event.
func (e *PDU) IsState() bool { return e.StateKey != nil }

// StateKeyIs reports whether the event is a state event with the given key.
func (e *PDU) StateKeyIs(k string) bool { return e.StateKey != nil && *e.StateKey == k }
