package clientapi_test

import (
	"context"
	"fmt"
	"sort"
	"sync/atomic"
	"testing"

	"conclave/internal/homeserver/hstest"
	"conclave/internal/room"
)

// makeRoom creates a real room through the room service: the first joined
// member (in sorted order) creates it, then the others join, are invited,
// or join and leave, as members says. It returns the room ID.
func makeRoom(t *testing.T, s *hstest.Server, public bool, members map[string]string) string {
	t.Helper()
	ctx := context.Background()
	var users []string
	for u := range members {
		users = append(users, u)
	}
	sort.Strings(users)
	creator := ""
	for _, u := range users {
		if members[u] == "join" {
			creator = u
			break
		}
	}
	if creator == "" {
		t.Fatal("makeRoom needs a joined member")
	}
	vis := "private"
	if public {
		vis = "public"
	}
	roomID, err := s.HS.Rooms.CreateRoom(ctx, &room.CreateRequest{Creator: creator, Preset: "public_chat", Visibility: vis})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		if u == creator {
			continue
		}
		switch members[u] {
		case "invite":
			membership(t, s, roomID, creator, u, "invite")
		case "join":
			membership(t, s, roomID, u, u, "join")
		case "leave":
			membership(t, s, roomID, u, u, "join")
			membership(t, s, roomID, u, u, "leave")
		default:
			t.Fatalf("makeRoom: membership %q", members[u])
		}
	}
	return roomID
}

func membership(t *testing.T, s *hstest.Server, roomID, sender, target, m string) {
	t.Helper()
	if _, err := s.HS.Rooms.SetMembership(context.Background(), &room.MembershipRequest{RoomID: roomID, Sender: sender, Target: target, Membership: m}); err != nil {
		t.Fatalf("%s %s %s: %v", sender, m, target, err)
	}
}

var txnSeq atomic.Int64

// addMessage sends a message event and returns its ID.
func addMessage(t *testing.T, s *hstest.Server, roomID, sender string) string {
	t.Helper()
	id, err := s.HS.Rooms.Send(context.Background(), &room.SendRequest{RoomID: roomID, Sender: sender, DeviceID: "D", TxnID: fmt.Sprint(txnSeq.Add(1)),
		Type: "m.room.message", Content: []byte(`{"msgtype":"m.text","body":"hi"}`)})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// setMembership changes a user's own membership in a room.
func setMembership(t *testing.T, s *hstest.Server, roomID, userID, m string) {
	t.Helper()
	membership(t, s, roomID, userID, userID, m)
}

// expectErr fails unless r has the status and errcode.
func expectErr(t *testing.T, r *hstest.Response, status int, code string) {
	t.Helper()
	if r.Status != status || r.Errcode() != code {
		t.Fatalf("want %d %s, got %d %s", status, code, r.Status, r.Body)
	}
}
