//go:build goolm

package e2eetest

import (
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"conclave/internal/homeserver/hstest"
)

// E2EE across two federating Conclave servers: device lists, key queries
// and claims, and to-device messages (the Olm-encrypted room keys) cross
// from one server to the other.

func (c *client) joinVia(roomID id.RoomID, via string) {
	c.t.Helper()
	if _, err := c.cli.JoinRoom(ctxT(c.t), string(roomID), &mautrix.ReqJoinRoom{Via: []string{via}}); err != nil {
		c.t.Fatalf("%s joins via %s: %v", c.cli.UserID, via, err)
	}
	c.syncUntil("own join", c.joined(roomID, c.cli.UserID))
}

// Alice on server A and Bob on server B exchange Megolm messages both ways;
// Bob then logs in on a second device, which Alice learns of through
// device_lists and an m.device_list_update: she encrypts for it, and it
// can read what is sent after it joined and write what she can read.
func TestMegolmAcrossServers(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice, bob := register(t, a, "alice"), register(t, b, "bob")
	roomID := alice.createEncryptedRoom(bob.cli.UserID)
	bob.joinVia(roomID, a.ServerName)
	alice.syncUntil("bob's join", alice.joined(roomID, bob.cli.UserID))

	e1 := alice.send(roomID, "hello bob, from A")
	if got := bob.waitPlain(e1); got != "hello bob, from A" {
		t.Fatalf("bob decrypted %q", got)
	}
	e2 := bob.send(roomID, "hello alice, from B")
	if got := alice.waitPlain(e2); got != "hello alice, from B" {
		t.Fatalf("alice decrypted %q", got)
	}

	bob2 := login(t, b, "bob")
	bob2.syncOnce(0)
	alice.syncUntil("bob's second device", func() bool {
		devs, err := alice.mach.CryptoStore.GetDevices(ctxT(t), bob.cli.UserID)
		return err == nil && devs[bob2.cli.DeviceID] != nil
	})
	after := alice.send(roomID, "after bob's second device")
	if got := bob2.waitPlain(after); got != "after bob's second device" {
		t.Fatalf("bob's second device decrypted %q", got)
	}
	if got := bob.waitPlain(after); got != "after bob's second device" {
		t.Fatalf("bob's first device decrypted %q", got)
	}
	own := bob2.send(roomID, "from bob's second device")
	if got := alice.waitPlain(own); got != "from bob's second device" {
		t.Fatalf("alice decrypted %q", got)
	}
	if _, err := bob2.decryptFromHistory(roomID, e1); err == nil {
		t.Fatal("the new device decrypted a message sent before it existed")
	}
}

// Alice on server A bootstraps cross-signing and signs her device; Bob on
// server B sees her master and self-signing keys (never her user-signing
// key) and her device's self-signature, and after signing her master key
// trusts her device.
func TestCrossSigningAcrossServers(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice, bob := register(t, a, "alice"), register(t, b, "bob")
	roomID := alice.createEncryptedRoom(bob.cli.UserID)
	bob.joinVia(roomID, a.ServerName)
	alice.syncUntil("bob's join", alice.joined(roomID, bob.cli.UserID))
	// Bob's client learns Alice's devices (and his server caches her list).
	bob.syncUntil("alice's device", func() bool {
		d, err := bob.mach.GetOrFetchDevice(ctxT(t), alice.cli.UserID, alice.cli.DeviceID)
		return err == nil && d != nil
	})

	uia := func(localpart string) mautrix.UIACallback {
		return func(r *mautrix.RespUserInteractive) any {
			return map[string]any{
				"type": "m.login.password", "session": r.Session, "password": password(localpart),
				"identifier": map[string]any{"type": "m.id.user", "user": localpart},
			}
		}
	}
	_, aliceKeys, err := alice.mach.GenerateAndUploadCrossSigningKeys(ctxT(t), uia("alice"), "")
	if err != nil {
		t.Fatalf("alice bootstraps cross-signing: %v", err)
	}
	alice.mach.CrossSigningKeys = aliceKeys
	if err := alice.mach.SignOwnDevice(ctxT(t), alice.mach.OwnIdentity()); err != nil {
		t.Fatal(err)
	}
	if err := alice.mach.SignOwnMasterKey(ctxT(t)); err != nil {
		t.Fatal(err)
	}

	aliceDev, err := bob.mach.GetOrFetchDevice(ctxT(t), alice.cli.UserID, alice.cli.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	bob.syncUntil("alice's cross-signing keys and device signature", func() bool {
		pub, err := bob.mach.GetCrossSigningPublicKeys(ctxT(t), alice.cli.UserID)
		if err != nil || pub == nil || pub.MasterKey != aliceKeys.MasterKey.PublicKey() || pub.SelfSigningKey != aliceKeys.SelfSigningKey.PublicKey() {
			return false
		}
		ok, err := bob.mach.CryptoStore.IsKeySignedBy(ctxT(t), alice.cli.UserID, aliceDev.SigningKey, alice.cli.UserID, pub.SelfSigningKey)
		return err == nil && ok
	})
	r := b.MustOK(t, "POST", "/_matrix/client/v3/keys/query", bob.cli.AccessToken, map[string]any{"device_keys": map[string]any{string(alice.cli.UserID): []string{}}})
	if m, _ := r.JSON["user_signing_keys"].(map[string]any); len(m) != 0 {
		t.Fatalf("alice's user-signing key crossed servers: %s", r.Body)
	}
	// What A serves other servers: master and self-signing keys, never the
	// user-signing key.
	usk := aliceKeys.UserSigningKey.PublicKey().String()
	raw, err := b.HS.FedClient.QueryKeys(ctxT(t), a.ServerName, map[string][]string{string(alice.cli.UserID): {}})
	if err != nil || !strings.Contains(string(raw), aliceKeys.MasterKey.PublicKey().String()) || strings.Contains(string(raw), usk) {
		t.Fatalf("/user/keys/query: %s %v", raw, err)
	}
	raw, err = b.HS.FedClient.UserDevices(ctxT(t), a.ServerName, string(alice.cli.UserID))
	if err != nil || !strings.Contains(string(raw), aliceKeys.SelfSigningKey.PublicKey().String()) || strings.Contains(string(raw), usk) {
		t.Fatalf("/user/devices: %s %v", raw, err)
	}

	_, bobKeys, err := bob.mach.GenerateAndUploadCrossSigningKeys(ctxT(t), uia("bob"), "")
	if err != nil {
		t.Fatalf("bob bootstraps cross-signing: %v", err)
	}
	bob.mach.CrossSigningKeys = bobKeys
	if err := bob.mach.SignOwnMasterKey(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := bob.mach.SignUser(ctxT(t), alice.cli.UserID, aliceKeys.MasterKey.PublicKey()); err != nil {
		t.Fatalf("bob signs alice: %v", err)
	}
	if ok, err := bob.mach.IsUserTrusted(ctxT(t), alice.cli.UserID); err != nil || !ok {
		t.Fatalf("bob does not trust alice after signing her: %v %v", ok, err)
	}
	if trust := bob.mach.ResolveTrust(aliceDev); trust != id.TrustStateCrossSignedVerified {
		t.Fatalf("alice's device in bob's view after verification: %s", trust)
	}
	// Alice sees Bob's cross-signing keys too.
	alice.syncUntil("bob's cross-signing keys", func() bool {
		p, err := alice.mach.GetCrossSigningPublicKeys(ctxT(t), bob.cli.UserID)
		return err == nil && p != nil && p.MasterKey == bobKeys.MasterKey.PublicKey()
	})
}

// Key backup for a room shared across servers: Alice on A backs up the
// session of a message Bob sent from B; her fresh device restores it and
// reads the message.
func TestKeyBackupRestoreAcrossServers(t *testing.T) {
	hs := hstest.StartFederation(t, 2)
	a, b := hs[0], hs[1]
	alice, bob := register(t, a, "alice"), register(t, b, "bob")
	roomID := alice.createEncryptedRoom(bob.cli.UserID)
	bob.joinVia(roomID, a.ServerName)
	alice.syncUntil("bob's join", alice.joined(roomID, bob.cli.UserID))
	old := bob.send(roomID, "remember me, from B")
	if got := alice.waitPlain(old); got != "remember me, from B" {
		t.Fatalf("alice decrypted %q", got)
	}
	key, _, created := backUpSession(t, alice, roomID, old)

	alice2 := login(t, a, "alice")
	alice2.syncOnce(0)
	if _, err := alice2.decryptFromHistory(roomID, old); err == nil {
		t.Fatal("the fresh device decrypted the old message without the backup")
	}
	version, err := alice2.mach.DownloadAndStoreLatestKeyBackup(ctxT(t), key)
	if err != nil || version != created.Version {
		t.Fatalf("restore: %q %v", version, err)
	}
	if got, err := alice2.decryptFromHistory(roomID, old); err != nil || got != "remember me, from B" {
		t.Fatalf("after restore: %q %v", got, err)
	}
	// Bob (on B) reads what the restored device sends.
	e := alice2.send(roomID, "restored on A")
	if got := bob.waitPlain(e); got != "restored on A" {
		t.Fatalf("bob decrypted %q", got)
	}
}
