package fedtest

import (
	"encoding/json"
	"net/url"
	"testing"

	"conclave/internal/homeserver/hstest"
)

type userDirAnswer struct {
	Results []struct {
		UserID      string `json:"user_id"`
		DisplayName string `json:"display_name"`
		AvatarURL   string `json:"avatar_url"`
	} `json:"results"`
}

func searchUsers(t *testing.T, s *hstest.Server, u *hstest.User, term string) userDirAnswer {
	t.Helper()
	r := s.MustOK(t, "POST", "/_matrix/client/v3/user_directory/search", u.Token, map[string]any{"search_term": term})
	var out userDirAnswer
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestUserDirectoryRemoteUsers: A's user directory finds B's users who
// share a room with A's users, with the profile their member event carries.
func TestUserDirectoryRemoteUsers(t *testing.T) {
	ss := hstest.StartFederation(t, 2)
	a, b := ss[0], ss[1]
	alice, carol, bob := a.CreateUser(t, "alice"), a.CreateUser(t, "carol"), b.CreateUser(t, "bob")
	b.MustOK(t, "PUT", hstest.Path("/profile/%s/displayname", bob.UserID), bob.Token, map[string]any{"displayname": "Bobby Tables"})
	b.MustOK(t, "PUT", hstest.Path("/profile/%s/avatar_url", bob.UserID), bob.Token, map[string]any{"avatar_url": "mxc://" + b.ServerName + "/bobface"})

	if got := searchUsers(t, a, alice, "bobby"); len(got.Results) != 0 {
		t.Fatalf("bob found before sharing a room: %+v", got)
	}
	roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "private_chat", "invite": []string{bob.UserID}}).Str("room_id")
	b.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), bob.Token, map[string]any{})
	// Bob's join reaches A over federation.
	ya := newSyncer(t, a, alice)
	ya.waitFor(t, roomID, func(typ, sender string, content json.RawMessage) bool {
		return typ == "m.room.member" && sender == bob.UserID
	})

	got := searchUsers(t, a, alice, "bobby")
	if len(got.Results) != 1 || got.Results[0].UserID != bob.UserID || got.Results[0].DisplayName != "Bobby Tables" ||
		got.Results[0].AvatarURL != "mxc://"+b.ServerName+"/bobface" {
		t.Fatalf("bob by display name: %+v", got)
	}
	if got := searchUsers(t, a, alice, b.ServerName); len(got.Results) != 1 {
		t.Fatalf("bob by server name: %+v", got)
	}
	// Carol shares no room with bob (the room is private).
	if got := searchUsers(t, a, carol, "bobby"); len(got.Results) != 0 {
		t.Fatalf("carol finds bob: %+v", got)
	}
	// And B's directory finds alice the same way.
	if got := searchUsers(t, b, bob, "alice"); len(got.Results) != 1 || got.Results[0].UserID != alice.UserID {
		t.Fatalf("B's directory: %+v", got)
	}
}
