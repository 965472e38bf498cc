package receipts

import (
	"context"
	"path/filepath"
	"testing"

	"conclave/internal/accountdata"
	"conclave/internal/store"
	"conclave/internal/store/sqlite"
)

func TestNotifyHooks(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sk := "@a:x"
	if _, err := db.CreateRoom(ctx, &store.Room{RoomID: "!r:x", Version: "10", Creator: sk}, []store.NewEvent{
		{EventID: "$m", RoomID: "!r:x", Type: "m.room.member", StateKey: &sk, Sender: sk, Membership: "join", JSON: []byte(`{}`)},
		{EventID: "$1", RoomID: "!r:x", Type: "m.room.message", Sender: sk, JSON: []byte(`{}`)},
	}); err != nil {
		t.Fatal(err)
	}
	ad := accountdata.New(db)
	s := New(db, ad)
	s.IsJoined = func(ctx context.Context, roomID, userID string) (bool, error) {
		m, err := db.MembershipOf(ctx, roomID, userID)
		return m == "join", err
	}
	var rooms, users, adUsers []string
	s.NotifyRoom = func(r string) { rooms = append(rooms, r) }
	s.NotifyUser = func(u string) { users = append(users, u) }
	ad.Notify = func(u ...string) { adUsers = append(adUsers, u...) }
	for _, typ := range []string{TypeRead, TypeReadPrivate, TypeFullyRead} {
		if err := s.Post(ctx, sk, "!r:x", typ, "$1", ""); err != nil {
			t.Fatal(err)
		}
	}
	// Repeating a receipt changes nothing and wakes nobody.
	s.Post(ctx, sk, "!r:x", TypeRead, "$1", "")
	s.Post(ctx, sk, "!r:x", TypeFullyRead, "$1", "")
	if len(rooms) != 1 || rooms[0] != "!r:x" || len(users) != 1 || users[0] != sk || len(adUsers) != 1 {
		t.Fatalf("rooms %v users %v account data %v", rooms, users, adUsers)
	}
}
