package clientapi_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"conclave/internal/homeserver/hstest"
)

// TestMautrixClientsChat drives the server with mautrix-go, a real Matrix
// client library: two users create a room, invite, join, exchange messages
// and see each other's messages arrive through /sync.
func TestMautrixClientsChat(t *testing.T) {
	s := hstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	newClient := func(local string) *mautrix.Client {
		u := s.CreateUser(t, local)
		c, err := mautrix.NewClient(s.URL, id.UserID(u.UserID), u.Token)
		if err != nil {
			t.Fatal(err)
		}
		c.DeviceID = id.DeviceID(u.DeviceID)
		return c
	}
	alice, bob := newClient("alice"), newClient("bob")

	created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Name: "Mautrix", Preset: "private_chat", Invite: []id.UserID{bob.UserID}})
	if err != nil {
		t.Fatal(err)
	}
	roomID := created.RoomID

	// Bob syncs in the background, joins when invited, and records messages.
	var mu sync.Mutex
	got := map[string]bool{}
	invited := make(chan struct{}, 1)
	syncer := bob.Syncer.(*mautrix.DefaultSyncer)
	syncer.OnEventType(event.StateMember, func(ctx context.Context, ev *event.Event) {
		if ev.GetStateKey() == bob.UserID.String() && ev.Content.AsMember().Membership == event.MembershipInvite {
			select {
			case invited <- struct{}{}:
			default:
			}
		}
	})
	syncer.OnEventType(event.EventMessage, func(ctx context.Context, ev *event.Event) {
		mu.Lock()
		got[ev.Content.AsMessage().Body] = true
		mu.Unlock()
	})
	syncCtx, stopSync := context.WithCancel(ctx)
	defer stopSync()
	go bob.SyncWithContext(syncCtx)

	select {
	case <-invited:
	case <-ctx.Done():
		t.Fatal("bob never saw the invite")
	}
	if _, err := bob.JoinRoomByID(ctx, roomID); err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"one", "two", "three"} {
		if _, err := alice.SendText(ctx, roomID, body); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := bob.SendText(ctx, roomID, "from bob"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob saw %d of 4 messages: %v", n, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Alice reads the same history back through /messages.
	msgs, err := alice.Messages(ctx, roomID, "", "", mautrix.DirectionBackward, nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range msgs.Chunk {
		_ = e.Content.ParseRaw(e.Type)
	}
	if len(msgs.Chunk) == 0 || msgs.Chunk[0].Content.AsMessage().Body != "from bob" {
		var got []string
		for _, e := range msgs.Chunk {
			got = append(got, e.Type.Type+":"+e.Content.AsMessage().Body)
		}
		t.Fatalf("alice's newest events: %v", got)
	}
}
