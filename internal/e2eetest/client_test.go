//go:build goolm

package e2eetest

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"conclave/internal/homeserver/hstest"
)

// waitLimit bounds every wait for something to arrive through /sync; it is a
// failure bound, not a timing assertion.
const waitLimit = 15 * time.Second

// client is one device of one user: a mautrix client with its own in-memory
// crypto store and state store, whose sync loop the test drives step by step.
// The glue between sync and the crypto machine is what mautrix's cryptohelper
// does, without its SQLite (cgo) dependency and without background goroutines.
type client struct {
	t     *testing.T
	cli   *mautrix.Client
	mach  *crypto.OlmMachine
	since string

	plain    map[id.EventID]string       // decrypted message bodies
	pending  map[id.EventID]*event.Event // encrypted events not yet decrypted
	lastErr  map[id.EventID]error        // last decryption failure per event
	toDevice []*event.Event              // to-device events other than crypto's own
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// password is what hstest.Register gives a user.
func password(localpart string) string { return "correct horse battery " + localpart }

// register makes a user through /register and sets up its first device.
func register(t *testing.T, s *hstest.Server, localpart string) *client {
	t.Helper()
	u := s.Register(t, localpart)
	return newClient(t, s, id.UserID(u.UserID), id.DeviceID(u.DeviceID), u.Token)
}

// login adds a device for an existing user through /login.
func login(t *testing.T, s *hstest.Server, localpart string) *client {
	t.Helper()
	cli, err := mautrix.NewClient(s.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Login(ctxT(t), &mautrix.ReqLogin{
		Type:       mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: localpart},
		Password:   password(localpart),
	})
	if err != nil {
		t.Fatalf("login %s: %v", localpart, err)
	}
	return newClient(t, s, resp.UserID, resp.DeviceID, resp.AccessToken)
}

func newClient(t *testing.T, s *hstest.Server, userID id.UserID, deviceID id.DeviceID, token string) *client {
	t.Helper()
	cli, err := mautrix.NewClient(s.URL, userID, token)
	if err != nil {
		t.Fatal(err)
	}
	cli.DeviceID = deviceID
	cli.Log = zerolog.New(io.Discard)
	if testing.Verbose() && os.Getenv("E2EE_TEST_LOG") != "" {
		cli.Log = zerolog.New(zerolog.NewTestWriter(t)).With().Str("device", string(deviceID)).Logger().Level(zerolog.DebugLevel)
	}
	states := mautrix.NewMemoryStateStore()
	cli.StateStore = states
	syncer := mautrix.NewDefaultSyncer()
	cli.Syncer = syncer

	c := &client{t: t, cli: cli, plain: map[id.EventID]string{}, pending: map[id.EventID]*event.Event{}, lastErr: map[id.EventID]error{}}
	log := cli.Log.With().Str("component", "crypto").Logger()
	c.mach = crypto.NewOlmMachine(cli, &log, crypto.NewMemoryStore(nil), states.(crypto.StateStore))
	if err := c.mach.Load(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := c.mach.ShareKeys(ctxT(t), -1); err != nil {
		t.Fatalf("upload keys for %s/%s: %v", userID, deviceID, err)
	}
	// Like any client at start-up, learn the user's own other devices (the
	// server will report later changes in device_lists.changed).
	if _, err := c.mach.FetchKeys(ctxT(t), []id.UserID{userID}, true); err != nil {
		t.Fatalf("query own keys: %v", err)
	}

	// Order matters: to-device (room keys) and device lists first, then the
	// state store sees each event before crypto's membership handler.
	syncer.OnSync(c.mach.ProcessSyncResponse)
	syncer.OnEvent(cli.StateStoreSyncHandler)
	syncer.OnEventType(event.StateMember, c.mach.HandleMemberEvent)
	syncer.OnEventType(event.StateHistoryVisibility, c.mach.HandleHistoryVisibility)
	syncer.OnEventType(event.EventEncrypted, func(_ context.Context, evt *event.Event) {
		c.pending[evt.ID] = evt
	})
	syncer.OnEvent(func(_ context.Context, evt *event.Event) {
		if evt.Mautrix.EventSource == event.SourceToDevice && strings.HasPrefix(evt.Type.Type, "org.conclave.") {
			c.toDevice = append(c.toDevice, evt)
		}
	})
	return c
}

// decryptPending tries every encrypted event not yet decrypted.
func (c *client) decryptPending() {
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

// syncOnce runs one /sync (long-polling up to timeoutMS) and hands the answer
// to the syncer, then moves the client's token on.
func (c *client) syncOnce(timeoutMS int) {
	c.t.Helper()
	resp, err := c.cli.SyncRequest(ctxT(c.t), timeoutMS, c.since, "", false, "")
	if err != nil {
		c.t.Fatalf("sync %s: %v", c.cli.DeviceID, err)
	}
	if err := c.cli.Syncer.ProcessResponse(ctxT(c.t), resp, c.since); err != nil {
		c.t.Fatalf("process sync: %v", err)
	}
	c.since = resp.NextBatch
	c.decryptPending()
}

// syncUntil syncs until cond holds.
func (c *client) syncUntil(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		c.syncOnce(0)
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s/%s: gave up waiting for %s", c.cli.UserID, c.cli.DeviceID, what)
		}
		c.syncOnce(300)
		if cond() {
			return
		}
	}
}

// waitPlain syncs until the event decrypts, and returns its body.
func (c *client) waitPlain(evtID id.EventID) string {
	c.t.Helper()
	var body string
	c.syncUntil("decryption of "+string(evtID), func() bool {
		b, ok := c.plain[evtID]
		body = b
		return ok
	})
	return body
}

func (c *client) joined(roomID id.RoomID, user id.UserID) func() bool {
	return func() bool {
		return c.cli.StateStore.IsInRoom(context.Background(), roomID, user)
	}
}

// send encrypts an m.text message with the room's outbound Megolm session,
// (re)sharing the session with every joined or invited member's devices first
// when it is new, expired or not yet shared, as cryptohelper does, and sends it.
func (c *client) send(roomID id.RoomID, text string) id.EventID {
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
			c.t.Fatalf("%s shares the group session: %v", c.cli.DeviceID, serr)
		}
		enc, err = c.mach.EncryptMegolmEvent(ctx, roomID, event.EventMessage, content)
	}
	if err != nil {
		c.t.Fatalf("%s encrypts %q: %v", c.cli.DeviceID, text, err)
	}
	resp, err := c.cli.SendMessageEvent(ctx, roomID, event.EventEncrypted, enc)
	if err != nil {
		c.t.Fatalf("%s sends %q: %v", c.cli.DeviceID, text, err)
	}
	return resp.EventID
}

// createEncryptedRoom creates a private room with m.room.encryption in its
// initial state and invites the given users.
func (c *client) createEncryptedRoom(invite ...id.UserID) id.RoomID {
	c.t.Helper()
	resp, err := c.cli.CreateRoom(ctxT(c.t), &mautrix.ReqCreateRoom{
		Preset: "private_chat",
		Invite: invite,
		InitialState: []*event.Event{{
			Type:    event.StateEncryption,
			Content: event.Content{Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}},
		}},
	})
	if err != nil {
		c.t.Fatalf("create room: %v", err)
	}
	c.syncUntil("own join", c.joined(resp.RoomID, c.cli.UserID))
	if ok, _ := c.cli.StateStore.IsEncrypted(context.Background(), resp.RoomID); !ok {
		c.t.Fatal("the new room is not encrypted in the client's view")
	}
	return resp.RoomID
}

func (c *client) join(roomID id.RoomID) {
	c.t.Helper()
	if _, err := c.cli.JoinRoomByID(ctxT(c.t), roomID); err != nil {
		c.t.Fatalf("%s joins: %v", c.cli.UserID, err)
	}
	c.syncUntil("own join", c.joined(roomID, c.cli.UserID))
}

// decryptFromHistory reads the event through /rooms/{id}/event and tries to
// decrypt it directly.
func (c *client) decryptFromHistory(roomID id.RoomID, evtID id.EventID) (string, error) {
	c.t.Helper()
	evt, err := c.cli.GetEvent(ctxT(c.t), roomID, evtID)
	if err != nil {
		c.t.Fatalf("get event: %v", err)
	}
	if err := evt.Content.ParseRaw(evt.Type); err != nil {
		c.t.Fatalf("parse: %v", err)
	}
	dec, err := c.mach.DecryptMegolmEvent(ctxT(c.t), evt)
	if err != nil {
		return "", err
	}
	return dec.Content.AsMessage().Body, nil
}
