package event

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
)

// Proto is an event before it is hashed and signed: what the homeserver
// decided to send, with prev_events, auth_events and depth already chosen.
type Proto struct {
	Type     string
	StateKey *string
	Sender   string
	// RoomID must be empty for an m.room.create of room version 12+, whose
	// room ID is derived from its reference hash (see RoomIDForCreate).
	RoomID                 string
	Content                json.RawMessage // a JSON object; nil means {}
	PrevEvents, AuthEvents []string
	Depth, OriginServerTS  int64
	// Redacts is the target of an m.room.redaction. It is written as the
	// top-level "redacts" before room version 11 and as content.redacts
	// from 11 on (it may also be given there directly).
	Redacts string
	// EventID, for room versions 1 and 2 only (event IDs not derived from
	// the event): empty, Build makes a random one on origin.
	EventID string
}

// Build hashes and signs the event for room version rv as server origin
// (which must be the sender's server) and returns the PDU with its event ID.
//
// Following the Server-Server API "Signing Events": the content hash is
// sha256 of the canonical event without unsigned, signatures and hashes; the
// signature is made over the redacted event; the event ID is the reference
// hash (redacted event without signatures). A result larger than MaxPDUSize,
// or an identifier larger than MaxIDLength, is refused with an error
// wrapping ErrTooLarge (the client gets M_TOO_LARGE).
func (p *Proto) Build(rv *RoomVersion, origin string, key *SigningKey) (*PDU, error) {
	if rv == nil {
		return nil, ErrUnsupportedRoomVersion
	}
	if err := p.check(rv, origin); err != nil {
		return nil, err
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	content := []byte("{}")
	if len(p.Content) > 0 {
		c, err := AppendCanonicalJSON((*bp)[:0], p.Content, rv.StrictCanonicalJSON)
		*bp = c
		if err != nil {
			return nil, err
		}
		if c[0] != '{' {
			return nil, errBadEvent("content is not an object")
		}
		content = c
	}
	isRedaction := p.Type == "m.room.redaction"
	if p.Redacts != "" && isRedaction && rv.RedactsInContent {
		quoted := appendJSONString(nil, p.Redacts)
		if v, ok := getMember(content, "redacts"); ok {
			if string(v) != string(quoted) {
				return nil, errBadEvent("Redacts and content.redacts differ")
			}
		} else {
			content = appendWithMember(nil, content, "redacts", quoted)
		}
	}

	// The event without hashes and signatures, keys in sorted order.
	ev := make([]byte, 0, len(content)+256+64*(len(p.PrevEvents)+len(p.AuthEvents)))
	list := appendStringArray
	if rv.EventIDFormat == 1 {
		list = appendPairArray
	}
	ev = append(ev, `{"auth_events":`...)
	ev = list(ev, p.AuthEvents)
	ev = append(ev, `,"content":`...)
	ev = append(ev, content...)
	ev = append(ev, `,"depth":`...)
	ev = strconv.AppendInt(ev, p.Depth, 10)
	if rv.EventIDFormat == 1 {
		id := p.EventID
		if id == "" {
			id = NewV1EventID(origin)
		}
		ev = append(ev, `,"event_id":`...)
		ev = appendJSONString(ev, id)
	}
	ev = append(ev, `,"origin_server_ts":`...)
	ev = strconv.AppendInt(ev, p.OriginServerTS, 10)
	ev = append(ev, `,"prev_events":`...)
	ev = list(ev, p.PrevEvents)
	if p.Redacts != "" && !rv.RedactsInContent {
		ev = append(ev, `,"redacts":`...)
		ev = appendJSONString(ev, p.Redacts)
	}
	if p.RoomID != "" {
		ev = append(ev, `,"room_id":`...)
		ev = appendJSONString(ev, p.RoomID)
	}
	ev = append(ev, `,"sender":`...)
	ev = appendJSONString(ev, p.Sender)
	if p.StateKey != nil {
		ev = append(ev, `,"state_key":`...)
		ev = appendJSONString(ev, *p.StateKey)
	}
	ev = append(ev, `,"type":`...)
	ev = appendJSONString(ev, p.Type)
	ev = append(ev, '}')

	raw, err := hashAndSign(ev, rv, origin, key)
	if err != nil {
		return nil, err
	}
	if len(raw) > MaxPDUSize {
		return nil, errTooLarge("event larger than " + strconv.Itoa(MaxPDUSize) + " bytes")
	}
	e := &PDU{Version: rv, Raw: raw}
	if err := e.fill(); err != nil {
		return nil, err
	}
	return e, nil
}

// check validates the Proto against the spec's size limits and the shape
// rules ParsePDU will apply, so Conclave never emits what it would refuse.
func (p *Proto) check(rv *RoomVersion, origin string) error {
	long := func(name, v string) error {
		if len(v) > MaxIDLength {
			return errTooLarge(name + " longer than 255 bytes")
		}
		return nil
	}
	if p.Type == "" {
		return errBadEvent("missing type")
	}
	for _, f := range [...]struct{ n, v string }{{"type", p.Type}, {"sender", p.Sender}, {"room_id", p.RoomID}, {"redacts", p.Redacts}} {
		if err := long(f.n, f.v); err != nil {
			return err
		}
	}
	if p.StateKey != nil {
		if err := long("state_key", *p.StateKey); err != nil {
			return err
		}
	}
	if !validUserIDShape(p.Sender) {
		return errBadEvent("sender is not a user ID")
	}
	if _, server, _ := strings.Cut(p.Sender, ":"); server != origin {
		return errBadEvent("sender " + p.Sender + " does not belong to " + origin)
	}
	if rv.RoomIDFromCreateEvent && p.Type == "m.room.create" {
		if p.RoomID != "" {
			return errBadEvent("m.room.create of this room version has no room_id")
		}
	} else if p.RoomID == "" || p.RoomID[0] != '!' {
		return errBadEvent("room_id is not a room ID")
	}
	if p.EventID != "" && (rv.EventIDFormat != 1 || !validV1EventID(p.EventID) || len(p.EventID) > MaxIDLength) {
		return errBadEvent("an event ID is given only for room versions 1 and 2, as $opaque:server")
	}
	if p.Redacts != "" && p.Type != "m.room.redaction" {
		return errBadEvent("redacts on an event that is not m.room.redaction")
	}
	if len(p.PrevEvents) > MaxPrevEvents {
		return errBadEvent("more than 20 prev_events")
	}
	if len(p.AuthEvents) > MaxAuthEvents {
		return errBadEvent("more than 10 auth_events")
	}
	for _, list := range [...][]string{p.PrevEvents, p.AuthEvents} {
		for _, id := range list {
			if err := long("event ID", id); err != nil {
				return err
			}
		}
	}
	if p.Depth < 0 {
		return errBadEvent("negative depth")
	}
	if rv.StrictCanonicalJSON {
		if p.Depth > maxSafeInteger {
			return errBadEvent("depth beyond 2^53-1")
		}
		if p.OriginServerTS > maxSafeInteger || p.OriginServerTS < -maxSafeInteger {
			return errBadEvent("origin_server_ts beyond the canonical JSON range")
		}
	}
	return nil
}

// appendPairArray writes event IDs as the [event ID, hashes] pairs of room
// versions 1 and 2, with empty hashes as Synapse writes them (nothing checks
// them).
func appendPairArray(dst []byte, list []string) []byte {
	dst = append(dst, '[')
	for i, s := range list {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '[')
		dst = appendJSONString(dst, s)
		dst = append(dst, `,{}]`...)
	}
	return append(dst, ']')
}

// NewV1EventID makes a random event ID on origin in the historical format
// of room versions 1 and 2 ("$opaque:server"; the one thing here not
// derived from its input).
func NewV1EventID(origin string) string {
	var b [15]byte
	rand.Read(b[:])
	return "$" + base64.RawURLEncoding.EncodeToString(b[:]) + ":" + origin
}

func appendStringArray(dst []byte, list []string) []byte {
	dst = append(dst, '[')
	for i, s := range list {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, s)
	}
	return append(dst, ']')
}

// SignEvent adds the content hash and origin's signature to an event given
// as JSON (any keys, as in the appendix "Event Signing" test vectors) and
// returns it as canonical JSON, keeping "unsigned" and any other signatures.
// Use it for events built elsewhere, e.g. from a make_join template. It
// replaces an existing hashes object, so use (*PDU).WithSignature to
// countersign an event that is already hashed.
func SignEvent(rv *RoomVersion, event []byte, origin string, key *SigningKey) ([]byte, error) {
	if rv == nil {
		return nil, ErrUnsupportedRoomVersion
	}
	c, err := AppendCanonicalJSON(nil, event, rv.StrictCanonicalJSON)
	if err != nil {
		return nil, err
	}
	if c[0] != '{' {
		return nil, errBadEvent("an event must be a JSON object")
	}
	return hashAndSign(c, rv, origin, key)
}

// WithSignature returns a copy of the event with serverName's signature
// added (e.g. the invited server signing an invite, or the authorising
// server of a restricted join). The hashes and event ID are unchanged.
func (e *PDU) WithSignature(serverName string, key *SigningKey) (*PDU, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	r, err := appendRedacted((*bp)[:0], e.Raw, e.Version)
	*bp = r
	if err != nil {
		return nil, err
	}
	n := len(r)
	r, err = signCanonical(r, r[:n], serverName, key)
	*bp = r
	if err != nil {
		return nil, err
	}
	sigs, _ := getMember(r[n:], "signatures")
	out := *e
	out.Raw = appendWithMember(make([]byte, 0, len(e.Raw)+len(sigs)), e.Raw, "signatures", sigs)
	if len(out.Raw) > MaxPDUSize {
		return nil, errTooLarge("event larger than " + strconv.Itoa(MaxPDUSize) + " bytes")
	}
	out.Content, _ = getMember(out.Raw, "content")
	return &out, nil
}

// hashAndSign implements "Adding hashes and signatures to outgoing events"
// on the canonical event c.
func hashAndSign(c []byte, rv *RoomVersion, origin string, key *SigningKey) ([]byte, error) {
	h := contentHash(c)
	var hashes [len(`{"sha256":""}`) + 43]byte
	hb := append(hashes[:0], `{"sha256":"`...)
	hb = unpadded.AppendEncode(hb, h[:])
	hb = append(hb, `"}`...)
	withHash := appendWithMember(make([]byte, 0, len(c)+len(hb)+200), c, "hashes", hb)

	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	r, err := appendRedacted((*bp)[:0], withHash, rv)
	*bp = r
	if err != nil {
		return nil, err
	}
	n := len(r)
	r, err = signCanonical(r, r[:n], origin, key)
	*bp = r
	if err != nil {
		return nil, err
	}
	sigs, _ := getMember(r[n:], "signatures")
	return appendWithMember(make([]byte, 0, len(withHash)+len(sigs)+16), withHash, "signatures", sigs), nil
}
