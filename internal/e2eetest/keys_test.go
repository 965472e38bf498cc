//go:build goolm

package e2eetest

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/backup"
	"maunium.net/go/mautrix/crypto/signatures"
	"maunium.net/go/mautrix/id"

	"conclave/internal/homeserver/hstest"
)

// A custom to-device event reaches the target device exactly once, even when
// the sender retries its transaction; it is handed out again to a client that
// did not acknowledge it (synced again from the same token), and never after
// the client synced past it.
func TestCustomToDeviceExactlyOnce(t *testing.T) {
	s := hstest.Start(t)
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	alice.syncOnce(0)
	start := alice.since

	send := func(txn string, target string, n int) {
		t.Helper()
		body := map[string]any{"messages": map[string]any{string(alice.cli.UserID): map[string]any{target: map[string]any{"n": n}}}}
		s.MustOK(t, "PUT", hstest.Path("/sendToDevice/%s/%s", "org.conclave.ping", txn), bob.cli.AccessToken, body)
	}
	send("t1", string(alice.cli.DeviceID), 1)
	send("t1", string(alice.cli.DeviceID), 1) // retried transaction: no second copy
	send("t2", "*", 2)

	pings := func(resp *mautrix.RespSync) []float64 {
		var out []float64
		for _, e := range resp.ToDevice.Events {
			if e.Type.Type == "org.conclave.ping" {
				if e.Sender != bob.cli.UserID {
					t.Fatalf("sender %s", e.Sender)
				}
				out = append(out, e.Content.Raw["n"].(float64))
			}
		}
		return out
	}
	// Not acknowledged: the same two, in order, every time from the old token.
	var next string
	for i := 0; i < 2; i++ {
		resp, err := alice.cli.SyncRequest(ctxT(t), 0, start, "", false, "")
		if err != nil {
			t.Fatal(err)
		}
		if got := pings(resp); len(got) != 2 || got[0] != 1 || got[1] != 2 {
			t.Fatalf("sync %d from %s: pings %v", i, start, got)
		}
		next = resp.NextBatch
	}
	// Acknowledged by syncing from the token that delivered them: gone.
	resp, err := alice.cli.SyncRequest(ctxT(t), 0, next, "", false, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := pings(resp); len(got) != 0 {
		t.Fatalf("after acknowledgement: %v", got)
	}
	// ...even from the old token now.
	resp, err = alice.cli.SyncRequest(ctxT(t), 0, start, "", false, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := pings(resp); len(got) != 0 {
		t.Fatalf("old token after acknowledgement: %v", got)
	}

	// Through the client's own sync loop: exactly one event per send.
	send("t3", string(alice.cli.DeviceID), 3)
	alice.syncUntil("ping 3", func() bool { return len(alice.toDevice) > 0 })
	alice.syncOnce(0)
	alice.syncOnce(0)
	if len(alice.toDevice) != 1 || alice.toDevice[0].Content.Raw["n"].(float64) != 3 {
		t.Fatalf("client saw %d to-device events: %+v", len(alice.toDevice), alice.toDevice)
	}

	// A second device of Alice's gets the * message, the first does not get a
	// copy addressed only to the second.
	alice2 := login(t, s, "alice")
	alice2.syncOnce(0)
	send("t4", "*", 4)
	send("t5", string(alice2.cli.DeviceID), 5)
	alice2.syncUntil("pings 4 and 5", func() bool { return len(alice2.toDevice) >= 2 })
	alice.syncUntil("ping 4", func() bool { return len(alice.toDevice) >= 2 })
	alice.syncOnce(0)
	alice2.syncOnce(0)
	if len(alice2.toDevice) != 2 || len(alice.toDevice) != 2 || alice.toDevice[1].Content.Raw["n"].(float64) != 4 {
		t.Fatalf("device 1: %d, device 2: %d", len(alice.toDevice), len(alice2.toDevice))
	}
}

// Cross-signing: Alice bootstraps cross-signing (keys in secret storage,
// published with password UIA) and signs her device; Bob, who shares a room
// with her, learns of the change through device_lists and sees her keys and
// her device's self-signature; Bob signs Alice's master key with his
// user-signing key and then trusts her device. Alice's second device recovers
// the private keys from secret storage (account data) with the recovery key.
func TestCrossSigningSeenByOtherUser(t *testing.T) {
	s := hstest.Start(t)
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	roomID := alice.createEncryptedRoom(bob.cli.UserID)
	bob.join(roomID)
	alice.syncOnce(0)
	bob.syncOnce(0)

	uia := func(localpart string) mautrix.UIACallback {
		return func(r *mautrix.RespUserInteractive) any {
			return map[string]any{
				"type": "m.login.password", "session": r.Session, "password": password(localpart),
				"identifier": map[string]any{"type": "m.id.user", "user": localpart},
			}
		}
	}
	recoveryKey, aliceKeys, err := alice.mach.GenerateAndUploadCrossSigningKeys(ctxT(t), uia("alice"), "")
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

	bob.syncUntil("alice's cross-signing keys", func() bool {
		pub, err := bob.mach.GetCrossSigningPublicKeys(ctxT(t), alice.cli.UserID)
		return err == nil && pub != nil && pub.MasterKey == aliceKeys.MasterKey.PublicKey()
	})
	pub, _ := bob.mach.GetCrossSigningPublicKeys(ctxT(t), alice.cli.UserID)
	if pub.SelfSigningKey != aliceKeys.SelfSigningKey.PublicKey() || pub.UserSigningKey != "" && pub.UserSigningKey != aliceKeys.UserSigningKey.PublicKey() {
		t.Fatalf("bob's view of alice's keys: %+v", pub)
	}
	aliceDev, err := bob.mach.GetOrFetchDevice(ctxT(t), alice.cli.UserID, alice.cli.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := bob.mach.CryptoStore.IsKeySignedBy(ctxT(t), alice.cli.UserID, aliceDev.SigningKey, alice.cli.UserID, pub.SelfSigningKey); err != nil || !ok {
		t.Fatalf("alice's device not self-signed in bob's view: %v %v", ok, err)
	}
	if trust := bob.mach.ResolveTrust(aliceDev); trust != id.TrustStateCrossSignedTOFU && trust != id.TrustStateCrossSignedUntrusted {
		t.Fatalf("trust before verification: %s", trust)
	}

	// Bob verifies Alice: his own cross-signing keys, then a signature on her master key.
	_, bobKeys, err := bob.mach.GenerateAndUploadCrossSigningKeys(ctxT(t), uia("bob"), "")
	if err != nil {
		t.Fatalf("bob bootstraps cross-signing: %v", err)
	}
	bob.mach.CrossSigningKeys = bobKeys
	if err := bob.mach.SignOwnMasterKey(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := bob.mach.SignUser(ctxT(t), alice.cli.UserID, pub.MasterKey); err != nil {
		t.Fatalf("bob signs alice: %v", err)
	}
	// Refetch from the server: the signature must come back in /keys/query.
	if _, err := bob.mach.FetchKeys(ctxT(t), []id.UserID{alice.cli.UserID}, true); err != nil {
		t.Fatal(err)
	}
	if ok, err := bob.mach.IsUserTrusted(ctxT(t), alice.cli.UserID); err != nil || !ok {
		t.Fatalf("bob does not trust alice after signing her: %v %v", ok, err)
	}
	if trust := bob.mach.ResolveTrust(aliceDev); trust != id.TrustStateCrossSignedVerified {
		t.Fatalf("alice's device in bob's view after verification: %s", trust)
	}
	// Alice sees Bob's keys too (they share a room).
	alice.syncUntil("bob's cross-signing keys", func() bool {
		p, err := alice.mach.GetCrossSigningPublicKeys(ctxT(t), bob.cli.UserID)
		return err == nil && p != nil && p.MasterKey == bobKeys.MasterKey.PublicKey()
	})

	// A new device of Alice's restores the private keys from secret storage
	// and cross-signs itself; Bob then trusts that device as well.
	alice2 := login(t, s, "alice")
	if err := alice2.mach.VerifyWithRecoveryKey(ctxT(t), recoveryKey); err != nil {
		t.Fatalf("recover cross-signing keys from secret storage: %v", err)
	}
	bob.syncUntil("alice's second device", func() bool {
		d, err := bob.mach.CryptoStore.GetDevice(ctxT(t), alice.cli.UserID, alice2.cli.DeviceID)
		return err == nil && d != nil && bob.mach.ResolveTrust(d) == id.TrustStateCrossSignedVerified
	})
}

// Server-side key backup: Alice backs up the Megolm session of a message Bob
// sent; a fresh device of Alice's, which never received that key, restores
// it from the backup and decrypts the old message.
func TestKeyBackupRestore(t *testing.T) {
	s := hstest.Start(t)
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	roomID := alice.createEncryptedRoom(bob.cli.UserID)
	bob.join(roomID)
	alice.syncUntil("bob's join", alice.joined(roomID, bob.cli.UserID))
	old := bob.send(roomID, "remember me")
	if got := alice.waitPlain(old); got != "remember me" {
		t.Fatalf("alice decrypted %q", got)
	}

	key, auth, created := backUpSession(t, alice, roomID, old)

	// A fresh device cannot read the old message...
	alice2 := login(t, s, "alice")
	alice2.syncOnce(0)
	if _, err := alice2.decryptFromHistory(roomID, old); err == nil {
		t.Fatal("the fresh device decrypted the old message without the backup")
	}
	// ...until it restores the backup (trusted through the backup key it holds).
	version, err := alice2.mach.DownloadAndStoreLatestKeyBackup(ctxT(t), key)
	if err != nil || version != created.Version {
		t.Fatalf("restore: %q %v", version, err)
	}
	if got, err := alice2.decryptFromHistory(roomID, old); err != nil || got != "remember me" {
		t.Fatalf("after restore: %q %v", got, err)
	}

	// Once a newer version exists, writes to the old one are refused with
	// M_WRONG_ROOM_KEYS_VERSION, so a client notices the backup changed.
	if _, err := alice2.cli.CreateKeyBackupVersion(ctxT(t), &mautrix.ReqRoomKeysVersionCreate[backup.MegolmAuthData]{Algorithm: id.KeyBackupAlgorithmMegolmBackupV1, AuthData: auth}); err != nil {
		t.Fatal(err)
	}
	r := s.Do(t, "PUT", "/_matrix/client/v3/room_keys/keys?version="+string(created.Version), alice2.cli.AccessToken, map[string]any{"rooms": map[string]any{}})
	if r.Status != http.StatusForbidden || r.Errcode() != "M_WRONG_ROOM_KEYS_VERSION" {
		t.Fatalf("stale version: %d %s", r.Status, r.Body)
	}
}

// backUpSession creates a backup version signed by c's device and backs up
// the Megolm session of evt (which c can decrypt) in it.
func backUpSession(t *testing.T, alice *client, roomID id.RoomID, old id.EventID) (*backup.MegolmBackupKey, backup.MegolmAuthData, *mautrix.RespRoomKeysVersionCreate) {
	t.Helper()
	// Create a backup version signed by Alice's device.
	key, err := backup.NewMegolmBackupKey()
	if err != nil {
		t.Fatal(err)
	}
	auth := backup.MegolmAuthData{PublicKey: id.Ed25519(base64.RawStdEncoding.EncodeToString(key.PublicKey().Bytes()))}
	sig, err := alice.mach.GetAccount().SignJSON(auth)
	if err != nil {
		t.Fatal(err)
	}
	auth.Signatures = signatures.NewSingleSignature(alice.cli.UserID, id.KeyAlgorithmEd25519, string(alice.cli.DeviceID), sig)
	created, err := alice.cli.CreateKeyBackupVersion(ctxT(t), &mautrix.ReqRoomKeysVersionCreate[backup.MegolmAuthData]{Algorithm: id.KeyBackupAlgorithmMegolmBackupV1, AuthData: auth})
	if err != nil {
		t.Fatalf("create backup version: %v", err)
	}

	// Back up the session of Bob's message.
	raw, err := alice.cli.GetEvent(ctxT(t), roomID, old)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Content.ParseRaw(raw.Type); err != nil {
		t.Fatal(err)
	}
	sessionID := raw.Content.AsEncrypted().SessionID
	igs, err := alice.mach.CryptoStore.GetGroupSession(ctxT(t), roomID, sessionID)
	if err != nil || igs == nil {
		t.Fatalf("alice's inbound session: %v %v", igs, err)
	}
	first := igs.Internal.FirstKnownIndex()
	exported, err := igs.Internal.Export(first)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := backup.EncryptSessionData(key, backup.MegolmSessionData{
		Algorithm: id.AlgorithmMegolmV1, ForwardingKeyChain: []string{}, SenderKey: igs.SenderKey,
		SenderClaimedKeys: backup.SenderClaimedKeys{Ed25519: igs.SigningKey}, SessionKey: string(exported),
	})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(enc)
	put, err := alice.cli.PutKeysInBackup(ctxT(t), created.Version, &mautrix.ReqKeyBackup{Rooms: map[id.RoomID]mautrix.ReqRoomKeyBackup{
		roomID: {Sessions: map[id.SessionID]mautrix.ReqKeyBackupData{
			sessionID: {FirstMessageIndex: int(first), ForwardedCount: 0, IsVerified: true, SessionData: data},
		}},
	}})
	if err != nil || put.Count != 1 || put.ETag == "" {
		t.Fatalf("put keys: %+v %v", put, err)
	}

	return key, auth, created
}
