package fedsender

import (
	"encoding/json"
	"errors"

	"conclave/internal/store"
)

// Item is a PDU or an EDU to send (PDU and EDU build them).
type Item struct{ it store.FedItem }

// PDU is an event to send: its ID and its JSON as stored (signed, in the
// room version's format).
func PDU(eventID string, pdu []byte) Item {
	return Item{store.FedItem{EventID: eventID, JSON: pdu}}
}

// EDU is an ephemeral data unit: its type and content.
//
// What may be coalesced (a queued EDU replaced by a newer one to the same
// destination, which goes to the end of the queue):
//   - m.typing: per room and user (the newest state is the only one that
//     matters);
//   - m.receipt carrying one receipt (one room, one receipt type, one user,
//     one thread): per room, type, user and thread (a newer receipt moves
//     the marker on);
//   - m.presence carrying one user's presence: per user.
//
// Everything else keeps every EDU in order: device-list and signing-key
// updates form chains (prev_id), and m.direct_to_device messages are never
// coalesced and never dropped by the queue cap.
func EDU(eduType string, content []byte) Item {
	return Item{store.FedItem{EDUType: eduType, JSON: content, CoalesceKey: coalesceKey(eduType, content), Keep: eduType == "m.direct_to_device"}}
}

var errBadItem = errors.New("fedsender: a PDU needs an event ID and JSON, an EDU a type and content")

func (i Item) valid() bool {
	if len(i.it.JSON) == 0 {
		return false
	}
	return (i.it.EventID != "") != (i.it.EDUType != "")
}

// coalesceKey is the key under which an EDU replaces an older queued one,
// or "" for an EDU that must never be replaced (see EDU).
func coalesceKey(eduType string, content []byte) string {
	key := func(parts ...string) string {
		b, _ := json.Marshal(parts) // unambiguous whatever the parts hold
		return string(b)
	}
	switch eduType {
	case "m.typing":
		var c struct {
			RoomID string `json:"room_id"`
			UserID string `json:"user_id"`
		}
		if json.Unmarshal(content, &c) != nil || c.RoomID == "" || c.UserID == "" {
			return ""
		}
		return key(eduType, c.RoomID, c.UserID)
	case "m.receipt":
		// {room: {receipt type: {user: {"event_ids": […], "data": {…}}}}}
		var c map[string]map[string]map[string]struct {
			Data struct {
				ThreadID string `json:"thread_id"`
			} `json:"data"`
		}
		if json.Unmarshal(content, &c) != nil || len(c) != 1 {
			return ""
		}
		for room, types := range c {
			if len(types) != 1 {
				return ""
			}
			for typ, users := range types {
				if len(users) != 1 {
					return ""
				}
				for user, r := range users {
					return key(eduType, room, typ, user, r.Data.ThreadID)
				}
			}
		}
	case "m.presence":
		var c struct {
			Push []struct {
				UserID string `json:"user_id"`
			} `json:"push"`
		}
		if json.Unmarshal(content, &c) != nil || len(c.Push) != 1 || c.Push[0].UserID == "" {
			return ""
		}
		return key(eduType, c.Push[0].UserID)
	}
	return ""
}
