package clientapi_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"conclave/internal/homeserver/hstest"
	"conclave/internal/store"
)

var eventSeq atomic.Int64

// makeRoom creates a room straight in the store (the room service lands
// separately): one m.room.member event per member with the given
// membership, and returns the member event IDs by user.
func makeRoom(t *testing.T, s *hstest.Server, roomID string, public bool, members map[string]string) {
	t.Helper()
	var evs []store.NewEvent
	for u, m := range members {
		evs = append(evs, memberEvent(roomID, u, m))
	}
	if _, err := s.HS.Store.CreateRoom(context.Background(), &store.Room{RoomID: roomID, Version: "10", Creator: "@x:localhost", CreatedTS: time.Now().UnixMilli(), Public: public}, evs); err != nil {
		t.Fatal(err)
	}
}

func memberEvent(roomID, userID, membership string) store.NewEvent {
	sk := userID
	return store.NewEvent{EventID: nextEventID(), RoomID: roomID, Type: "m.room.member", StateKey: &sk, Sender: userID,
		Membership: membership, JSON: []byte(`{"content":{"membership":"` + membership + `"}}`), OriginServerTS: time.Now().UnixMilli()}
}

func nextEventID() string { return fmt.Sprintf("$ev%d", eventSeq.Add(1)) }

// addMessage appends a message event to a room and returns its ID.
func addMessage(t *testing.T, s *hstest.Server, roomID, sender string) string {
	t.Helper()
	e := store.NewEvent{EventID: nextEventID(), RoomID: roomID, Type: "m.room.message", Sender: sender, JSON: []byte(`{"content":{"body":"hi"}}`), OriginServerTS: time.Now().UnixMilli()}
	if _, err := s.HS.Store.PersistEvents(context.Background(), roomID, []store.NewEvent{e}); err != nil {
		t.Fatal(err)
	}
	return e.EventID
}

// setMembership changes a user's membership in a room.
func setMembership(t *testing.T, s *hstest.Server, roomID, userID, membership string) {
	t.Helper()
	if _, err := s.HS.Store.PersistEvents(context.Background(), roomID, []store.NewEvent{memberEvent(roomID, userID, membership)}); err != nil {
		t.Fatal(err)
	}
}

// expectErr fails unless r has the status and errcode.
func expectErr(t *testing.T, r *hstest.Response, status int, code string) {
	t.Helper()
	if r.Status != status || r.Errcode() != code {
		t.Fatalf("want %d %s, got %d %s", status, code, r.Status, r.Body)
	}
}
