package event

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"strconv"
	"unicode/utf8"
)

// Size limits of the Client-Server API "Size limits" section and of the PDU
// schemas (server-server definitions, room versions 3+).
const (
	// MaxIDLength bounds sender, room_id, type, state_key and event IDs,
	// in bytes.
	MaxIDLength = 255
	// MaxPrevEvents: prev_events "must contain less than or equal to 20 events".
	MaxPrevEvents = 20
	// MaxAuthEvents: auth_events "must contain less than or equal to 10 events".
	MaxAuthEvents = 10
	// maxPDUInput bounds the raw bytes ParsePDU looks at before
	// canonicalising: generous for insignificant whitespace, small enough
	// that oversized input is refused before any real work.
	maxPDUInput = 4 * MaxPDUSize
)

// ParsePDU parses an event received in the federation format of room
// version rv and checks its shape: the canonical form of the
// complete event is at most MaxPDUSize bytes; sender, room_id, type and
// state_key are strings of at most MaxIDLength bytes; content, hashes and
// signatures are objects; prev_events and auth_events are arrays of event ID
// strings within their bounds; depth and origin_server_ts are integers
// (depth ≥ 0); v6+ events are strict canonical JSON. It does not check
// hashes, signatures or authorisation.
//
// A top-level "event_id" is ignored from room version 3 on (derived from the
// reference hash); in the event format of room versions 1 and 2 it is part
// of the event (signed, kept in Raw) and prev_events and auth_events are
// [event ID, hashes] pairs. "unsigned" is moved to PDU.Unsigned and left out
// of Raw.
func ParsePDU(rv *RoomVersion, data []byte) (*PDU, error) {
	if rv == nil {
		return nil, ErrUnsupportedRoomVersion
	}
	if len(data) > maxPDUInput {
		return nil, errTooLarge("event larger than " + strconv.Itoa(MaxPDUSize) + " bytes")
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	c, err := AppendCanonicalJSON((*bp)[:0], data, rv.StrictCanonicalJSON)
	*bp = c
	if err != nil {
		return nil, err
	}
	if len(c) > MaxPDUSize {
		return nil, errTooLarge("event larger than " + strconv.Itoa(MaxPDUSize) + " bytes")
	}
	if c[0] != '{' {
		return nil, errBadEvent("an event must be a JSON object")
	}
	e := &PDU{Version: rv}
	if u, ok := getMember(c, "unsigned"); ok {
		if u[0] != '{' {
			return nil, errBadEvent("unsigned is not an object")
		}
		e.Unsigned = bytes.Clone(u)
	}
	if rv.EventIDFormat == 1 {
		e.Raw = appendWithout(make([]byte, 0, len(c)), c, "unsigned")
	} else {
		e.Raw = appendWithout(make([]byte, 0, len(c)), c, "event_id", "unsigned")
	}
	if err := e.fill(); err != nil {
		return nil, err
	}
	return e, nil
}

// fill sets the fields of e from e.Raw (canonical, no unsigned), checking
// the PDU shape for e.Version, and computes EventID if it is empty.
func (e *PDU) fill() error {
	rv := e.Version
	if rv == nil {
		return ErrUnsupportedRoomVersion
	}
	listOf := stringArray
	if rv.EventIDFormat == 1 {
		listOf = pairArray
	}
	var seen uint16
	const (
		hasType = 1 << iota
		hasSender
		hasRoomID
		hasContent
		hasDepth
		hasTS
		hasPrev
		hasAuth
		hasHashes
		hasSigs
	)
	it := newObjIter(e.Raw)
	for {
		k, v, ok := it.next()
		if !ok {
			break
		}
		var err error
		switch string(k) {
		case "type":
			seen |= hasType
			e.Type, err = idString(v, "type")
		case "sender":
			seen |= hasSender
			if e.Sender, err = idString(v, "sender"); err == nil && !validUserIDShape(e.Sender) {
				err = errBadEvent("sender is not a user ID")
			}
		case "room_id":
			seen |= hasRoomID
			if e.RoomID, err = idString(v, "room_id"); err == nil && (e.RoomID == "" || e.RoomID[0] != '!') {
				err = errBadEvent("room_id is not a room ID")
			}
		case "state_key":
			var sk string
			sk, err = stateKeyString(v)
			e.StateKey = &sk
		case "content":
			seen |= hasContent
			if v[0] != '{' {
				err = errBadEvent("content is not an object")
			}
			e.Content = v[:len(v):len(v)]
		case "depth":
			seen |= hasDepth
			if e.Depth, err = integer(v, "depth"); err == nil && e.Depth < 0 {
				err = errBadEvent("depth is negative")
			}
		case "origin_server_ts":
			seen |= hasTS
			e.OriginServerTS, err = integer(v, "origin_server_ts")
		case "event_id":
			if rv.EventIDFormat == 1 {
				if e.EventID, err = idString(v, "event_id"); err == nil && !validV1EventID(e.EventID) {
					err = errBadEvent("event_id is not an event ID")
				}
			}
		case "prev_events":
			seen |= hasPrev
			e.PrevEvents, err = listOf(v, MaxPrevEvents, MaxIDLength)
		case "auth_events":
			seen |= hasAuth
			e.AuthEvents, err = listOf(v, MaxAuthEvents, MaxIDLength)
		case "hashes":
			seen |= hasHashes
			err = checkHashesShape(v)
		case "signatures":
			seen |= hasSigs
			err = checkSignaturesShape(v)
		case "redacts":
			if !rv.RedactsInContent {
				e.Redacts, err = idString(v, "redacts")
			}
		}
		if err != nil {
			return err
		}
	}
	const required = hasType | hasSender | hasContent | hasDepth | hasTS | hasPrev | hasAuth | hasHashes | hasSigs
	if seen&required != required {
		return errBadEvent("missing one of the required keys type, sender, content, depth, origin_server_ts, prev_events, auth_events, hashes, signatures")
	}
	if rv.RoomIDFromCreateEvent && e.Type == "m.room.create" {
		if seen&hasRoomID != 0 {
			return errBadEvent("m.room.create of this room version must not have a room_id")
		}
	} else if seen&hasRoomID == 0 {
		return errBadEvent("missing room_id")
	}
	if e.Type == "m.room.redaction" && rv.RedactsInContent {
		if v, ok := getMember(e.Content, "redacts"); ok {
			var err error
			if e.Redacts, err = idString(v, "content.redacts"); err != nil {
				return err
			}
		}
	}
	if e.EventID == "" && rv.EventIDFormat == 1 {
		return errBadEvent("missing event_id")
	}
	if e.EventID == "" {
		h, err := referenceHash(rv, e.Raw)
		if err != nil {
			return err
		}
		e.EventID = eventIDFromHash(rv, h)
	}
	return nil
}

func idString(v []byte, name string) (string, error) {
	s, ok := stringValue(v)
	if !ok {
		return "", errBadEvent(name + " is not a string")
	}
	if len(s) > MaxIDLength {
		return "", errTooLarge(name + " longer than 255 bytes")
	}
	return s, nil
}

// stateKeyString reads a received event's state_key. The spec's size
// limits (Client-Server API, "Size limits") say 255 bytes; Synapse counts
// 255 code points, and rooms hold events other servers accepted that way
// (Complement's TestOutboundFederationEventSizeGetMissingEvents: 70 emoji,
// 280 bytes). Refusing them would break those rooms here, so a received
// state_key is held to 255 code points; Conclave's own events keep the
// stricter byte limit (Proto.check).
func stateKeyString(v []byte) (string, error) {
	s, ok := stringValue(v)
	if !ok {
		return "", errBadEvent("state_key is not a string")
	}
	if len(s) > MaxIDLength && utf8.RuneCountInString(s) > MaxIDLength {
		return "", errTooLarge("state_key longer than 255 code points")
	}
	return s, nil
}

func integer(v []byte, name string) (int64, error) {
	n, ok := intValue(v)
	if !ok {
		return 0, errBadEvent(name + " is not a 64-bit integer")
	}
	return n, nil
}

// validV1EventID is the shape of an event ID of room versions 1 and 2:
// "$opaque:server" (Appendix, "Event IDs", the historical format).
func validV1EventID(s string) bool {
	return len(s) >= 4 && s[0] == '$' && bytes.IndexByte([]byte(s[2:]), ':') >= 0 && s[len(s)-1] != ':'
}

// EventIDServer returns the server of an event ID of the historical format
// ("$opaque:server"), "" for any other.
func EventIDServer(id string) string {
	if !validV1EventID(id) {
		return ""
	}
	return id[2+bytes.IndexByte([]byte(id[2:]), ':')+1:]
}

// validUserIDShape is a cheap structural check ("@localpart:server"); the
// full grammar, with its historical exceptions, belongs to the caller.
func validUserIDShape(s string) bool {
	return len(s) >= 3 && s[0] == '@' && bytes.IndexByte([]byte(s[1:]), ':') > 0
}

func checkHashesShape(v []byte) error {
	if v[0] != '{' {
		return errBadEvent("hashes is not an object")
	}
	h, ok := getMember(v, "sha256")
	if !ok || h[0] != '"' {
		return errBadEvent("hashes.sha256 missing or not a string")
	}
	return nil
}

// checkSignaturesShape: an object of server names to objects of key IDs to
// strings.
func checkSignaturesShape(v []byte) error {
	if v[0] != '{' {
		return errBadEvent("signatures is not an object")
	}
	it := newObjIter(v)
	for {
		_, srv, ok := it.next()
		if !ok {
			return nil
		}
		if srv[0] != '{' {
			return errBadEvent("signatures of a server is not an object")
		}
		it2 := newObjIter(srv)
		for {
			_, s, ok := it2.next()
			if !ok {
				break
			}
			if s[0] != '"' {
				return errBadEvent("a signature is not a string")
			}
		}
	}
}

// referenceHash computes the reference hash of a canonical event
// (Server-Server API "Calculating the reference hash for an event"):
// sha256 of the canonical redacted event without signatures and unsigned.
func referenceHash(rv *RoomVersion, raw []byte) ([sha256.Size]byte, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	r, err := appendRedacted((*bp)[:0], raw, rv)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	n := len(r)
	r = appendWithout(r, r[:n], "signatures", "unsigned")
	*bp = r
	return sha256.Sum256(r[n:]), nil
}

// eventIDFromHash encodes a reference hash as an event ID: unpadded
// standard base64 in room version 3, URL-safe unpadded base64 from 4 on.
func eventIDFromHash(rv *RoomVersion, h [sha256.Size]byte) string {
	var b [1 + 43]byte
	b[0] = '$'
	if rv.EventIDFormat == 3 {
		unpadded.Encode(b[1:], h[:])
	} else {
		urlUnpadded.Encode(b[1:], h[:])
	}
	return string(b[:])
}

// RoomIDForCreate returns the room ID an m.room.create event creates. From
// room version 12 on it is the create event's reference hash with sigil
// "!" (the event ID with "$" replaced); before that, and for any other
// event, it is the event's room_id.
func RoomIDForCreate(pdu *PDU) string {
	if pdu.Version != nil && pdu.Version.RoomIDFromCreateEvent && pdu.Type == "m.room.create" && pdu.RoomID == "" {
		return "!" + pdu.EventID[1:]
	}
	return pdu.RoomID
}

// CheckContentHash recomputes the content hash of the event (Server-Server
// API "Calculating the content hash for an event") and compares it with
// hashes.sha256. A mismatch wraps ErrBadHash; the spec then wants the event
// to be used in redacted form.
func CheckContentHash(pdu *PDU) error {
	hv, ok := getMember(pdu.Raw, "hashes")
	if !ok {
		return errBadEvent("no hashes")
	}
	sv, ok := getMember(hv, "sha256")
	if !ok {
		return errBadEvent("no sha256 hash")
	}
	s, ok := stringValue(sv)
	if !ok {
		return errBadEvent("hashes.sha256 is not a string")
	}
	want, err := decodeBase64(s)
	if err != nil || len(want) != sha256.Size {
		return &detailError{ErrBadHash, "hashes.sha256 is not base64 of 32 bytes"}
	}
	got := contentHash(pdu.Raw)
	if !bytes.Equal(got[:], want) {
		return ErrBadHash
	}
	return nil
}

// contentHash is sha256 of the canonical event without unsigned, signatures
// and hashes.
func contentHash(raw []byte) [sha256.Size]byte {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	b := appendWithout((*bp)[:0], raw, "unsigned", "signatures", "hashes")
	*bp = b
	return sha256.Sum256(b)
}

// VerifyEventSignature checks the signature of serverName with keyID on the
// event: it is made over the redacted event (Server-Server API "Validating
// hashes and signatures on received events"), so it verifies for the full
// and the redacted copy alike. Choosing which servers must have signed, and
// whether keyID was valid at origin_server_ts, is the caller's business.
func VerifyEventSignature(pdu *PDU, serverName, keyID string, pub ed25519.PublicKey) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	r, err := appendRedacted((*bp)[:0], pdu.Raw, pdu.Version)
	*bp = r
	if err != nil {
		return err
	}
	return verifyCanonical(r, serverName, keyID, pub)
}

// SignatureKeys returns the IDs of the keys with which serverName signed the
// event (nil if it did not): which signatures to verify is the caller's
// choice (VerifyEventSignature).
func (e *PDU) SignatureKeys(serverName string) []string {
	sigs, ok := getMember(e.Raw, "signatures")
	if !ok {
		return nil
	}
	bySrv, ok := getMember(sigs, serverName)
	if !ok || len(bySrv) == 0 || bySrv[0] != '{' {
		return nil
	}
	var ids []string
	it := newObjIter(bySrv)
	for {
		k, _, ok := it.next()
		if !ok {
			break
		}
		ids = append(ids, string(appendUnescapedCanonical(nil, k)))
	}
	return ids
}
