//go:build goolm

package e2eetest

import (
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"conclave/internal/homeserver/hstest"
)

// Two users in an encrypted room: Megolm messages decrypt both ways, and the
// server only ever stores m.room.encrypted events.
func TestMegolmBothWays(t *testing.T) {
	s := hstest.Start(t)
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	roomID := alice.createEncryptedRoom(bob.cli.UserID)
	bob.join(roomID)
	alice.syncUntil("bob's join", alice.joined(roomID, bob.cli.UserID))

	e1 := alice.send(roomID, "hello bob")
	if got := bob.waitPlain(e1); got != "hello bob" {
		t.Fatalf("bob decrypted %q", got)
	}
	e2 := bob.send(roomID, "hello alice")
	if got := alice.waitPlain(e2); got != "hello alice" {
		t.Fatalf("alice decrypted %q", got)
	}
	// Same sessions keep working for a second round.
	e3 := alice.send(roomID, "second")
	if got := bob.waitPlain(e3); got != "second" {
		t.Fatalf("bob decrypted %q", got)
	}

	for _, e := range []id.EventID{e1, e2, e3} {
		raw, err := alice.cli.GetEvent(ctxT(t), roomID, e)
		if err != nil {
			t.Fatal(err)
		}
		if raw.Type != event.EventEncrypted {
			t.Fatalf("server stored %s as %s", e, raw.Type.Type)
		}
	}
}

// A user's second device, logged in after the conversation started, gets the
// room keys for new messages (device list change → sender re-shares) and
// decrypts them; it cannot decrypt what was sent before it existed.
func TestSecondDeviceDecryptsNewMessages(t *testing.T) {
	s := hstest.Start(t)
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	roomID := alice.createEncryptedRoom(bob.cli.UserID)
	bob.join(roomID)
	alice.syncUntil("bob's join", alice.joined(roomID, bob.cli.UserID))
	before := alice.send(roomID, "before the second device")
	bob.waitPlain(before)

	bob2 := login(t, s, "bob")
	bob2.syncOnce(0)

	// Alice learns of Bob's new device through device_lists.changed.
	alice.syncUntil("bob's second device", func() bool {
		devs, err := alice.mach.CryptoStore.GetDevices(ctxT(t), bob.cli.UserID)
		return err == nil && devs[bob2.cli.DeviceID] != nil
	})
	after := alice.send(roomID, "after the second device")
	if got := bob2.waitPlain(after); got != "after the second device" {
		t.Fatalf("bob's second device decrypted %q", got)
	}
	if got := bob.waitPlain(after); got != "after the second device" {
		t.Fatalf("bob's first device decrypted %q", got)
	}
	if _, err := bob2.decryptFromHistory(roomID, before); err == nil {
		t.Fatal("the new device decrypted a message sent before it existed without a key share")
	}

	// And the second device's own messages reach Alice and Bob's first device.
	own := bob2.send(roomID, "from bob's second device")
	if got := alice.waitPlain(own); got != "from bob's second device" {
		t.Fatalf("alice decrypted %q", got)
	}
	if got := bob.waitPlain(own); got != "from bob's second device" {
		t.Fatalf("bob's first device decrypted %q", got)
	}
}

// A user who joins later decrypts what is sent after joining (the sender
// rotates its session on the membership change and shares it with him).
func TestLateJoinerDecryptsAfterJoin(t *testing.T) {
	s := hstest.Start(t)
	alice, bob, carol := register(t, s, "alice"), register(t, s, "bob"), register(t, s, "carol")
	roomID := alice.createEncryptedRoom(bob.cli.UserID)
	bob.join(roomID)
	alice.syncUntil("bob's join", alice.joined(roomID, bob.cli.UserID))
	early := alice.send(roomID, "before carol")
	bob.waitPlain(early)

	if _, err := alice.cli.InviteUser(ctxT(t), roomID, &mautrix.ReqInviteUser{UserID: carol.cli.UserID}); err != nil {
		t.Fatal(err)
	}
	carol.join(roomID)
	alice.syncUntil("carol's join", alice.joined(roomID, carol.cli.UserID))
	bob.syncUntil("carol's join", bob.joined(roomID, carol.cli.UserID))

	late := alice.send(roomID, "welcome carol")
	if got := carol.waitPlain(late); got != "welcome carol" {
		t.Fatalf("carol decrypted %q", got)
	}
	if got := bob.waitPlain(late); got != "welcome carol" {
		t.Fatalf("bob decrypted %q", got)
	}
	fromBob := bob.send(roomID, "hi carol, bob here")
	if got := carol.waitPlain(fromBob); got != "hi carol, bob here" {
		t.Fatalf("carol decrypted %q", got)
	}
	fromCarol := carol.send(roomID, "thanks both")
	if got := alice.waitPlain(fromCarol); got != "thanks both" {
		t.Fatalf("alice decrypted %q", got)
	}
	if got := bob.waitPlain(fromCarol); got != "thanks both" {
		t.Fatalf("bob decrypted %q", got)
	}
	// The message from before her join was never shared with her.
	if _, err := carol.decryptFromHistory(roomID, early); err == nil {
		t.Fatal("carol decrypted a message from before she joined")
	}
}
