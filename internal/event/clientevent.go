package event

import "strconv"

// AppendClientEvent appends the Client-Server API "ClientEvent" form of e:
// content, event_id, origin_server_ts, room_id, sender, state_key (state
// events only), type and, when non-empty, unsigned. An m.room.redaction
// also gets a top-level "redacts" in every room version: clients written
// before room version 11 read it there, and Synapse emits it for them too.
//
// It writes straight from the parsed fields (Content aliases the canonical
// Raw), without decoding the event: this is the /sync hot path. unsigned
// must be a JSON object or empty; it is copied verbatim.
func AppendClientEvent(dst []byte, e *PDU, unsigned []byte) []byte {
	return appendClientEvent(dst, e, unsigned, true)
}

// AppendClientEventWithoutRoomID is AppendClientEvent without room_id, the
// "ClientEventWithoutRoomID" of /sync room timelines and state.
func AppendClientEventWithoutRoomID(dst []byte, e *PDU, unsigned []byte) []byte {
	return appendClientEvent(dst, e, unsigned, false)
}

func appendClientEvent(dst []byte, e *PDU, unsigned []byte, withRoomID bool) []byte {
	dst = append(dst, `{"content":`...)
	if len(e.Content) == 0 {
		dst = append(dst, '{', '}')
	} else {
		dst = append(dst, e.Content...)
	}
	dst = append(dst, `,"event_id":`...)
	dst = appendJSONString(dst, e.EventID)
	dst = append(dst, `,"origin_server_ts":`...)
	dst = strconv.AppendInt(dst, e.OriginServerTS, 10)
	if e.Redacts != "" && e.Type == "m.room.redaction" {
		dst = append(dst, `,"redacts":`...)
		dst = appendJSONString(dst, e.Redacts)
	}
	if withRoomID {
		dst = append(dst, `,"room_id":`...)
		dst = appendJSONString(dst, RoomIDForCreate(e))
	}
	dst = append(dst, `,"sender":`...)
	dst = appendJSONString(dst, e.Sender)
	if e.StateKey != nil {
		dst = append(dst, `,"state_key":`...)
		dst = appendJSONString(dst, *e.StateKey)
	}
	dst = append(dst, `,"type":`...)
	dst = appendJSONString(dst, e.Type)
	if !emptyObject(unsigned) {
		dst = append(dst, `,"unsigned":`...)
		dst = append(dst, unsigned...)
	}
	return append(dst, '}')
}

// emptyObject reports whether b is absent, null or {} (ignoring whitespace).
func emptyObject(b []byte) bool {
	var sig [4]byte
	k := 0
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		if k == len(sig) {
			return false
		}
		sig[k] = c
		k++
	}
	s := string(sig[:k])
	return k == 0 || s == "{}" || s == "null"
}
