package clientapi_test

import (
	"testing"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
)

func TestPrivateRoomsAreEncryptedByDefault(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	for preset, want := range map[string]bool{"private_chat": true, "trusted_private_chat": true, "public_chat": false} {
		roomID := createRoom(t, s, alice, map[string]any{"preset": preset})
		r := s.Do(t, "GET", hstest.Path("/rooms/%s/state/m.room.encryption/", roomID), alice.Token, nil)
		if got := r.Status == 200 && r.Str("algorithm") == "m.megolm.v1.aes-sha2"; got != want {
			t.Errorf("%s: encrypted=%v, want %v (%d %s)", preset, got, want, r.Status, r.Body)
		}
	}
	// A client's own choice in initial_state wins.
	roomID := createRoom(t, s, alice, map[string]any{"preset": "private_chat", "initial_state": []map[string]any{
		{"type": "m.room.encryption", "state_key": "", "content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2", "rotation_period_ms": 1000}}}})
	r := s.MustOK(t, "GET", hstest.Path("/rooms/%s/state/m.room.encryption/", roomID), alice.Token, nil)
	if _, ok := r.JSON["rotation_period_ms"]; !ok {
		t.Fatalf("initial_state encryption replaced: %s", r.Body)
	}
	// Without require_encryption the room admin may still change it.
	s.MustOK(t, "PUT", hstest.Path("/rooms/%s/state/m.room.encryption/", roomID), alice.Token, map[string]any{})
}

func TestRequireEncryption(t *testing.T) {
	s := hstest.Start(t, func(c *config.Config) { c.RequireEncryption = true; c.EncryptPresets = "" })
	alice := s.CreateUser(t, "alice")
	if r := s.Do(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "private_chat"}); r.Status != 403 || r.Errcode() != "M_FORBIDDEN" {
		t.Fatalf("unencrypted private room: %d %s", r.Status, r.Body)
	}
	createRoom(t, s, alice, map[string]any{"preset": "public_chat"}) // public rooms need no encryption
	roomID := createRoom(t, s, alice, map[string]any{"preset": "private_chat", "initial_state": []map[string]any{
		{"type": "m.room.encryption", "state_key": "", "content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}}}})
	path := hstest.Path("/rooms/%s/state/m.room.encryption/", roomID)
	for _, body := range []any{map[string]any{}, map[string]any{"algorithm": "m.olm.v1.curve25519-aes-sha2"}} {
		if r := s.Do(t, "PUT", path, alice.Token, body); r.Status != 403 {
			t.Errorf("weakening encryption with %v: %d %s", body, r.Status, r.Body)
		}
	}
	r := s.MustOK(t, "GET", path, alice.Token, nil)
	if r.Str("algorithm") != "m.megolm.v1.aes-sha2" {
		t.Fatalf("encryption changed: %s", r.Body)
	}
}
