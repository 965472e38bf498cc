// Package syncfilter implements the filters of the Client-Server API
// ("Filtering"): the Filter, RoomFilter, RoomEventFilter and EventFilter
// types, their strict parsing and validation, and pure matching helpers used
// by /sync, /messages and /context. It does no I/O except through the lookup
// function FromQuery is given.
package syncfilter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"unicode/utf8"

	"conclave/internal/matrix"
	"conclave/internal/store"
)

// Limits on filter contents. The spec sets none; these bound the work a
// filter can cause (matching is linear in list sizes).
const (
	MaxListLen   = 1000 // entries in any list
	MaxStringLen = 255  // bytes in any list entry
	// DefaultLimit is the event limit when a filter gives none (as Synapse).
	DefaultLimit = 10
)

// EventFilter selects events by type and sender. A nil *EventFilter matches
// everything. Nil lists mean "no restriction"; an empty non-nil Types or
// Senders list matches nothing, as the spec says.
type EventFilter struct {
	Limit      *int
	Types      []string // may use * as a wildcard for any sequence of characters
	NotTypes   []string // takes priority over Types
	Senders    []string
	NotSenders []string // takes priority over Senders
}

// RoomEventFilter is an EventFilter that also selects by room and content.
type RoomEventFilter struct {
	EventFilter
	Rooms                     []string
	NotRooms                  []string // takes priority over Rooms
	ContainsURL               *bool
	LazyLoadMembers           bool
	IncludeRedundantMembers   bool
	UnreadThreadNotifications bool
}

// RoomFilter selects what /sync returns about rooms.
type RoomFilter struct {
	Rooms        []string
	NotRooms     []string
	IncludeLeave bool
	Timeline     *RoomEventFilter
	State        *RoomEventFilter
	Ephemeral    *RoomEventFilter
	AccountData  *RoomEventFilter
}

// Filter is a whole sync filter, as uploaded to POST /user/{userId}/filter.
type Filter struct {
	EventFields []string
	EventFormat string // "client" (default); "federation" is refused by Parse
	Presence    *EventFilter
	AccountData *EventFilter
	Room        *RoomFilter
}

// Parse parses and validates a filter: M_NOT_JSON if data is not JSON,
// M_BAD_JSON if it is not an object or a field has the wrong shape. Unknown
// keys are ignored, so clients that send newer or unstable fields still work.
func Parse(data []byte) (*Filter, error) {
	obj, err := object(data, "filter")
	if err != nil {
		return nil, err
	}
	f := &Filter{}
	if f.EventFields, err = stringList(obj, "event_fields", nil); err != nil {
		return nil, err
	}
	for _, s := range f.EventFields {
		if s == "" {
			return nil, matrix.BadJSON("event_fields entries must not be empty")
		}
	}
	if raw, ok := present(obj, "event_format"); ok {
		if err := json.Unmarshal(raw, &f.EventFormat); err != nil || (f.EventFormat != "client" && f.EventFormat != "federation") {
			return nil, matrix.BadJSON(`event_format must be "client" or "federation"`)
		}
		if f.EventFormat == "federation" {
			// Serving events in federation format is not implemented; a
			// filter that asked for it and got client events would break
			// the client quietly, so it is refused (upload and /sync alike).
			return nil, matrix.InvalidParam(`event_format "federation" is not supported by this server; use "client"`)
		}
	}
	if f.Presence, err = eventFilterField(obj, "presence"); err != nil {
		return nil, err
	}
	if f.AccountData, err = eventFilterField(obj, "account_data"); err != nil {
		return nil, err
	}
	if raw, ok := present(obj, "room"); ok {
		if f.Room, err = parseRoomFilter(raw); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// ParseRoomEventFilter parses the filter parameter of /messages and /context.
func ParseRoomEventFilter(data []byte) (*RoomEventFilter, error) {
	return parseRoomEventFilter(data, "filter")
}

// FromQuery resolves /sync's filter query parameter: "" is no filter, a value
// starting with "{" is an inline filter, anything else the ID of a filter
// userID uploaded, fetched with get. An unknown ID is 400 M_INVALID_PARAM
// (as Synapse; the spec does not say).
func FromQuery(ctx context.Context, param, userID string, get func(ctx context.Context, userID, filterID string) (json.RawMessage, error)) (*Filter, error) {
	if param == "" {
		return nil, nil
	}
	if param[0] == '{' {
		return Parse([]byte(param))
	}
	raw, err := get(ctx, userID, param)
	if errors.Is(err, store.ErrNotFound) {
		return nil, matrix.InvalidParam("No filter with ID %q", param)
	}
	if err != nil {
		return nil, err
	}
	return Parse(raw)
}

func parseRoomFilter(data []byte) (*RoomFilter, error) {
	obj, err := object(data, "room")
	if err != nil {
		return nil, err
	}
	rf := &RoomFilter{}
	if rf.Rooms, err = stringList(obj, "rooms", matrix.ValidRoomID); err != nil {
		return nil, err
	}
	if rf.NotRooms, err = stringList(obj, "not_rooms", matrix.ValidRoomID); err != nil {
		return nil, err
	}
	if rf.IncludeLeave, err = boolField(obj, "include_leave"); err != nil {
		return nil, err
	}
	for _, sub := range []struct {
		key string
		dst **RoomEventFilter
	}{{"timeline", &rf.Timeline}, {"state", &rf.State}, {"ephemeral", &rf.Ephemeral}, {"account_data", &rf.AccountData}} {
		if raw, ok := present(obj, sub.key); ok {
			if *sub.dst, err = parseRoomEventFilter(raw, "room."+sub.key); err != nil {
				return nil, err
			}
		}
	}
	return rf, nil
}

func parseRoomEventFilter(data []byte, name string) (*RoomEventFilter, error) {
	obj, err := object(data, name)
	if err != nil {
		return nil, err
	}
	f := &RoomEventFilter{}
	if err := fillEventFilter(obj, &f.EventFilter); err != nil {
		return nil, err
	}
	if f.Rooms, err = stringList(obj, "rooms", matrix.ValidRoomID); err != nil {
		return nil, err
	}
	if f.NotRooms, err = stringList(obj, "not_rooms", matrix.ValidRoomID); err != nil {
		return nil, err
	}
	if raw, ok := present(obj, "contains_url"); ok {
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return nil, matrix.BadJSON("contains_url must be a boolean")
		}
		f.ContainsURL = &b
	}
	for _, bf := range []struct {
		key string
		dst *bool
	}{{"lazy_load_members", &f.LazyLoadMembers}, {"include_redundant_members", &f.IncludeRedundantMembers}, {"unread_thread_notifications", &f.UnreadThreadNotifications}} {
		if *bf.dst, err = boolField(obj, bf.key); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func eventFilterField(obj map[string]json.RawMessage, key string) (*EventFilter, error) {
	raw, ok := present(obj, key)
	if !ok {
		return nil, nil
	}
	sub, err := object(raw, key)
	if err != nil {
		return nil, err
	}
	f := &EventFilter{}
	if err := fillEventFilter(sub, f); err != nil {
		return nil, err
	}
	return f, nil
}

func fillEventFilter(obj map[string]json.RawMessage, f *EventFilter) error {
	var err error
	if raw, ok := present(obj, "limit"); ok {
		// The spec types limit as an integer; Synapse accepts any number.
		// Integral values (10 or 10.0) in [0, 2^31) are accepted.
		var n float64
		if err := json.Unmarshal(raw, &n); err != nil || n != math.Trunc(n) || n < 0 || n > math.MaxInt32 {
			return matrix.BadJSON("limit must be a non-negative integer")
		}
		l := int(n)
		f.Limit = &l
	}
	if f.Types, err = stringList(obj, "types", nil); err != nil {
		return err
	}
	if f.NotTypes, err = stringList(obj, "not_types", nil); err != nil {
		return err
	}
	if f.Senders, err = stringList(obj, "senders", matrix.ValidUserID); err != nil {
		return err
	}
	if f.NotSenders, err = stringList(obj, "not_senders", matrix.ValidUserID); err != nil {
		return err
	}
	return nil
}

// object decodes a JSON object into its raw fields.
func object(data []byte, name string) (map[string]json.RawMessage, error) {
	data = bytes.TrimSpace(data)
	if !json.Valid(data) || !utf8.Valid(data) {
		return nil, matrix.NotJSON("Filter is not valid JSON")
	}
	if len(data) == 0 || data[0] != '{' {
		return nil, matrix.BadJSON("%s must be a JSON object", name)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return nil, matrix.BadJSON("%s must be a JSON object", name)
	}
	return obj, nil
}

// present returns a field's raw value unless it is absent or null (null is
// treated as absent).
func present(obj map[string]json.RawMessage, key string) (json.RawMessage, bool) {
	raw, ok := obj[key]
	if !ok || string(raw) == "null" {
		return nil, false
	}
	return raw, true
}

func boolField(obj map[string]json.RawMessage, key string) (bool, error) {
	raw, ok := present(obj, key)
	if !ok {
		return false, nil
	}
	var b bool
	if err := json.Unmarshal(raw, &b); err != nil {
		return false, matrix.BadJSON("%s must be a boolean", key)
	}
	return b, nil
}

// stringList decodes an array of strings, checking its size and, if valid is
// given, each entry. An absent (or null) list is nil; [] is a non-nil empty list.
func stringList(obj map[string]json.RawMessage, key string, valid func(string) bool) ([]string, error) {
	raw, ok := present(obj, key)
	if !ok {
		return nil, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, matrix.BadJSON("%s must be an array of strings", key)
	}
	if list == nil {
		list = []string{}
	}
	if len(list) > MaxListLen {
		return nil, matrix.BadJSON("%s has more than %d entries", key, MaxListLen)
	}
	for _, s := range list {
		if len(s) > MaxStringLen {
			return nil, matrix.BadJSON("%s entries must be at most %d bytes", key, MaxStringLen)
		}
		if valid != nil && !valid(s) {
			return nil, matrix.BadJSON("%s contains an invalid ID: %q", key, s)
		}
	}
	return list, nil
}
