//go:build goolm

package interoptest

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"conclave/internal/homeserver/hstest"
)

// e2eeClient is one device: a mautrix client with the pure-Go Olm machine
// and in-memory stores, its sync loop driven step by step by the test (the
// glue mautrix's cryptohelper provides, without its cgo SQLite).
type e2eeClient struct {
	t       *testing.T
	cli     *mautrix.Client
	mach    *crypto.OlmMachine
	since   string
	plain   map[id.EventID]string
	pending map[id.EventID]*event.Event
	lastErr map[id.EventID]error
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newE2EEClient registers localpart on s (Conclave, or Dendrite's Client)
// and sets up its device: keys uploaded, its own device list fetched.
func newE2EEClient(t *testing.T, s *hstest.Server, localpart string) *e2eeClient {
	t.Helper()
	u := s.Register(t, localpart)
	return setUpDevice(t, s, u)
}

// loginE2EE adds a device for a user newE2EEClient registered.
func loginE2EE(t *testing.T, s *hstest.Server, localpart string) *e2eeClient {
	t.Helper()
	cli, err := mautrix.NewClient(s.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Login(ctxT(t), &mautrix.ReqLogin{
		Type:       mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: localpart},
		Password:   "correct horse battery " + localpart, // hstest.Register's
	})
	if err != nil {
		t.Fatalf("login %s on %s: %v", localpart, s.ServerName, err)
	}
	return setUpDevice(t, s, &hstest.User{UserID: string(resp.UserID), DeviceID: string(resp.DeviceID), Token: resp.AccessToken})
}

func setUpDevice(t *testing.T, s *hstest.Server, u *hstest.User) *e2eeClient {
	t.Helper()
	cli, err := mautrix.NewClient(s.URL, id.UserID(u.UserID), u.Token)
	if err != nil {
		t.Fatal(err)
	}
	cli.DeviceID = id.DeviceID(u.DeviceID)
	cli.Log = zerolog.New(io.Discard)
	if testing.Verbose() && os.Getenv("E2EE_TEST_LOG") != "" {
		cli.Log = zerolog.New(zerolog.NewTestWriter(t)).With().Str("device", u.DeviceID).Logger().Level(zerolog.DebugLevel)
	}
	states := mautrix.NewMemoryStateStore()
	cli.StateStore = states
	syncer := mautrix.NewDefaultSyncer()
	cli.Syncer = syncer
	c := &e2eeClient{t: t, cli: cli, plain: map[id.EventID]string{}, pending: map[id.EventID]*event.Event{}, lastErr: map[id.EventID]error{}}
	log := cli.Log.With().Str("component", "crypto").Logger()
	c.mach = crypto.NewOlmMachine(cli, &log, crypto.NewMemoryStore(nil), states.(crypto.StateStore))
	if err := c.mach.Load(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := c.mach.ShareKeys(ctxT(t), -1); err != nil {
		t.Fatalf("upload keys for %s on %s: %v", u.UserID, s.ServerName, err)
	}
	if _, err := c.mach.FetchKeys(ctxT(t), []id.UserID{cli.UserID}, true); err != nil {
		t.Fatalf("query own keys on %s: %v", s.ServerName, err)
	}
	// To-device (room keys) and device lists first, then state, then the
	// membership handlers of the crypto machine.
	syncer.OnSync(c.mach.ProcessSyncResponse)
	syncer.OnEvent(cli.StateStoreSyncHandler)
	syncer.OnEventType(event.StateMember, c.mach.HandleMemberEvent)
	syncer.OnEventType(event.StateHistoryVisibility, c.mach.HandleHistoryVisibility)
	syncer.OnEventType(event.EventEncrypted, func(_ context.Context, evt *event.Event) {
		c.pending[evt.ID] = evt
	})
	return c
}

func (c *e2eeClient) syncOnce(timeoutMS int) {
	c.t.Helper()
	resp, err := c.cli.SyncRequest(ctxT(c.t), timeoutMS, c.since, "", false, "")
	if err != nil {
		c.t.Fatalf("sync %s: %v", c.cli.UserID, err)
	}
	if err := c.cli.Syncer.ProcessResponse(ctxT(c.t), resp, c.since); err != nil {
		c.t.Fatalf("process sync: %v", err)
	}
	c.since = resp.NextBatch
	for evtID, evt := range c.pending {
		dec, err := c.mach.DecryptMegolmEvent(ctxT(c.t), evt)
		if err != nil {
			c.lastErr[evtID] = err
			continue
		}
		delete(c.pending, evtID)
		delete(c.lastErr, evtID)
		if msg := dec.Content.AsMessage(); msg != nil {
			c.plain[evtID] = msg.Body
		}
	}
}

func (c *e2eeClient) syncUntil(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("%s gave up waiting for %s", c.cli.UserID, what)
		}
		c.syncOnce(1000)
	}
}

func (c *e2eeClient) joined(roomID id.RoomID, user id.UserID) func() bool {
	return func() bool { return c.cli.StateStore.IsInRoom(context.Background(), roomID, user) }
}

// waitPlain syncs until the event decrypts and returns its body.
func (c *e2eeClient) waitPlain(evtID id.EventID) string {
	c.t.Helper()
	c.syncUntil("decryption of "+string(evtID), func() bool { _, ok := c.plain[evtID]; return ok })
	return c.plain[evtID]
}

// send encrypts with the room's outbound Megolm session, sharing it first
// with every joined or invited member's devices when it is new (as
// cryptohelper does).
func (c *e2eeClient) send(roomID id.RoomID, text string) id.EventID {
	c.t.Helper()
	ctx := ctxT(c.t)
	content := &event.MessageEventContent{MsgType: event.MsgText, Body: text}
	enc, err := c.mach.EncryptMegolmEvent(ctx, roomID, event.EventMessage, content)
	if errors.Is(err, crypto.ErrSessionExpired) || errors.Is(err, crypto.ErrNoGroupSession) || errors.Is(err, crypto.ErrSessionNotShared) {
		users, merr := c.cli.StateStore.GetRoomJoinedOrInvitedMembers(ctx, roomID)
		if merr != nil {
			c.t.Fatal(merr)
		}
		if serr := c.mach.ShareGroupSession(ctx, roomID, users); serr != nil {
			c.t.Fatalf("%s shares the group session: %v", c.cli.UserID, serr)
		}
		enc, err = c.mach.EncryptMegolmEvent(ctx, roomID, event.EventMessage, content)
	}
	if err != nil {
		c.t.Fatalf("%s encrypts %q: %v", c.cli.UserID, text, err)
	}
	resp, err := c.cli.SendMessageEvent(ctx, roomID, event.EventEncrypted, enc)
	if err != nil {
		c.t.Fatalf("%s sends %q: %v", c.cli.UserID, text, err)
	}
	return resp.EventID
}

// createEncryptedRoom makes a private room with m.room.encryption in its
// initial state, inviting invitee.
func (c *e2eeClient) createEncryptedRoom(invitee id.UserID) id.RoomID {
	c.t.Helper()
	resp, err := c.cli.CreateRoom(ctxT(c.t), &mautrix.ReqCreateRoom{
		Preset: "private_chat",
		Invite: []id.UserID{invitee},
		InitialState: []*event.Event{{
			Type:    event.StateEncryption,
			Content: event.Content{Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}},
		}},
	})
	if err != nil {
		c.t.Fatalf("%s creates a room: %v", c.cli.UserID, err)
	}
	c.syncUntil("own join", c.joined(resp.RoomID, c.cli.UserID))
	return resp.RoomID
}

// joinInvited waits for the invite, then joins through the inviting server.
func (c *e2eeClient) joinInvited(roomID id.RoomID, via string) {
	c.t.Helper()
	c.syncUntil("the invite to "+string(roomID), func() bool {
		return c.cli.StateStore.IsMembership(context.Background(), roomID, c.cli.UserID, event.MembershipInvite)
	})
	if _, err := c.cli.JoinRoom(ctxT(c.t), string(roomID), &mautrix.ReqJoinRoom{Via: []string{via}}); err != nil {
		c.t.Fatalf("%s joins %s: %v", c.cli.UserID, roomID, err)
	}
	c.syncUntil("own join", c.joined(roomID, c.cli.UserID))
}

// knows says whether c's crypto store has dev, a device of user.
func (c *e2eeClient) knows(user id.UserID, dev id.DeviceID) func() bool {
	return func() bool {
		devs, err := c.mach.CryptoStore.GetDevices(ctxT(c.t), user)
		return err == nil && devs[dev] != nil
	}
}

// Megolm between a mautrix-go client on Conclave and one on Dendrite, in a
// room created on either side: the invitee joins, each side learns the
// other's devices over federation (/user/keys/query, /user/keys/claim),
// the room keys cross as to-device messages, and each reads what the other
// sends. Then each user adds a device: the other server hears of it
// (m.device_list_update), the other user's client encrypts for it, and it
// reads what is sent after it came.
func TestMegolmWithDendrite(t *testing.T) {
	p := startPair(t)
	cora := newE2EEClient(t, p.c, "cora")
	dan := newE2EEClient(t, p.d.Client, "dan")

	var shared id.RoomID
	for _, tc := range []struct {
		name             string
		creator, invitee *e2eeClient
		via              string
	}{
		{"room on Conclave", cora, dan, p.c.ServerName},
		{"room on Dendrite", dan, cora, p.d.Name},
	} {
		t.Run(tc.name, func(t *testing.T) {
			roomID := tc.creator.createEncryptedRoom(tc.invitee.cli.UserID)
			tc.invitee.joinInvited(roomID, tc.via)
			tc.creator.syncUntil("the invitee's join", tc.creator.joined(roomID, tc.invitee.cli.UserID))

			e1 := tc.creator.send(roomID, "secret from the creator")
			if got := tc.invitee.waitPlain(e1); got != "secret from the creator" {
				t.Fatalf("the invitee decrypted %q", got)
			}
			e2 := tc.invitee.send(roomID, "secret from the invitee")
			if got := tc.creator.waitPlain(e2); got != "secret from the invitee" {
				t.Fatalf("the creator decrypted %q", got)
			}
			shared = roomID
		})
	}
	if t.Failed() {
		return
	}

	// New devices, in the room created on Dendrite (the last one).
	for _, tc := range []struct {
		name         string
		s            *hstest.Server
		owner, other *e2eeClient
	}{
		{"new device on Dendrite", p.d.Client, dan, cora},
		{"new device on Conclave", p.c, cora, dan},
	} {
		t.Run(tc.name, func(t *testing.T) {
			second := loginE2EE(t, tc.s, tc.owner.cli.UserID.Localpart())
			second.syncOnce(0)
			tc.other.syncUntil("the new device "+string(second.cli.DeviceID), tc.other.knows(second.cli.UserID, second.cli.DeviceID))
			e := tc.other.send(shared, "after the new device")
			if got := second.waitPlain(e); got != "after the new device" {
				t.Fatalf("the new device decrypted %q", got)
			}
			if got := tc.owner.waitPlain(e); got != "after the new device" {
				t.Fatalf("the first device decrypted %q", got)
			}
			own := second.send(shared, "from the new device")
			if got := tc.other.waitPlain(own); got != "from the new device" {
				t.Fatalf("the other side decrypted %q", got)
			}
		})
	}
}
