package clientapi_test

// Access control, one test per attack (issue 7): each is refused with the
// errcode the spec (or Synapse, where the spec is silent) gives.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
)

const acV3 = "/_matrix/client/v3"

// acRoom: alice creates a room with the given body; the others join it.
func acRoom(t *testing.T, s *hstest.Server, creator *hstest.User, body map[string]any, joiners ...*hstest.User) string {
	t.Helper()
	id := createRoom(t, s, creator, body)
	for _, u := range joiners {
		s.MustOK(t, "POST", hstest.Path("/join/%s", id), u.Token, map[string]any{})
	}
	return id
}

func acEventIDs(r *hstest.Response, key string) []string {
	evs, _ := r.JSON[key].([]any)
	var ids []string
	for _, e := range evs {
		ids = append(ids, e.(map[string]any)["event_id"].(string))
	}
	return ids
}

func acContains(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// Reading or paginating a room one is not in: every read endpoint refuses.
func TestAccessReadRoomNotIn(t *testing.T) {
	s := hstest.Start(t)
	alice, eve := s.CreateUser(t, "alice"), s.CreateUser(t, "eve")
	roomID := acRoom(t, s, alice, map[string]any{"preset": "private_chat"})
	ev := send(t, s, alice, roomID, "t1", "secret")
	for _, path := range []string{
		hstest.Path("/rooms/%s/messages", roomID) + "?dir=b",
		hstest.Path("/rooms/%s/messages", roomID) + "?dir=f&from=t0",
		hstest.Path("/rooms/%s/state", roomID),
		hstest.Path("/rooms/%s/state/m.room.name", roomID),
		hstest.Path("/rooms/%s/members", roomID),
		hstest.Path("/rooms/%s/joined_members", roomID),
		hstest.Path("/rooms/%s/event/%s", roomID, ev),
		hstest.Path("/rooms/%s/context/%s", roomID, ev),
		"/_matrix/client/v1" + strings.TrimPrefix(hstest.Path("/rooms/%s/relations/%s", roomID, ev), acV3),
	} {
		r := s.Do(t, "GET", path, eve.Token, nil)
		if r.Status != http.StatusForbidden && r.Status != http.StatusNotFound || strings.Contains(string(r.Body), "secret") {
			t.Errorf("GET %s as outsider: %d %s", path, r.Status, r.Body)
		}
		if r.Errcode() != "M_FORBIDDEN" && r.Errcode() != "M_NOT_FOUND" {
			t.Errorf("GET %s as outsider: errcode %s", path, r.Errcode())
		}
	}
	// /messages and /state say M_FORBIDDEN, as Synapse does.
	expectErr(t, s.Do(t, "GET", hstest.Path("/rooms/%s/messages", roomID)+"?dir=b", eve.Token, nil), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "GET", hstest.Path("/rooms/%s/state", roomID), eve.Token, nil), 403, "M_FORBIDDEN")
	// Nor can an outsider join a private room.
	expectErr(t, s.Do(t, "POST", hstest.Path("/join/%s", roomID), eve.Token, map[string]any{}), 403, "M_FORBIDDEN")
}

// Events from before one's join stay hidden under history_visibility
// "joined", and from before one's invite under "invited".
func TestAccessHistoryBeforeJoin(t *testing.T) {
	for _, vis := range []string{"joined", "invited"} {
		t.Run(vis, func(t *testing.T) {
			s := hstest.Start(t)
			alice, bob := s.CreateUser(t, "alice"), s.CreateUser(t, "bob")
			roomID := acRoom(t, s, alice, map[string]any{"preset": "public_chat", "initial_state": []any{
				map[string]any{"type": "m.room.history_visibility", "state_key": "", "content": map[string]any{"history_visibility": vis}}}})
			before := send(t, s, alice, roomID, "t1", "before-secret")
			s.MustOK(t, "POST", hstest.Path("/rooms/%s/invite", roomID), alice.Token, map[string]any{"user_id": bob.UserID})
			between := send(t, s, alice, roomID, "t2", "between-invite-and-join")
			s.MustOK(t, "POST", hstest.Path("/join/%s", roomID), bob.Token, map[string]any{})
			after := send(t, s, alice, roomID, "t3", "after")

			msgs := s.MustOK(t, "GET", hstest.Path("/rooms/%s/messages", roomID)+"?dir=b&limit=100", bob.Token, nil)
			ids := acEventIDs(msgs, "chunk")
			if acContains(ids, before) || !acContains(ids, after) {
				t.Errorf("/messages: before=%v after=%v", acContains(ids, before), acContains(ids, after))
			}
			if acContains(ids, between) != (vis == "invited") {
				t.Errorf("/messages: event between invite and join visible=%v under %s", acContains(ids, between), vis)
			}
			expectErr(t, s.Do(t, "GET", hstest.Path("/rooms/%s/event/%s", roomID, before), bob.Token, nil), 404, "M_NOT_FOUND")
			if r := s.Do(t, "GET", hstest.Path("/rooms/%s/context/%s", roomID, before), bob.Token, nil); r.Status != 404 && r.Status != 403 {
				t.Errorf("/context of a hidden event: %d %s", r.Status, r.Body)
			}
			sync := s.MustOK(t, "GET", acV3+"/sync", bob.Token, nil)
			if strings.Contains(string(sync.Body), "before-secret") {
				t.Errorf("initial /sync shows an event from before the join")
			}
			// Paginating back from the sync's prev_batch does not reach it either.
			tl := dig(sync.JSON, "rooms", "join", roomID, "timeline").(map[string]any)
			if prev, _ := tl["prev_batch"].(string); prev != "" {
				r := s.MustOK(t, "GET", hstest.Path("/rooms/%s/messages", roomID)+"?dir=b&limit=100&from="+url.QueryEscape(prev), bob.Token, nil)
				if strings.Contains(string(r.Body), "before-secret") {
					t.Errorf("pagination from prev_batch shows an event from before the join")
				}
			}
		})
	}
}

// Sending, redacting and changing state without the power to.
func TestAccessNoPower(t *testing.T) {
	s := hstest.Start(t)
	alice, bob := s.CreateUser(t, "alice"), s.CreateUser(t, "bob")
	roomID := acRoom(t, s, alice, map[string]any{"preset": "public_chat",
		"power_level_content_override": map[string]any{"events_default": 50}}, bob)
	ev := send(t, s, alice, roomID, "t1", "hello")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/b1", roomID), bob.Token, map[string]any{"msgtype": "m.text", "body": "x"}), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/rooms/%s/state/m.room.name", roomID), bob.Token, map[string]any{"name": "pwned"}), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/rooms/%s/state/m.room.power_levels", roomID), bob.Token, map[string]any{"users": map[string]int{bob.UserID: 100}}), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/rooms/%s/redact/%s/r1", roomID, ev), bob.Token, map[string]any{}), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "POST", hstest.Path("/rooms/%s/kick", roomID), bob.Token, map[string]any{"user_id": alice.UserID}), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "POST", hstest.Path("/rooms/%s/ban", roomID), bob.Token, map[string]any{"user_id": alice.UserID}), 403, "M_FORBIDDEN")
	// Someone else's member event through the state endpoint.
	expectErr(t, s.Do(t, "PUT", hstest.Path("/rooms/%s/state/m.room.member/%s", roomID, alice.UserID), bob.Token, map[string]any{"membership": "leave"}), 403, "M_FORBIDDEN")
	// The name is unchanged.
	r := s.Do(t, "GET", hstest.Path("/rooms/%s/state/m.room.name", roomID), alice.Token, nil)
	if strings.Contains(string(r.Body), "pwned") {
		t.Fatalf("name changed: %s", r.Body)
	}
}

// The sender is always the token's user: a forged sender in the body is
// ignored, and endpoints naming a user refuse other users.
func TestAccessSendAsAnother(t *testing.T) {
	s := hstest.Start(t)
	alice, bob := s.CreateUser(t, "alice"), s.CreateUser(t, "bob")
	roomID := acRoom(t, s, alice, map[string]any{"preset": "public_chat"}, bob)
	ev := s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/f1", roomID), bob.Token,
		map[string]any{"msgtype": "m.text", "body": "forged", "sender": alice.UserID, "origin_server_ts": 1, "event_id": "$forged"}).Str("event_id")
	got := s.MustOK(t, "GET", hstest.Path("/rooms/%s/event/%s", roomID, ev), alice.Token, nil)
	if got.Str("sender") != bob.UserID || got.Str("event_id") != ev {
		t.Fatalf("sender %q event_id %q, want %s %s", got.Str("sender"), got.Str("event_id"), bob.UserID, ev)
	}
	expectErr(t, s.Do(t, "PUT", hstest.Path("/rooms/%s/typing/%s", roomID, alice.UserID), bob.Token, map[string]any{"typing": true, "timeout": 1000}), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/presence/%s/status", alice.UserID), bob.Token, map[string]any{"presence": "online"}), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/profile/%s/displayname", alice.UserID), bob.Token, map[string]any{"displayname": "x"}), 403, "M_FORBIDDEN")
	// A receipt is always the caller's.
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/receipt/m.read/%s", roomID, ev), bob.Token, map[string]any{"user_id": alice.UserID})
	sync := s.MustOK(t, "GET", acV3+"/sync", alice.Token, nil)
	if strings.Contains(string(sync.Body), `"`+alice.UserID+`":{"ts"`) && strings.Contains(string(sync.Body), ev+`":{"m.read":{"`+alice.UserID) {
		t.Fatalf("bob's receipt was recorded as alice's: %s", sync.Body)
	}
}

// Replaying another device's (or user's) transaction ID creates a new event.
func TestAccessTxnReplayOtherDevice(t *testing.T) {
	s := hstest.Start(t)
	alice := s.Register(t, "alice")
	bob := s.CreateUser(t, "bob")
	other := login(t, s, "alice", "correct horse battery alice", nil)
	if other.Status != 200 {
		t.Fatal(string(other.Body))
	}
	roomID := acRoom(t, s, alice, map[string]any{"preset": "public_chat"}, bob)
	first := send(t, s, alice, roomID, "same-txn", "one")
	if again := send(t, s, alice, roomID, "same-txn", "one"); again != first {
		t.Fatalf("same device retry: %s, want %s", again, first)
	}
	second := s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/same-txn", roomID), other.Str("access_token"), map[string]any{"msgtype": "m.text", "body": "two"}).Str("event_id")
	third := send(t, s, bob, roomID, "same-txn", "three")
	if second == first || third == first || second == third {
		t.Fatalf("txn replay returned an existing event: %s %s %s", first, second, third)
	}
}

// A logged-out token is refused everywhere with M_UNKNOWN_TOKEN.
func TestAccessLoggedOutToken(t *testing.T) {
	s := hstest.Start(t)
	alice := s.Register(t, "alice")
	roomID := createRoom(t, s, alice, map[string]any{})
	s.MustOK(t, "POST", acV3+"/logout", alice.Token, map[string]any{})
	expectErr(t, s.Do(t, "GET", acV3+"/account/whoami", alice.Token, nil), 401, "M_UNKNOWN_TOKEN")
	expectErr(t, s.Do(t, "GET", acV3+"/sync", alice.Token, nil), 401, "M_UNKNOWN_TOKEN")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/x", roomID), alice.Token, map[string]any{"body": "x"}), 401, "M_UNKNOWN_TOKEN")
	// The deprecated query parameter is no way around it either.
	expectErr(t, s.Do(t, "GET", acV3+"/account/whoami?access_token="+url.QueryEscape(alice.Token), "", nil), 401, "M_UNKNOWN_TOKEN")
	// Nor is /logout/all from every device.
	other := login(t, s, "alice", "correct horse battery alice", nil).Str("access_token")
	s.MustOK(t, "POST", acV3+"/logout/all", other, map[string]any{})
	expectErr(t, s.Do(t, "GET", acV3+"/account/whoami", other, nil), 401, "M_UNKNOWN_TOKEN")
}

// A deactivated account's tokens die, it cannot log in, and its name cannot
// be registered again.
func TestAccessDeactivatedAccount(t *testing.T) {
	s := hstest.Start(t)
	alice := s.Register(t, "alice")
	pw := "correct horse battery alice"
	r := s.Do(t, "POST", acV3+"/account/deactivate", alice.Token, map[string]any{})
	session := r.Str("session")
	s.MustOK(t, "POST", acV3+"/account/deactivate", alice.Token, map[string]any{"auth": passwordAuth(session, "alice", pw)})
	expectErr(t, s.Do(t, "GET", acV3+"/account/whoami", alice.Token, nil), 401, "M_UNKNOWN_TOKEN")
	expectErr(t, login(t, s, "alice", pw, nil), 403, "M_USER_DEACTIVATED")
	expectErr(t, s.Do(t, "POST", acV3+"/register", "", map[string]any{"username": "alice", "password": "x", "auth": dummy()}), 400, "M_USER_IN_USE")
}

// Registering a taken or invalid user ID: case folds onto the taken name;
// characters and length follow the user ID grammar.
func TestAccessRegisterTakenOrInvalid(t *testing.T) {
	s := hstest.Start(t)
	s.Register(t, "alice")
	reg := func(name string) *hstest.Response {
		return s.Do(t, "POST", acV3+"/register", "", map[string]any{"username": name, "password": "pw-pw-pw", "auth": dummy()})
	}
	expectErr(t, reg("alice"), 400, "M_USER_IN_USE")
	expectErr(t, reg("ALICE"), 400, "M_USER_IN_USE") // localparts are case-folded, as Synapse does
	expectErr(t, reg("Alice"), 400, "M_USER_IN_USE")
	for _, bad := range []string{"al ice", "al:ice", "ålice", "alice\x00", "@alice", "al/ice%", "ali\u200bce", "\u0430lice" /* Cyrillic a */, strings.Repeat("a", 250)} {
		expectErr(t, reg(bad), 400, "M_INVALID_USERNAME")
		expectErr(t, s.Do(t, "GET", acV3+"/register/available?username="+url.QueryEscape(bad), "", nil), 400, "M_INVALID_USERNAME")
	}
	// The longest valid localpart (user ID of 255 bytes) is accepted.
	long := strings.Repeat("b", 255-len("@:localhost"))
	s.MustOK(t, "POST", acV3+"/register", "", map[string]any{"username": long, "password": "pw-pw-pw", "auth": dummy()})
}

// createRoom cannot forge other users' membership through initial_state or
// power_level_content_override; giving others power is allowed.
func TestAccessCreateRoomForgedMembership(t *testing.T) {
	s := hstest.Start(t)
	alice, bob := s.CreateUser(t, "alice"), s.CreateUser(t, "bob")
	r := s.Do(t, "POST", acV3+"/createRoom", alice.Token, map[string]any{"initial_state": []any{
		map[string]any{"type": "m.room.member", "state_key": bob.UserID, "content": map[string]any{"membership": "join"}}}})
	if r.Status == 200 {
		members := s.MustOK(t, "GET", hstest.Path("/rooms/%s/joined_members", r.Str("room_id")), alice.Token, nil)
		if strings.Contains(string(members.Body), bob.UserID) {
			t.Fatalf("initial_state joined bob: %s", members.Body)
		}
	} else if r.Status != 400 && r.Status != 403 {
		t.Fatalf("forged member in initial_state: %d %s", r.Status, r.Body)
	}
	// The override replaces top-level keys (spec: "applied on top of the
	// generated m.room.power_levels event content", a shallow merge as in
	// Synapse): a users map without the creator leaves the creator powerless,
	// so the rest of the room cannot be built and nothing is written.
	r = s.Do(t, "POST", acV3+"/createRoom", alice.Token, map[string]any{
		"power_level_content_override": map[string]any{"users": map[string]int{bob.UserID: 100}}})
	expectErr(t, r, 403, "M_FORBIDDEN")
	if jr := s.MustOK(t, "GET", acV3+"/joined_rooms", alice.Token, nil); strings.Count(string(jr.Body), "!") != 0 {
		t.Fatalf("a refused createRoom left a room behind: %s", jr.Body)
	}
	// The override cannot carry membership, or make the creator not the creator.
	r = s.Do(t, "POST", acV3+"/createRoom", alice.Token, map[string]any{
		"power_level_content_override": map[string]any{"users": map[string]int{alice.UserID: 100, bob.UserID: 100}, "membership": "join"},
		"creation_content":             map[string]any{"creator": bob.UserID},
	})
	if r.Status != 200 {
		t.Fatalf("createRoom with a power override: %d %s", r.Status, r.Body)
	}
	roomID := r.Str("room_id")
	members := s.MustOK(t, "GET", hstest.Path("/rooms/%s/joined_members", roomID), alice.Token, nil)
	if strings.Contains(string(members.Body), bob.UserID) {
		t.Fatalf("override joined bob: %s", members.Body)
	}
	create := s.MustOK(t, "GET", hstest.Path("/rooms/%s/state/m.room.create", roomID)+"?format=event", alice.Token, nil)
	if create.Str("sender") != alice.UserID && create.Str("sender") != "" {
		t.Fatalf("create event sender %s", create.Str("sender"))
	}
	// Bob is not in the room: his granted power does not let him in.
	expectErr(t, s.Do(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/x", roomID), bob.Token, map[string]any{"body": "x"}), 403, "M_FORBIDDEN")
	// Once invited and joined, the power the creator gave him is his.
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/invite", roomID), alice.Token, map[string]any{"user_id": bob.UserID})
	s.MustOK(t, "POST", hstest.Path("/join/%s", roomID), bob.Token, map[string]any{})
	s.MustOK(t, "PUT", hstest.Path("/rooms/%s/state/m.room.name", roomID), bob.Token, map[string]any{"name": "bob can"})
	// An invite in the body is an invite, never a join.
	r = s.MustOK(t, "POST", acV3+"/createRoom", alice.Token, map[string]any{"invite": []string{bob.UserID}})
	members = s.MustOK(t, "GET", hstest.Path("/rooms/%s/joined_members", r.Str("room_id")), alice.Token, nil)
	if strings.Contains(string(members.Body), bob.UserID) {
		t.Fatalf("invite joined bob: %s", members.Body)
	}
}

// Another user's account data, filters, devices and key backup.
func TestAccessOtherUsersData(t *testing.T) {
	s := hstest.Start(t)
	alice, bob := s.CreateUser(t, "alice"), s.CreateUser(t, "bob")
	roomID := acRoom(t, s, alice, map[string]any{"preset": "public_chat"}, bob)
	s.MustOK(t, "PUT", hstest.Path("/user/%s/account_data/org.secret", bob.UserID), bob.Token, map[string]any{"k": "bob's"})
	s.MustOK(t, "PUT", hstest.Path("/user/%s/rooms/%s/account_data/org.secret", bob.UserID, roomID), bob.Token, map[string]any{"k": "bob's"})
	filterID := s.MustOK(t, "POST", hstest.Path("/user/%s/filter", bob.UserID), bob.Token, map[string]any{"event_fields": []string{"x"}}).Str("filter_id")
	version := s.MustOK(t, "POST", acV3+"/room_keys/version", bob.Token, map[string]any{"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": map[string]any{"public_key": "k"}}).Str("version")

	// Account data: global and per room, read and write.
	expectErr(t, s.Do(t, "GET", hstest.Path("/user/%s/account_data/org.secret", bob.UserID), alice.Token, nil), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/user/%s/account_data/org.secret", bob.UserID), alice.Token, map[string]any{"k": "x"}), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "GET", hstest.Path("/user/%s/rooms/%s/account_data/org.secret", bob.UserID, roomID), alice.Token, nil), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/user/%s/rooms/%s/account_data/org.secret", bob.UserID, roomID), alice.Token, map[string]any{"k": "x"}), 403, "M_FORBIDDEN")
	// Filters.
	expectErr(t, s.Do(t, "GET", hstest.Path("/user/%s/filter/%s", bob.UserID, filterID), alice.Token, nil), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "POST", hstest.Path("/user/%s/filter", bob.UserID), alice.Token, map[string]any{}), 403, "M_FORBIDDEN")
	// Bob's filter ID under alice's own user is not bob's filter.
	if r := s.Do(t, "GET", hstest.Path("/user/%s/filter/%s", alice.UserID, filterID), alice.Token, nil); r.Status == 200 && strings.Contains(string(r.Body), `"x"`) {
		t.Fatalf("alice read bob's filter by ID: %s", r.Body)
	}
	// Devices: another user's device is not found, whatever the verb.
	expectErr(t, s.Do(t, "GET", hstest.Path("/devices/%s", bob.DeviceID), alice.Token, nil), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/devices/%s", bob.DeviceID), alice.Token, map[string]any{"display_name": "x"}), 404, "M_NOT_FOUND")
	devs := s.MustOK(t, "GET", acV3+"/devices", alice.Token, nil)
	if strings.Contains(string(devs.Body), bob.DeviceID) {
		t.Fatalf("alice's device list has bob's device: %s", devs.Body)
	}
	s.Do(t, "DELETE", hstest.Path("/devices/%s", bob.DeviceID), alice.Token, map[string]any{})
	s.MustOK(t, "GET", acV3+"/account/whoami", bob.Token, nil) // bob's device survived
	// Key backup: bob's version does not exist for alice.
	expectErr(t, s.Do(t, "GET", hstest.Path("/room_keys/version/%s", version), alice.Token, nil), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "GET", acV3+"/room_keys/version", alice.Token, nil), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "PUT", acV3+"/room_keys/keys?version="+version, alice.Token, map[string]any{"rooms": map[string]any{}}), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "GET", acV3+"/room_keys/keys?version="+version, alice.Token, nil), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "DELETE", hstest.Path("/room_keys/version/%s", version), alice.Token, nil), 404, "M_NOT_FOUND")
	s.MustOK(t, "GET", hstest.Path("/room_keys/version/%s", version), bob.Token, nil)
}

// Uploading device keys for another user or another device.
func TestAccessUploadKeysForAnother(t *testing.T) {
	s := hstest.Start(t)
	alice, bob := s.CreateUser(t, "alice"), s.CreateUser(t, "bob")
	keys := func(userID, deviceID string) map[string]any {
		return map[string]any{"device_keys": map[string]any{"user_id": userID, "device_id": deviceID,
			"algorithms": []string{"m.olm.v1.curve25519-aes-sha2"}, "keys": map[string]string{"ed25519:" + deviceID: "k", "curve25519:" + deviceID: "c"},
			"signatures": map[string]any{userID: map[string]string{"ed25519:" + deviceID: "s"}}}}
	}
	expectErr(t, s.Do(t, "POST", acV3+"/keys/upload", alice.Token, keys(bob.UserID, bob.DeviceID)), 400, "M_BAD_JSON")    // as Synapse
	expectErr(t, s.Do(t, "POST", acV3+"/keys/upload", alice.Token, keys(alice.UserID, "OTHERDEVICE")), 400, "M_BAD_JSON") // as Synapse
	// Cross-signing keys for another user.
	r := s.Do(t, "POST", acV3+"/keys/device_signing/upload", alice.Token, map[string]any{
		"master_key": map[string]any{"user_id": bob.UserID, "usage": []string{"master"}, "keys": map[string]string{"ed25519:K": "K"}}})
	if r.Status < 400 || r.Status >= 500 {
		t.Fatalf("cross-signing upload for bob: %d %s", r.Status, r.Body)
	}
	q := s.MustOK(t, "POST", acV3+"/keys/query", bob.Token, map[string]any{"device_keys": map[string]any{bob.UserID: []string{}}})
	if dk, _ := dig(q.JSON, "device_keys", bob.UserID).(map[string]any); len(dk) != 0 {
		t.Fatalf("bob has keys someone else uploaded: %v", dk)
	}
	if mk := dig(q.JSON, "master_keys", bob.UserID); mk != nil {
		t.Fatalf("bob has a master key someone else uploaded: %v", mk)
	}
}

// fromIP returns a client whose connections come from the given loopback
// address (Linux routes all of 127.0.0.0/8 to lo).
func fromIP(t *testing.T, ip string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

func loginFrom(t *testing.T, s *hstest.Server, c *http.Client, user, pw string) (int, map[string]any) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": user}, "password": pw})
	res, err := c.Post(s.URL+acV3+"/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out
}

// A password-guessing loop is throttled with 429 M_LIMIT_EXCEEDED and
// retry_after_ms, while the owner, from another address, still logs in.
// Many addresses together are bounded by the account-wide bucket.
func TestBruteForceLogin(t *testing.T) {
	if _, err := net.Listen("tcp", "127.0.0.2:0"); err != nil {
		t.Skip("no 127.0.0.2 on this machine")
	}
	const burst = 3
	s := hstest.Start(t, func(c *config.Config) { c.RateLimits = true; c.LoginRatePerSecond = 0.001; c.LoginRateBurst = burst })
	s.MustOK(t, "POST", acV3+"/register", "", map[string]any{"username": "owner", "password": "owner-secret", "auth": dummy()})
	attacker := fromIP(t, "127.0.0.3")
	var refused, throttled int
	for i := range 30 {
		st, out := loginFrom(t, s, attacker, "owner", fmt.Sprintf("guess-%d", i))
		switch {
		case st == 403 && out["errcode"] == "M_FORBIDDEN":
			refused++
		case st == 429 && out["errcode"] == "M_LIMIT_EXCEEDED":
			if ms, _ := out["retry_after_ms"].(float64); ms < 1 {
				t.Fatalf("429 without retry_after_ms: %v", out)
			}
			throttled++
		default:
			t.Fatalf("guess %d: %d %v", i, st, out)
		}
	}
	if refused != burst || throttled != 30-burst {
		t.Fatalf("%d guesses checked, %d throttled: the loop is not throttled", refused, throttled)
	}
	// The owner, elsewhere, is not locked out by one guesser.
	if st, out := loginFrom(t, s, fromIP(t, "127.0.0.2"), "owner", "owner-secret"); st != 200 {
		t.Fatalf("owner locked out by one guesser: %d %v", st, out)
	}
	// A guesser spreading over many addresses is bounded by the account-wide
	// bucket (accountFactor × burst failures in all); past it, the account
	// is throttled for everyone until it refills.
	total := refused
	for i := 4; i < 30 && total < 10*burst; i++ {
		c := fromIP(t, fmt.Sprintf("127.0.0.%d", i))
		for range burst {
			if st, _ := loginFrom(t, s, c, "owner", "wrong"); st == 403 {
				total++
			}
		}
	}
	st, out := loginFrom(t, s, fromIP(t, "127.0.0.99"), "owner", "wrong-again")
	if st != 429 || out["errcode"] != "M_LIMIT_EXCEEDED" {
		t.Fatalf("after %d distributed failures: %d %v", total, st, out)
	}
	if total > 10*burst {
		t.Fatalf("%d guesses checked, more than the account-wide bound %d", total, 10*burst)
	}
	// Registration from one address is throttled the same way.
	reg := fromIP(t, "127.0.0.150")
	var regThrottled bool
	for i := range 10 {
		body, _ := json.Marshal(map[string]any{"username": fmt.Sprintf("spam%d", i), "password": "pw", "auth": dummy()})
		res, err := reg.Post(s.URL+acV3+"/register", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode == 429 {
			regThrottled = true
			if res.Header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
		}
	}
	if !regThrottled {
		t.Fatal("ten registrations from one address were not throttled")
	}
}
