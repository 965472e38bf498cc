//go:build goolm

package clientapi_test

import (
	"context"
	"encoding/json"
	"io"
	"testing"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"conclave/internal/homeserver/hstest"
)

type noRooms struct{}

func (noRooms) IsEncrypted(context.Context, id.RoomID) (bool, error) { return false, nil }
func (noRooms) GetEncryptionEvent(context.Context, id.RoomID) (*event.EncryptionEventContent, error) {
	return nil, nil
}
func (noRooms) GetHistoryVisibility(context.Context, id.RoomID) (*event.HistoryVisibilityEventContent, error) {
	return nil, nil
}
func (noRooms) FindSharedRooms(context.Context, id.UserID) ([]id.RoomID, error) { return nil, nil }

func olmMachine(t *testing.T, s *hstest.Server, u *hstest.User) *crypto.OlmMachine {
	t.Helper()
	cli, err := mautrix.NewClient(s.URL, id.UserID(u.UserID), u.Token)
	if err != nil {
		t.Fatal(err)
	}
	cli.DeviceID = id.DeviceID(u.DeviceID)
	log := zerolog.New(io.Discard)
	if testing.Verbose() {
		log = zerolog.New(zerolog.NewTestWriter(t))
	}
	mach := crypto.NewOlmMachine(cli, &log, crypto.NewMemoryStore(nil), noRooms{})
	if err := mach.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return mach
}

// TestMautrixOlmMachine drives the server with mautrix-go's crypto (goolm):
// device and one-time key upload signed by a real Olm account, cross-signing
// publication and signatures, and an Olm-encrypted to-device message from
// Bob to Alice (key query, one-time key claim, sendToDevice) that Alice's
// machine decrypts from what the server hands to her /sync.
func TestMautrixOlmMachine(t *testing.T) {
	ctx := context.Background()
	s := hstest.Start(t)
	alice, bob := s.CreateUser(t, "alice"), s.CreateUser(t, "bob")
	am, bm := olmMachine(t, s, alice), olmMachine(t, s, bob)
	if err := am.ShareKeys(ctx, -1); err != nil {
		t.Fatalf("alice ShareKeys: %v", err)
	}
	if err := bm.ShareKeys(ctx, -1); err != nil {
		t.Fatalf("bob ShareKeys: %v", err)
	}
	counts, err := s.HS.Store.OneTimeKeyCounts(ctx, alice.UserID, alice.DeviceID)
	if err != nil || counts["signed_curve25519"] == 0 {
		t.Fatalf("alice's one-time keys: %v %v", counts, err)
	}

	// Cross-signing: publish (first upload, no UIA), sign own device and master key.
	cs, err := am.GenerateCrossSigningKeys()
	if err != nil {
		t.Fatal(err)
	}
	if err := am.PublishCrossSigningKeys(ctx, cs, nil); err != nil {
		t.Fatalf("publish cross-signing keys: %v", err)
	}
	am.CrossSigningKeys = cs
	if err := am.SignOwnDevice(ctx, am.OwnIdentity()); err != nil {
		t.Fatalf("sign own device: %v", err)
	}
	if err := am.SignOwnMasterKey(ctx); err != nil {
		t.Fatalf("sign own master key: %v", err)
	}

	// Bob fetches Alice's keys (mautrix checks the device signatures).
	devs, err := bm.FetchKeys(ctx, []id.UserID{id.UserID(alice.UserID)}, true)
	if err != nil {
		t.Fatal(err)
	}
	dev := devs[id.UserID(alice.UserID)][id.DeviceID(alice.DeviceID)]
	if dev == nil || dev.SigningKey != am.OwnIdentity().SigningKey {
		t.Fatalf("bob's view of alice's device: %+v", dev)
	}
	pub, err := bm.GetCrossSigningPublicKeys(ctx, id.UserID(alice.UserID))
	if err != nil || pub == nil || pub.MasterKey != cs.MasterKey.PublicKey() {
		t.Fatalf("alice's cross-signing keys as bob sees them: %+v %v", pub, err)
	}
	// Bob has not verified Alice, but her device must come with her
	// self-signing key's signature.
	if ok, err := bm.CryptoStore.IsKeySignedBy(ctx, id.UserID(alice.UserID), dev.SigningKey, id.UserID(alice.UserID), cs.SelfSigningKey.PublicKey()); err != nil || !ok {
		t.Fatalf("alice's device is not signed by her self-signing key: %v %v", ok, err)
	}

	// An Olm-encrypted to-device message, Bob to Alice.
	content := &event.Content{Raw: map[string]any{"secret": "hello alice"}}
	if err := bm.SendEncryptedToDevice(ctx, dev, event.Type{Type: "org.conclave.test", Class: event.ToDeviceEventType}, *content); err != nil {
		t.Fatalf("send encrypted: %v", err)
	}
	max, _ := s.HS.Store.MaxStreamPos(ctx)
	msgs, _, _, _, err := s.HS.Keys.SyncExtras(ctx, alice.UserID, alice.DeviceID, 0, max)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("alice's to-device: %d %v", len(msgs), err)
	}
	var evt event.Event
	if err := json.Unmarshal(msgs[0], &evt); err != nil {
		t.Fatal(err)
	}
	if err := evt.Content.ParseRaw(evt.Type); err != nil {
		t.Fatal(err)
	}
	evt.Type.Class = event.ToDeviceEventType
	dec := am.HandleEncryptedEvent(ctx, &evt)
	if dec == nil {
		t.Fatal("alice could not decrypt bob's message")
	}
	if dec.Content.Raw["secret"] != "hello alice" {
		t.Fatalf("decrypted: %+v", dec.Content.Raw)
	}
	// The claimed key is gone.
	after, _ := s.HS.Store.OneTimeKeyCounts(ctx, alice.UserID, alice.DeviceID)
	if after["signed_curve25519"] != counts["signed_curve25519"]-1 {
		t.Fatalf("one-time keys %d -> %d", counts["signed_curve25519"], after["signed_curve25519"])
	}
}
