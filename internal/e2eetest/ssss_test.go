//go:build goolm

package e2eetest

import (
	"testing"

	"maunium.net/go/mautrix/crypto/ssss"
	"maunium.net/go/mautrix/event"

	"conclave/internal/homeserver/hstest"
)

// Secret storage lives in account data (m.secret_storage.*): a key and a
// secret stored by one device are read back and decrypted by a fresh device
// of the same user, with mautrix's SSSS implementation.
func TestSecretStorageRoundTrip(t *testing.T) {
	s := hstest.Start(t)
	first := register(t, s, "alice")
	ctx := ctxT(t)
	m1 := ssss.NewSSSSMachine(first.cli)
	key, err := m1.GenerateAndUploadKey(ctx, "a long passphrase for the state")
	if err != nil {
		t.Fatal(err)
	}
	if err := m1.SetDefaultKeyID(ctx, key.ID); err != nil {
		t.Fatal(err)
	}
	secret := event.Type{Type: "m.cross_signing.master", Class: event.AccountDataEventType}
	if err := m1.SetEncryptedAccountData(ctx, secret, []byte("top secret seed"), key); err != nil {
		t.Fatal(err)
	}

	second := login(t, s, "alice")
	m2 := ssss.NewSSSSMachine(second.cli)
	keyID, keyData, err := m2.GetDefaultKeyData(ctx)
	if err != nil || keyID != key.ID {
		t.Fatalf("default key on the new device: %q %v", keyID, err)
	}
	recovered, err := keyData.VerifyPassphrase(keyID, "a long passphrase for the state")
	if err != nil {
		t.Fatalf("passphrase check: %v", err)
	}
	got, err := m2.GetDecryptedAccountData(ctx, secret, recovered)
	if err != nil || string(got) != "top secret seed" {
		t.Fatalf("secret on the new device: %q %v", got, err)
	}
}
