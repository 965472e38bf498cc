package event

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// The event format of room versions 1 and 2: event_id inside the event
// (signed), prev_events and auth_events as [event ID, hashes] pairs.
func TestV1EventFormat(t *testing.T) {
	key, err := GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	rv, _ := GetRoomVersion("2")
	sk := "@a:x.example"
	pdu, err := (&Proto{Type: "m.room.member", StateKey: &sk, Sender: sk, RoomID: "!r:x.example", Content: json.RawMessage(`{"membership":"join"}`),
		PrevEvents: []string{"$p:y.example"}, AuthEvents: []string{"$c:y.example", "$pl:y.example"}, Depth: 3, OriginServerTS: 5}).Build(rv, "x.example", key)
	if err != nil {
		t.Fatal(err)
	}
	if EventIDServer(pdu.EventID) != "x.example" {
		t.Fatalf("event ID %s", pdu.EventID)
	}
	raw := string(pdu.Raw)
	if !strings.Contains(raw, `"event_id":"`+pdu.EventID+`"`) || !strings.Contains(raw, `"prev_events":[["$p:y.example",{}]]`) {
		t.Fatalf("raw %s", raw)
	}
	// As another server receives it (with unsigned).
	in := strings.Replace(raw, `{"auth_events"`, `{"unsigned":{"age":1},"auth_events"`, 1)
	got, err := ParsePDU(rv, []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if got.EventID != pdu.EventID || strings.Join(got.AuthEvents, ",") != "$c:y.example,$pl:y.example" || got.PrevEvents[0] != "$p:y.example" || string(got.Raw) != raw {
		t.Fatalf("parsed %+v", got)
	}
	if err := CheckContentHash(got); err != nil {
		t.Fatal(err)
	}
	if err := VerifyEventSignature(got, "x.example", key.ID, key.Private.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	// The event ID is signed: changing it breaks the signature.
	forged, err := ParsePDU(rv, []byte(strings.Replace(raw, pdu.EventID, "$other:x.example", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if VerifyEventSignature(forged, "x.example", key.ID, key.Private.Public().(ed25519.PublicKey)) == nil {
		t.Fatal("a changed event_id still verifies")
	}
	red, err := got.Redacted()
	if err != nil || red.EventID != pdu.EventID {
		t.Fatalf("redacted: %v %v", red, err)
	}
	for _, bad := range []string{
		strings.Replace(raw, `"event_id":"`+pdu.EventID+`",`, "", 1),                // no event_id
		strings.Replace(raw, pdu.EventID, "$nocolon", 1),                            // not $opaque:server
		strings.Replace(raw, `[["$p:y.example",{}]]`, `["$p:y.example"]`, 1),        // v3 shape
		strings.Replace(raw, `[["$p:y.example",{}]]`, `[["$p:y.example"]]`, 1),      // no hashes
		strings.Replace(raw, `[["$p:y.example",{}]]`, `[["$p:y.example",{},1]]`, 1), // three
	} {
		if _, err := ParsePDU(rv, []byte(bad)); !errors.Is(err, ErrBadEvent) {
			t.Errorf("parsed %s: %v", bad, err)
		}
	}
	// Room version 10 events never carry event_id pairs.
	rv10, _ := GetRoomVersion("10")
	if _, err := ParsePDU(rv10, []byte(raw)); err == nil {
		t.Fatal("a v1-format event parsed as room version 10")
	}
}
