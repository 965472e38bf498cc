package event

// Redact applies the redaction algorithm of room version rv (Client-Server
// API "Redactions", with the per-version lists of the room version pages) to
// the event JSON raw and returns the redacted event as canonical JSON.
//
// Top-level keys outside the protected list are dropped, "unsigned"
// included; "content" is always present afterwards and keeps only the keys
// protected for the event type. The algorithm is the same for room versions
// 1–5 apart from content, so those versions are accepted here too.
//
// Redaction is what reference hashes and signatures are computed over, so
// this must match other implementations byte for byte.
func Redact(rv *RoomVersion, raw []byte) ([]byte, error) {
	if rv == nil {
		return nil, ErrUnsupportedRoomVersion
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	c, err := AppendCanonicalJSON((*bp)[:0], raw, rv.StrictCanonicalJSON)
	*bp = c
	if err != nil {
		return nil, err
	}
	if c[0] != '{' {
		return nil, errBadEvent("an event must be a JSON object")
	}
	return appendRedacted(make([]byte, 0, len(c)), c, rv)
}

// Redacted returns the event as it is after redaction: same event ID, the
// content reduced per the room version. It does not check signatures.
func (e *PDU) Redacted() (*PDU, error) {
	r, err := appendRedacted(make([]byte, 0, len(e.Raw)), e.Raw, e.Version)
	if err != nil {
		return nil, err
	}
	out := &PDU{Version: e.Version, Raw: r, EventID: e.EventID}
	if err := out.fill(); err != nil {
		return nil, err
	}
	return out, nil
}

// protectedTopLevel reports whether a top-level key survives redaction.
func protectedTopLevel(rv *RoomVersion, key []byte) bool {
	switch string(key) {
	case "event_id", "type", "room_id", "sender", "state_key", "content",
		"hashes", "signatures", "depth", "prev_events", "auth_events",
		"origin_server_ts":
		return true
	case "prev_state", "origin", "membership":
		// Room version 11 stopped protecting these (MSC2176/MSC3821 work).
		return !rv.V11Redaction
	}
	return false
}

// protectedContent reports whether a content key of an event of type typ
// survives redaction. m.room.create in v11+ and the third_party_invite of
// members are handled by the caller.
func protectedContent(rv *RoomVersion, typ string, k []byte) bool {
	key := string(k) // no allocation: only compared
	switch typ {
	case "m.room.member":
		return key == "membership" ||
			(key == "join_authorised_via_users_server" && rv.RedactionKeepsAuthorisedVia)
	case "m.room.create":
		return key == "creator" // all keys from v11 on, see appendRedacted
	case "m.room.join_rules":
		return key == "join_rule" || (key == "allow" && rv.RestrictedJoins)
	case "m.room.power_levels":
		switch key {
		case "ban", "events", "events_default", "kick", "redact",
			"state_default", "users", "users_default":
			return true
		case "invite":
			return rv.V11Redaction
		}
		// "notifications" is never protected, in no room version.
	case "m.room.history_visibility":
		return key == "history_visibility"
	case "m.room.aliases":
		return key == "aliases" && rv.RedactionKeepsAliases
	case "m.room.redaction":
		return key == "redacts" && rv.RedactsInContent // v11+
	}
	return false
}

// appendRedacted appends the redaction of the canonical event c. The result
// is canonical: filtering keeps the sorted order of c.
func appendRedacted(dst, c []byte, rv *RoomVersion) ([]byte, error) {
	if rv == nil {
		return nil, ErrUnsupportedRoomVersion
	}
	tv, ok := getMember(c, "type")
	if !ok {
		return nil, errBadEvent("event has no type")
	}
	typ, ok := stringValue(tv)
	if !ok {
		return nil, errBadEvent("event type is not a string")
	}
	dst = append(dst, '{')
	first := true
	sep := func() {
		if !first {
			dst = append(dst, ',')
		}
		first = false
	}
	contentDone := false
	emptyContent := func() {
		sep()
		dst = append(dst, `"content":{}`...)
		contentDone = true
	}
	it := newObjIter(c)
	for {
		k, v, ok := it.next()
		if !ok {
			break
		}
		if !contentDone && compareKey(k, "content") > 0 {
			emptyContent()
		}
		if string(k) == "content" {
			if v[0] != '{' {
				return nil, errBadEvent("content is not an object")
			}
			sep()
			dst = append(dst, `"content":`...)
			dst = appendRedactedContent(dst, v, rv, typ)
			contentDone = true
			continue
		}
		if !protectedTopLevel(rv, k) {
			continue
		}
		sep()
		dst = appendMember(dst, k, v)
	}
	if !contentDone {
		emptyContent()
	}
	return append(dst, '}'), nil
}

func appendRedactedContent(dst, content []byte, rv *RoomVersion, typ string) []byte {
	if typ == "m.room.create" && rv.V11Redaction {
		return append(dst, content...)
	}
	dst = append(dst, '{')
	first := true
	it := newObjIter(content)
	for {
		k, v, ok := it.next()
		if !ok {
			break
		}
		if typ == "m.room.member" && rv.V11Redaction && string(k) == "third_party_invite" {
			// Only the "signed" part of an object value is protected;
			// an object without it stays as {} and a non-object goes,
			// as Synapse implements the v11 rule.
			if v[0] != '{' {
				continue
			}
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = append(dst, `"third_party_invite":{`...)
			if s, ok := getMember(v, "signed"); ok {
				dst = append(dst, `"signed":`...)
				dst = append(dst, s...)
			}
			dst = append(dst, '}')
			continue
		}
		if !protectedContent(rv, typ, k) {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = appendMember(dst, k, v)
	}
	return append(dst, '}')
}
