package interoptest

import (
	"testing"
)

// A Conclave user joins a public room created on Dendrite (by room ID, with
// Dendrite named as the server to join through); messages cross both ways
// and each side's /sync shows both; the Conclave user leaves and Dendrite's
// side sees the leave, and sees nothing more from Conclave's user.
func TestConclaveUserJoinsDendriteRoom(t *testing.T) {
	p := startPair(t)
	dan := register(t, p.d.Client, "dan")
	cora := register(t, p.c, "cora")

	room := dan.createRoom(map[string]any{"preset": "public_chat", "name": "made on dendrite"})
	cora.join(room, p.d.Name)
	dan.waitMember(room, cora.u.UserID, "join")
	cora.waitMember(room, cora.u.UserID, "join")

	dan.send(room, "hello from dendrite")
	cora.send(room, "hello from conclave")
	for _, y := range []*side{dan, cora} {
		y.waitMessage(room, "hello from dendrite")
		y.waitMessage(room, "hello from conclave")
	}
	if m := cora.joinedMembers(room); !m[dan.u.UserID] || !m[cora.u.UserID] {
		t.Fatalf("joined members on Conclave: %v", m)
	}

	cora.leave(room)
	dan.waitMember(room, cora.u.UserID, "leave")
	if m := dan.joinedMembers(room); m[cora.u.UserID] || !m[dan.u.UserID] {
		t.Fatalf("joined members on Dendrite after the leave: %v", m)
	}
}

// A Dendrite user joins a public room created on Conclave: the same, the
// other way round; the Dendrite user leaves.
func TestDendriteUserJoinsConclaveRoom(t *testing.T) {
	p := startPair(t)
	cora := register(t, p.c, "cora")
	dan := register(t, p.d.Client, "dan")

	room := cora.createRoom(map[string]any{"preset": "public_chat", "name": "made on conclave"})
	dan.join(room, p.c.ServerName)
	cora.waitMember(room, dan.u.UserID, "join")
	dan.waitMember(room, dan.u.UserID, "join")

	cora.send(room, "hello from conclave")
	dan.send(room, "hello from dendrite")
	for _, y := range []*side{dan, cora} {
		y.waitMessage(room, "hello from conclave")
		y.waitMessage(room, "hello from dendrite")
	}
	if m := dan.joinedMembers(room); !m[dan.u.UserID] || !m[cora.u.UserID] {
		t.Fatalf("joined members on Dendrite: %v", m)
	}

	dan.leave(room)
	cora.waitMember(room, dan.u.UserID, "leave")
	if m := cora.joinedMembers(room); m[dan.u.UserID] || !m[cora.u.UserID] {
		t.Fatalf("joined members on Conclave after the leave: %v", m)
	}
}

// Invites both ways into private rooms: each invitee sees the invite in
// /sync with the inviter, joins through it, and messages cross; an invite
// rejected on Conclave reaches Dendrite as a leave.
func TestInvitesBothWays(t *testing.T) {
	p := startPair(t)
	cora := register(t, p.c, "cora")
	dan := register(t, p.d.Client, "dan")

	// Conclave invites a Dendrite user.
	cRoom := cora.createRoom(map[string]any{"preset": "private_chat", "name": "conclave private"})
	cora.invite(cRoom, dan.u.UserID)
	if v := dan.waitInvite(cRoom); v.inviteFrom != cora.u.UserID {
		t.Fatalf("invite on Dendrite from %q, want %s", v.inviteFrom, cora.u.UserID)
	}
	dan.join(cRoom)
	cora.waitMember(cRoom, dan.u.UserID, "join")
	dan.send(cRoom, "thanks for the invite")
	cora.waitMessage(cRoom, "thanks for the invite")

	// Dendrite invites a Conclave user.
	dRoom := dan.createRoom(map[string]any{"preset": "private_chat", "name": "dendrite private"})
	dan.invite(dRoom, cora.u.UserID)
	if v := cora.waitInvite(dRoom); v.inviteFrom != dan.u.UserID {
		t.Fatalf("invite on Conclave from %q, want %s", v.inviteFrom, dan.u.UserID)
	}
	cora.join(dRoom)
	dan.waitMember(dRoom, cora.u.UserID, "join")
	cora.send(dRoom, "joined your room")
	dan.waitMessage(dRoom, "joined your room")
	cora.waitMessage(dRoom, "joined your room")

	// A rejected invite: Conclave leaves through Dendrite.
	dRoom2 := dan.createRoom(map[string]any{"preset": "private_chat", "name": "declined"})
	dan.invite(dRoom2, cora.u.UserID)
	cora.waitInvite(dRoom2)
	cora.leave(dRoom2)
	dan.waitMember(dRoom2, cora.u.UserID, "leave")
	cora.waitUntil("the rejected invite as a leave", func() bool { return cora.room(dRoom2).membership == "leave" })
}
