package federationapi_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"conclave/internal/event"
	"conclave/internal/homeserver"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/tlsutil/tlstest"
)

func memberEvent(t *testing.T, server string, key *event.SigningKey, ts int64) *event.PDU {
	t.Helper()
	v, _ := event.GetRoomVersion("10")
	sender := "@a:" + server
	p := &event.Proto{Type: "m.room.member", StateKey: &sender, Sender: sender, RoomID: "!r:" + server, Content: json.RawMessage(`{"membership":"join"}`),
		PrevEvents: []string{"$p"}, AuthEvents: []string{"$a"}, Depth: 2, OriginServerTS: ts}
	pdu, err := p.Build(v, server, key)
	if err != nil {
		t.Fatal(err)
	}
	return pdu
}

// keyRules checks the rules Complement's TestInboundFederationKeys applies to
// GET /_matrix/key/v2/server, one subtest each, and returns the response.
func keyRules(t *testing.T, body []byte, serverName string) map[string]any {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(strings.NewReader(string(body)))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	t.Run("server_name", func(t *testing.T) {
		if m["server_name"] != serverName {
			t.Fatalf("server_name %v", m["server_name"])
		}
	})
	t.Run("valid_until_ts is a number in the future", func(t *testing.T) {
		n, ok := m["valid_until_ts"].(json.Number)
		v, err := n.Int64()
		if !ok || err != nil || v <= time.Now().UnixMilli() {
			t.Fatalf("valid_until_ts %v", m["valid_until_ts"])
		}
	})
	verify, _ := m["verify_keys"].(map[string]any)
	t.Run("verify_keys are ed25519 keys in unpadded base64", func(t *testing.T) {
		if len(verify) == 0 {
			t.Fatal("no verify_keys")
		}
		for id, v := range verify {
			k, _ := v.(map[string]any)["key"].(string)
			raw, err := base64.RawStdEncoding.DecodeString(k)
			if !strings.HasPrefix(id, "ed25519:") || err != nil || len(raw) != ed25519.PublicKeySize {
				t.Fatalf("verify key %s: %v", id, v)
			}
		}
	})
	t.Run("old_verify_keys have expired_ts and key", func(t *testing.T) {
		old, ok := m["old_verify_keys"].(map[string]any)
		if !ok {
			t.Fatalf("old_verify_keys %v", m["old_verify_keys"])
		}
		for id, v := range old {
			o, _ := v.(map[string]any)
			n, _ := o["expired_ts"].(json.Number)
			ts, err := n.Int64()
			k, _ := o["key"].(string)
			raw, kerr := base64.RawStdEncoding.DecodeString(k)
			if !strings.HasPrefix(id, "ed25519:") || err != nil || ts <= 0 || kerr != nil || len(raw) != ed25519.PublicKeySize {
				t.Fatalf("old verify key %s: %v", id, v)
			}
			if _, current := verify[id]; current {
				t.Fatalf("%s is both current and old", id)
			}
		}
	})
	t.Run("signed by exactly one server with every verify key", func(t *testing.T) {
		sigs, _ := m["signatures"].(map[string]any)
		mine, _ := sigs[serverName].(map[string]any)
		if len(sigs) != 1 || len(mine) != len(verify) {
			t.Fatalf("signatures %v", sigs)
		}
		for id, v := range verify {
			raw, _ := base64.RawStdEncoding.DecodeString(v.(map[string]any)["key"].(string))
			if err := event.VerifyJSON(body, serverName, id, raw); err != nil {
				t.Fatalf("signature by %s: %v", id, err)
			}
		}
	})
	return m
}

// conclave admin rotate-key's work: the new key signs, the old one is
// published in old_verify_keys and keeps verifying the events it signed,
// here and on another server that fetches the keys.
func TestRotatedKeyKeepsVerifyingOldEvents(t *testing.T) {
	ca := tlstest.NewCA(t, tlstest.ECSEC1)
	s := hstest.Start(t, withCA(ca), named("hs1"))
	c := fedClient(t, ca.Pool(), "hs1")
	_, body := fetch(t, c, "GET", s.FederationURL+"/_matrix/key/v2/server")
	if m := keyRules(t, body, "hs1"); len(m["old_verify_keys"].(map[string]any)) != 0 {
		t.Fatalf("old keys before any rotation: %s", body)
	}
	c.CloseIdleConnections()
	first := s.HS.SigningKey
	signedBefore := memberEvent(t, "hs1", first, time.Now().Add(-time.Minute).UnixMilli())
	cfg := s.Config
	s.Stop()

	before := time.Now().UnixMilli()
	old, fresh, err := homeserver.RotateSigningKey(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now().UnixMilli()
	if old.ID != first.ID || fresh.ID == first.ID {
		t.Fatalf("rotated %s → %s, server had %s", old.ID, fresh.ID, first.ID)
	}

	s = hstest.StartConfig(t, cfg)
	if s.HS.SigningKey.ID != fresh.ID || !s.HS.SigningKey.PublicKey().Equal(fresh.PublicKey()) {
		t.Fatalf("restarted with %s, want %s", s.HS.SigningKey.ID, fresh.ID)
	}
	c = fedClient(t, ca.Pool(), "hs1")
	_, body = fetch(t, c, "GET", s.FederationURL+"/_matrix/key/v2/server")
	m := keyRules(t, body, "hs1")
	if _, ok := m["verify_keys"].(map[string]any)[fresh.ID]; !ok || len(m["verify_keys"].(map[string]any)) != 1 {
		t.Fatalf("verify_keys %v", m["verify_keys"])
	}
	o, ok := m["old_verify_keys"].(map[string]any)[old.ID].(map[string]any)
	n, _ := o["expired_ts"].(json.Number)
	ts, _ := n.Int64()
	if !ok || o["key"] != old.PublicKeyBase64() || ts < before || ts > after {
		t.Fatalf("old_verify_keys %v (rotated between %d and %d)", m["old_verify_keys"], before, after)
	}

	// This server verifies its old event, not one dated after the rotation
	// with the old key; its new events verify with the new key.
	if err := s.HS.Keyring.VerifyEvent(t.Context(), signedBefore); err != nil {
		t.Fatalf("old event after rotation: %v", err)
	}
	if err := s.HS.Keyring.VerifyEvent(t.Context(), memberEvent(t, "hs1", first, after+60_000)); err == nil {
		t.Fatal("old key accepted for an event after its expiry")
	}
	if err := s.HS.Keyring.VerifyEvent(t.Context(), memberEvent(t, "hs1", fresh, after+60_000)); err != nil {
		t.Fatal(err)
	}

	// Another server learns the old key from /_matrix/key/v2/server.
	f := newKeyFetcher(t, ca)
	f.add("hs1", s.FederationURL)
	s2 := hstest.StartWith(t, homeserver.Options{KeyFetcher: f}, withCA(ca), named("hs2"))
	if err := s2.HS.Keyring.VerifyEvent(t.Context(), signedBefore); err != nil {
		t.Fatalf("hs2 verifying hs1's old event: %v", err)
	}
	if f.count("hs1") != 1 {
		t.Fatalf("%d fetches", f.count("hs1"))
	}

	// A second rotation keeps both old keys.
	c.CloseIdleConnections()
	s.Stop()
	if _, _, err := homeserver.RotateSigningKey(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	s = hstest.StartConfig(t, cfg)
	_, body = fetch(t, fedClient(t, ca.Pool(), "hs1"), "GET", s.FederationURL+"/_matrix/key/v2/server")
	m = keyRules(t, body, "hs1")
	if old := m["old_verify_keys"].(map[string]any); len(old) != 2 || old[first.ID] == nil || old[fresh.ID] == nil {
		t.Fatalf("old keys after two rotations: %v", old)
	}
	if err := s.HS.Keyring.VerifyEvent(t.Context(), signedBefore); err != nil {
		t.Fatal(err)
	}
}
