package clientapi_test

import (
	"testing"

	"conclave/internal/homeserver/hstest"
)

type csKeys struct {
	master, ssk, usk *signer
}

func csKey(t testing.TB, userID, usage string, k *signer, by *signer) map[string]any {
	obj := map[string]any{"user_id": userID, "usage": []string{usage}, "keys": map[string]any{"ed25519:" + k.pub: k.pub}}
	if by != nil {
		by.sign(t, obj, userID, "ed25519:"+by.pub)
	}
	return obj
}

func (c *csKeys) body(t testing.TB, userID string) map[string]any {
	return map[string]any{
		"master_key":       csKey(t, userID, "master", c.master, nil),
		"self_signing_key": csKey(t, userID, "self_signing", c.ssk, c.master),
		"user_signing_key": csKey(t, userID, "user_signing", c.usk, c.master),
	}
}

func newCS(t testing.TB) *csKeys { return &csKeys{newSigner(t), newSigner(t), newSigner(t)} }

func TestDeviceSigningUpload(t *testing.T) {
	s := hstest.Start(t)
	alice := newDevice(t, s.Register(t, "alice"))
	bob := newDevice(t, s.Register(t, "bob"))
	path := hstest.Path("/keys/device_signing/upload")
	cs := newCS(t)

	// Bad uploads first.
	b := cs.body(t, alice.UserID)
	b["self_signing_key"] = csKey(t, alice.UserID, "self_signing", cs.ssk, newSigner(t))
	expect(t, s.Do(t, "POST", path, alice.Token, b), 400, "M_INVALID_SIGNATURE")
	b = cs.body(t, alice.UserID)
	b["master_key"] = csKey(t, bob.UserID, "master", cs.master, nil)
	expect(t, s.Do(t, "POST", path, alice.Token, b), 400, "M_INVALID_PARAM")
	b = cs.body(t, alice.UserID)
	b["master_key"] = csKey(t, alice.UserID, "self_signing", cs.master, nil)
	expect(t, s.Do(t, "POST", path, alice.Token, b), 400, "M_INVALID_PARAM")
	expect(t, s.Do(t, "POST", path, alice.Token, map[string]any{"self_signing_key": csKey(t, alice.UserID, "self_signing", cs.ssk, cs.master)}), 400, "M_INVALID_SIGNATURE")
	expect(t, s.Do(t, "POST", path, alice.Token, map[string]any{}), 400, "M_MISSING_PARAM")
	expect(t, s.Do(t, "POST", path, alice.Token, map[string]any{"master_key": map[string]any{"user_id": alice.UserID}}), 400, "M_BAD_JSON")

	// First upload: no UIA needed; a repeat of the same keys neither.
	s.MustOK(t, "POST", path, alice.Token, cs.body(t, alice.UserID))
	s.MustOK(t, "POST", path, alice.Token, cs.body(t, alice.UserID))

	// Replacing needs the password.
	cs2 := newCS(t)
	r := s.Do(t, "POST", path, alice.Token, cs2.body(t, alice.UserID))
	expect(t, r, 401, "")
	if r.JSON["flows"] == nil || r.Str("session") == "" {
		t.Fatalf("no UIA challenge: %s", r.Body)
	}
	wrong := cs2.body(t, alice.UserID)
	wrong["auth"] = map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": "wrong", "session": r.Str("session")}
	expect(t, s.Do(t, "POST", path, alice.Token, wrong), 401, "M_FORBIDDEN")
	// Someone else's password does not do.
	other := cs2.body(t, alice.UserID)
	other["auth"] = map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "bob"}, "password": "correct horse battery bob", "session": r.Str("session")}
	expect(t, s.Do(t, "POST", path, alice.Token, other), 403, "M_FORBIDDEN")
	// The old keys are still in place.
	q := s.MustOK(t, "POST", hstest.Path("/keys/query"), alice.Token, map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}})
	if dig(q.JSON, "master_keys", alice.UserID, "keys", "ed25519:"+cs.master.pub) == nil {
		t.Fatalf("master key replaced without auth: %s", q.Body)
	}
	ok := cs2.body(t, alice.UserID)
	ok["auth"] = map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": "correct horse battery alice", "session": r.Str("session")}
	s.MustOK(t, "POST", path, alice.Token, ok)

	// Query: master and self-signing keys for everyone, user-signing for the owner only.
	q = s.MustOK(t, "POST", hstest.Path("/keys/query"), alice.Token, map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}})
	for _, f := range []string{"master_keys", "self_signing_keys", "user_signing_keys"} {
		if dig(q.JSON, f, alice.UserID) == nil {
			t.Fatalf("owner query lacks %s: %s", f, q.Body)
		}
	}
	if dig(q.JSON, "master_keys", alice.UserID, "keys", "ed25519:"+cs2.master.pub) == nil {
		t.Fatalf("master key not replaced: %s", q.Body)
	}
	q = s.MustOK(t, "POST", hstest.Path("/keys/query"), bob.Token, map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}})
	if dig(q.JSON, "master_keys", alice.UserID) == nil || dig(q.JSON, "self_signing_keys", alice.UserID) == nil || dig(q.JSON, "user_signing_keys", alice.UserID) != nil {
		t.Fatalf("bob's view of alice's cross-signing keys: %s", q.Body)
	}
}

func TestSignaturesUpload(t *testing.T) {
	s := hstest.Start(t)
	alice := newDevice(t, s.CreateUser(t, "alice"))
	bob := newDevice(t, s.CreateUser(t, "bob"))
	acs, bcs := newCS(t), newCS(t)
	for _, x := range []struct {
		d  *e2eDevice
		cs *csKeys
	}{{alice, acs}, {bob, bcs}} {
		expect(t, upload(t, s, x.d, map[string]any{"device_keys": x.d.deviceKeys(t)}), 200, "")
		s.MustOK(t, "POST", hstest.Path("/keys/device_signing/upload"), x.d.Token, x.cs.body(t, x.d.UserID))
	}
	path := hstest.Path("/keys/signatures/upload")

	// Alice's self-signing key signs her device; her device signs her master
	// key; her user-signing key signs Bob's master key.
	dev := acs.ssk.sign(t, alice.deviceKeys(t), alice.UserID, "ed25519:"+acs.ssk.pub)
	master := alice.ed.sign(t, csKey(t, alice.UserID, "master", acs.master, nil), alice.UserID, "ed25519:"+alice.DeviceID)
	bobMaster := acs.usk.sign(t, csKey(t, bob.UserID, "master", bcs.master, nil), alice.UserID, "ed25519:"+acs.usk.pub)
	r := s.MustOK(t, "POST", path, alice.Token, map[string]any{
		alice.UserID: map[string]any{alice.DeviceID: dev, acs.master.pub: master},
		bob.UserID:   map[string]any{bcs.master.pub: bobMaster},
	})
	if f, _ := r.JSON["failures"].(map[string]any); len(f) != 0 {
		t.Fatalf("failures: %s", r.Body)
	}
	q := s.MustOK(t, "POST", hstest.Path("/keys/query"), alice.Token, map[string]any{"device_keys": map[string]any{alice.UserID: []string{}, bob.UserID: []string{}}})
	if dig(q.JSON, "device_keys", alice.UserID, alice.DeviceID, "signatures", alice.UserID, "ed25519:"+acs.ssk.pub) == nil {
		t.Fatalf("self-signing signature not merged: %s", q.Body)
	}
	if dig(q.JSON, "device_keys", alice.UserID, alice.DeviceID, "signatures", alice.UserID, "ed25519:"+alice.DeviceID) == nil {
		t.Fatalf("device self-signature lost: %s", q.Body)
	}
	if dig(q.JSON, "master_keys", alice.UserID, "signatures", alice.UserID, "ed25519:"+alice.DeviceID) == nil {
		t.Fatalf("device signature on master key missing: %s", q.Body)
	}
	if dig(q.JSON, "master_keys", bob.UserID, "signatures", alice.UserID, "ed25519:"+acs.usk.pub) == nil {
		t.Fatalf("alice's user-signing signature on bob's master key missing for alice: %s", q.Body)
	}
	// Bob does not see Alice's signature on his key (only the signer does).
	q = s.MustOK(t, "POST", hstest.Path("/keys/query"), bob.Token, map[string]any{"device_keys": map[string]any{bob.UserID: []string{}}})
	if dig(q.JSON, "master_keys", bob.UserID, "signatures", alice.UserID) != nil {
		t.Fatalf("bob sees alice's user-signing signature: %s", q.Body)
	}

	// Failures are reported per key; the good entries still land.
	badDev := newSigner(t).sign(t, alice.deviceKeys(t), alice.UserID, "ed25519:"+acs.ssk.pub)
	tampered := acs.ssk.sign(t, alice.deviceKeys(t), alice.UserID, "ed25519:"+acs.ssk.pub)
	tampered["algorithms"] = []string{"x"}
	bobDev := acs.ssk.sign(t, bob.deviceKeys(t), alice.UserID, "ed25519:"+acs.ssk.pub)
	goodBob := bcs.ssk.sign(t, bob.deviceKeys(t), bob.UserID, "ed25519:"+bcs.ssk.pub)
	r = s.MustOK(t, "POST", path, alice.Token, map[string]any{
		alice.UserID:            map[string]any{alice.DeviceID: badDev, "NOSUCHDEVICE": badDev},
		bob.UserID:              map[string]any{bob.DeviceID: bobDev},
		"@carol:remote.example": map[string]any{"X": map[string]any{}},
	})
	if dig(r.JSON, "failures", alice.UserID, alice.DeviceID, "errcode") != "M_INVALID_SIGNATURE" ||
		dig(r.JSON, "failures", alice.UserID, "NOSUCHDEVICE", "errcode") != "M_NOT_FOUND" ||
		dig(r.JSON, "failures", bob.UserID, bob.DeviceID) == nil ||
		dig(r.JSON, "failures", "@carol:remote.example", "X") == nil {
		t.Fatalf("failures: %s", r.Body)
	}
	r = s.MustOK(t, "POST", path, alice.Token, map[string]any{alice.UserID: map[string]any{alice.DeviceID: tampered}})
	if dig(r.JSON, "failures", alice.UserID, alice.DeviceID, "errcode") != "M_INVALID_PARAM" {
		t.Fatalf("tampered object: %s", r.Body)
	}
	r = s.MustOK(t, "POST", path, bob.Token, map[string]any{bob.UserID: map[string]any{bob.DeviceID: goodBob}})
	if f, _ := r.JSON["failures"].(map[string]any); len(f) != 0 {
		t.Fatalf("bob's own signature failed: %s", r.Body)
	}
	expect(t, s.Do(t, "POST", path, alice.Token, map[string]any{alice.UserID: []string{}}), 400, "M_BAD_JSON")
}
