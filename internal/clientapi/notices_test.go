package clientapi_test

import (
	"encoding/json"
	"strings"
	"testing"

	"conclave/internal/homeserver/hstest"
)

// Server notices, as Complement's TestServerNotices drives them: admins
// only; the user is invited to a notice room they cannot reject, tagged
// m.server_notice; after joining they may leave, and the next notice brings
// them back to the same room; a transaction ID makes a notice idempotent.
func TestServerNotices(t *testing.T) {
	s := hstest.Start(t)
	admin := s.CreateAdmin(t, "admin")
	alice := s.CreateUser(t, "alice")
	notice := map[string]any{"user_id": alice.UserID, "content": map[string]any{"msgtype": "m.text", "body": "maintenance tonight"}}

	expectErr(t, s.Do(t, "POST", "/_synapse/admin/v1/send_server_notice", alice.Token, notice), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "POST", "/_synapse/admin/v1/send_server_notice", admin.Token, map[string]any{"user_id": alice.UserID}), 400, "M_BAD_JSON")
	expectErr(t, s.Do(t, "POST", "/_synapse/admin/v1/send_server_notice", admin.Token, map[string]any{"user_id": "@nobody:localhost", "content": map[string]any{}}), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "POST", "/_synapse/admin/v1/send_server_notice", admin.Token, map[string]any{"user_id": "@x:elsewhere.org", "content": map[string]any{}}), 400, "M_INVALID_PARAM")
	eventID := s.MustOK(t, "POST", "/_synapse/admin/v1/send_server_notice", admin.Token, notice).Str("event_id")

	invitedTo := func() string {
		var sy struct {
			Rooms struct {
				Invite map[string]json.RawMessage `json:"invite"`
			} `json:"rooms"`
		}
		json.Unmarshal(s.MustOK(t, "GET", "/_matrix/client/v3/sync", alice.Token, nil).Body, &sy)
		for id := range sy.Rooms.Invite {
			return id
		}
		return ""
	}
	room := invitedTo()
	if room == "" {
		t.Fatal("alice is not invited to a notice room")
	}
	expectErr(t, s.Do(t, "POST", hstest.Path("/rooms/%s/leave", room), alice.Token, map[string]any{}), 403, "M_CANNOT_LEAVE_SERVER_NOTICE_ROOM")
	tags := s.MustOK(t, "GET", hstest.Path("/user/%s/rooms/%s/tags", alice.UserID, room), alice.Token, nil)
	if !strings.Contains(string(tags.Body), `"m.server_notice"`) {
		t.Fatalf("no m.server_notice tag: %s", tags.Body)
	}
	s.MustOK(t, "POST", hstest.Path("/join/%s", room), alice.Token, map[string]any{})
	ev := s.MustOK(t, "GET", hstest.Path("/rooms/%s/event/%s", room, eventID), alice.Token, nil)
	if ev.Str("sender") != "@notices:localhost" {
		t.Fatalf("notice: %s", ev.Body)
	}
	// Only the server speaks there.
	if r := s.Do(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/t1", room), alice.Token, map[string]any{"msgtype": "m.text", "body": "hi"}); r.Status != 403 {
		t.Fatalf("alice wrote in the notice room: %d %s", r.Status, r.Body)
	}
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/leave", room), alice.Token, map[string]any{})
	s.MustOK(t, "POST", "/_synapse/admin/v1/send_server_notice", admin.Token, notice)
	if again := invitedTo(); again != room {
		t.Fatalf("a new notice room %q instead of %q", again, room)
	}
	id1 := s.MustOK(t, "PUT", "/_synapse/admin/v1/send_server_notice/txn1", admin.Token, notice).Str("event_id")
	id2 := s.MustOK(t, "PUT", "/_synapse/admin/v1/send_server_notice/txn1", admin.Token, notice).Str("event_id")
	if id1 != id2 {
		t.Fatalf("the same transaction sent twice: %s, %s", id1, id2)
	}
	// The system user is taken: nobody registers it.
	r := s.Do(t, "POST", "/_matrix/client/v3/register", "", map[string]any{"username": "notices", "password": "a long enough password", "auth": map[string]string{"type": "m.login.dummy"}})
	if r.Status == 200 {
		t.Fatalf("registered the system user: %s", r.Body)
	}
}
