package fedtest

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"conclave/internal/homeserver/hstest"
)

// timestamp_to_event finds an event of history this server does not have
// by asking the server that has it (/timestamp_to_event), keeps it, and a
// client pages back from it (Complement's TestJumpToDateEndpoint, "can
// paginate backwards after getting remote event from timestamp to event
// endpoint").
func TestTimestampToEventAsksOtherServer(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice := a.Register(t, "alice")
	charlie := b.Register(t, "charlie")
	roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	nextMilli := func(after int64) {
		for time.Now().UnixMilli() <= after {
			time.Sleep(time.Millisecond) // the clock, not another goroutine
		}
	}
	nextMilli(time.Now().UnixMilli()) // A comes in a later millisecond than the room's creation
	evA := a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/a", roomID), alice.Token, map[string]any{"msgtype": "m.text", "body": "A"}).Str("event_id")
	evB := a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/b", roomID), alice.Token, map[string]any{"msgtype": "m.text", "body": "B"}).Str("event_id")
	var a0, b0 struct {
		TS int64 `json:"origin_server_ts"`
	}
	json.Unmarshal(a.MustOK(t, "GET", hstest.Path("/rooms/%s/event/%s", roomID, evA), alice.Token, nil).Body, &a0)
	json.Unmarshal(a.MustOK(t, "GET", hstest.Path("/rooms/%s/event/%s", roomID, evB), alice.Token, nil).Body, &b0)
	nextMilli(b0.TS) // charlie's join comes in a later millisecond than B
	b.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), charlie.Token, map[string]any{})

	// Forwards from A's time: charlie's server has its join after it, but
	// the join follows a hole.
	r := b.MustOK(t, "GET", "/_matrix/client/v1/rooms/"+url.PathEscape(roomID)+fmt.Sprintf("/timestamp_to_event?dir=f&ts=%d", a0.TS), charlie.Token, nil)
	if r.Str("event_id") != evA {
		t.Fatalf("timestamp_to_event forwards on charlie's server: %s, want %s", r.Body, evA)
	}
	// Backwards from B's time: nothing that early here.
	r = b.MustOK(t, "GET", "/_matrix/client/v1/rooms/"+url.PathEscape(roomID)+fmt.Sprintf("/timestamp_to_event?dir=b&ts=%d", b0.TS), charlie.Token, nil)
	if r.Str("event_id") != evB {
		t.Fatalf("timestamp_to_event on charlie's server: %s, want %s", r.Body, evB)
	}
	cx := b.MustOK(t, "GET", hstest.Path("/rooms/%s/context/%s", roomID, evB)+"?limit=0", charlie.Token, nil)
	m := b.MustOK(t, "GET", hstest.Path("/rooms/%s/messages", roomID)+"?dir=b&limit=100&from="+url.QueryEscape(cx.Str("start")), charlie.Token, nil)
	if !strings.Contains(string(m.Body), evA) {
		t.Fatalf("paging back from B on charlie's server does not reach A: %s", m.Body)
	}
	m = b.MustOK(t, "GET", hstest.Path("/rooms/%s/messages", roomID)+"?dir=b&limit=100&from="+url.QueryEscape(cx.Str("end")), charlie.Token, nil)
	if !strings.Contains(string(m.Body), evA) || !strings.Contains(string(m.Body), evB) {
		t.Fatalf("paging back from after B on charlie's server does not give A and B: %s", m.Body)
	}
}
