package clientapi_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"conclave/internal/homeserver/hstest"
	"conclave/internal/keys"
)

// --- signing helpers: real ed25519 keys and canonical JSON ------------------

type signer struct {
	pub  string
	priv ed25519.PrivateKey
}

func newSigner(t testing.TB) *signer {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{pub: base64.RawStdEncoding.EncodeToString(pub), priv: priv}
}

// sign adds signatures[userID][keyID] over obj's canonical form.
func (sg *signer) sign(t testing.TB, obj map[string]any, userID, keyID string) map[string]any {
	t.Helper()
	c := map[string]any{}
	for k, v := range obj {
		if k != "signatures" && k != "unsigned" {
			c[k] = v
		}
	}
	raw, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	canon, err := keys.Canonical(raw)
	if err != nil {
		t.Fatal(err)
	}
	sig := base64.RawStdEncoding.EncodeToString(ed25519.Sign(sg.priv, canon))
	sigs, _ := obj["signatures"].(map[string]any)
	if sigs == nil {
		sigs = map[string]any{}
	}
	us, _ := sigs[userID].(map[string]any)
	if us == nil {
		us = map[string]any{}
	}
	us[keyID] = sig
	sigs[userID] = us
	obj["signatures"] = sigs
	return obj
}

type e2eDevice struct {
	*hstest.User
	ed    *signer
	curve string
}

func newDevice(t testing.TB, u *hstest.User) *e2eDevice {
	c := make([]byte, 32)
	rand.Read(c)
	return &e2eDevice{User: u, ed: newSigner(t), curve: base64.RawStdEncoding.EncodeToString(c)}
}

func (d *e2eDevice) deviceKeys(t testing.TB) map[string]any {
	obj := map[string]any{
		"user_id":    d.UserID,
		"device_id":  d.DeviceID,
		"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
		"keys": map[string]any{
			"ed25519:" + d.DeviceID:    d.ed.pub,
			"curve25519:" + d.DeviceID: d.curve,
		},
	}
	return d.ed.sign(t, obj, d.UserID, "ed25519:"+d.DeviceID)
}

func (d *e2eDevice) otk(t testing.TB, id string, fallback bool) map[string]any {
	k := make([]byte, 32)
	rand.Read(k)
	obj := map[string]any{"key": base64.RawStdEncoding.EncodeToString(k)}
	if fallback {
		obj["fallback"] = true
	}
	return d.ed.sign(t, obj, d.UserID, "ed25519:"+d.DeviceID)
}

func (d *e2eDevice) otks(t testing.TB, prefix string, n int) map[string]any {
	m := map[string]any{}
	for i := 0; i < n; i++ {
		m[fmt.Sprintf("signed_curve25519:%s%d", prefix, i)] = d.otk(t, "", false)
	}
	return m
}

func expect(t testing.TB, r *hstest.Response, status int, errcode string) {
	t.Helper()
	if r.Status != status || (errcode != "" && r.Errcode() != errcode) {
		t.Fatalf("want %d %s, got %d %s", status, errcode, r.Status, r.Body)
	}
}

func upload(t testing.TB, s *hstest.Server, d *e2eDevice, body map[string]any) *hstest.Response {
	t.Helper()
	return s.Do(t, "POST", hstest.Path("/keys/upload"), d.Token, body)
}

func count(r *hstest.Response, alg string) int {
	c, _ := r.JSON["one_time_key_counts"].(map[string]any)
	n, _ := c[alg].(float64)
	return int(n)
}

func dig(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// --- /keys/upload -----------------------------------------------------------

func TestKeysUpload(t *testing.T) {
	s := hstest.Start(t)
	alice := newDevice(t, s.CreateUser(t, "alice"))
	bob := newDevice(t, s.CreateUser(t, "bob"))

	r := upload(t, s, alice, map[string]any{"device_keys": alice.deviceKeys(t), "one_time_keys": alice.otks(t, "A", 3)})
	expect(t, r, 200, "")
	if count(r, "signed_curve25519") != 3 {
		t.Fatalf("counts: %s", r.Body)
	}
	// An empty upload reports counts, with signed_curve25519 always present.
	r = upload(t, s, bob, map[string]any{})
	expect(t, r, 200, "")
	if c, ok := dig(r.JSON, "one_time_key_counts", "signed_curve25519").(float64); !ok || c != 0 {
		t.Fatalf("empty counts: %s", r.Body)
	}

	// Same device keys again: fine.
	expect(t, upload(t, s, alice, map[string]any{"device_keys": alice.deviceKeys(t)}), 200, "")

	// Errors.
	other := alice.deviceKeys(t)
	other["user_id"] = bob.UserID
	alice.ed.sign(t, other, alice.UserID, "ed25519:"+alice.DeviceID)
	expect(t, upload(t, s, alice, map[string]any{"device_keys": other}), 400, "M_BAD_JSON")
	other = alice.deviceKeys(t)
	other["device_id"] = "OTHERDEVICE"
	expect(t, upload(t, s, alice, map[string]any{"device_keys": other}), 400, "M_BAD_JSON")
	// Missing algorithms/keys (Complement: Rejects invalid device keys), malformed signatures.
	expect(t, upload(t, s, bob, map[string]any{"device_keys": map[string]any{"user_id": bob.UserID, "device_id": bob.DeviceID}}), 400, "M_BAD_JSON")
	expect(t, upload(t, s, bob, map[string]any{"device_keys": nil}), 400, "M_BAD_JSON")
	expect(t, upload(t, s, bob, map[string]any{"device_keys": "x"}), 400, "M_BAD_JSON")
	malformed := bob.deviceKeys(t)
	malformed["signatures"] = "x"
	expect(t, upload(t, s, bob, map[string]any{"device_keys": malformed}), 400, "M_BAD_JSON")
	malformed = bob.deviceKeys(t)
	malformed["keys"] = map[string]any{"ed25519:" + bob.DeviceID: 5}
	expect(t, upload(t, s, bob, map[string]any{"device_keys": malformed}), 400, "M_BAD_JSON")
	// Nothing of bob's was stored by the refused uploads.
	r = s.MustOK(t, "POST", hstest.Path("/keys/query"), alice.Token, map[string]any{"device_keys": map[string]any{bob.UserID: []string{}}})
	if m, _ := dig(r.JSON, "device_keys", bob.UserID).(map[string]any); m == nil || len(m) != 0 {
		t.Fatalf("bob should have no keys: %s", r.Body)
	}
	// Keys without a valid self-signature are accepted, as Synapse does:
	// clients check signatures (Complement's TestDeviceListUpdates uploads
	// unsigned keys).
	bad := bob.deviceKeys(t)
	newSigner(t).sign(t, bad, bob.UserID, "ed25519:"+bob.DeviceID)
	expect(t, upload(t, s, bob, map[string]any{"device_keys": bad}), 200, "")
	bad = bob.deviceKeys(t)
	delete(bad, "signatures")
	expect(t, upload(t, s, bob, map[string]any{"device_keys": bad}), 200, "")
	r = s.MustOK(t, "POST", hstest.Path("/keys/query"), alice.Token, map[string]any{"device_keys": map[string]any{bob.UserID: []string{}}})
	if dig(r.JSON, "device_keys", bob.UserID, bob.DeviceID, "signatures") != nil {
		t.Fatalf("bob's unsigned keys: %s", r.Body)
	}
	// One-time keys: same ID and content is idempotent, different content refused.
	otks := alice.otks(t, "B", 2)
	expect(t, upload(t, s, alice, map[string]any{"one_time_keys": otks}), 200, "")
	r = upload(t, s, alice, map[string]any{"one_time_keys": otks})
	expect(t, r, 200, "")
	if count(r, "signed_curve25519") != 5 {
		t.Fatalf("idempotent re-upload changed counts: %s", r.Body)
	}
	expect(t, upload(t, s, alice, map[string]any{"one_time_keys": map[string]any{"signed_curve25519:B0": alice.otk(t, "", false)}}), 400, "M_INVALID_PARAM")
	// A batch with one conflicting key stores none of it.
	batch := alice.otks(t, "C", 2)
	batch["signed_curve25519:B1"] = alice.otk(t, "", false)
	expect(t, upload(t, s, alice, map[string]any{"one_time_keys": batch}), 400, "M_INVALID_PARAM")
	r = upload(t, s, alice, map[string]any{})
	if count(r, "signed_curve25519") != 5 {
		t.Fatalf("partial write: %s", r.Body)
	}
	// A one-time key signed by the wrong key.
	forged := map[string]any{"key": "abc"}
	newSigner(t).sign(t, forged, alice.UserID, "ed25519:"+alice.DeviceID)
	expect(t, upload(t, s, alice, map[string]any{"one_time_keys": map[string]any{"signed_curve25519:X": forged}}), 400, "M_INVALID_PARAM")
	expect(t, upload(t, s, alice, map[string]any{"one_time_keys": map[string]any{"signed_curve25519:X": map[string]any{"key": "abc"}}}), 400, "M_BAD_JSON")
	expect(t, upload(t, s, alice, map[string]any{"one_time_keys": map[string]any{"noalgorithm": "abc"}}), 400, "M_INVALID_PARAM")
	expect(t, upload(t, s, alice, map[string]any{"one_time_keys": map[string]any{"curve25519:1": 5}}), 400, "M_BAD_JSON")
	expect(t, upload(t, s, alice, map[string]any{"one_time_keys": []string{}}), 400, "M_BAD_JSON")
	// Unsigned keys of other algorithms are kept as sent (sytest does this).
	r = upload(t, s, alice, map[string]any{"one_time_keys": map[string]any{"my_algorithm:my_id_1": "my+base64+key"}})
	expect(t, r, 200, "")
	if count(r, "my_algorithm") != 1 {
		t.Fatalf("counts: %s", r.Body)
	}
	// Too many keys at once.
	expect(t, upload(t, s, alice, map[string]any{"one_time_keys": func() map[string]any {
		m := map[string]any{}
		for i := 0; i <= keys.MaxKeysPerUpload; i++ {
			m[fmt.Sprintf("x:%d", i)] = "k"
		}
		return m
	}()}), 400, "M_INVALID_PARAM")

	// New identity keys for an existing device are accepted and replace the old ones.
	changed := newDevice(t, alice.User)
	r = upload(t, s, changed, map[string]any{"device_keys": changed.deviceKeys(t)})
	expect(t, r, 200, "")
	if count(r, "signed_curve25519") != 0 {
		t.Fatalf("the old account's one-time keys are still counted: %s", r.Body)
	}
	r = s.MustOK(t, "POST", hstest.Path("/keys/query"), bob.Token, map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}})
	if dig(r.JSON, "device_keys", alice.UserID, alice.DeviceID, "keys", "ed25519:"+alice.DeviceID) != changed.ed.pub {
		t.Fatalf("alice's new identity keys: %s", r.Body)
	}

	expect(t, s.Do(t, "POST", hstest.Path("/keys/upload"), alice.Token, "{not json"), 400, "M_NOT_JSON")
	expect(t, s.Do(t, "POST", hstest.Path("/keys/upload"), "", map[string]any{}), 401, "M_MISSING_TOKEN")
}

// Keys uploaded before the device keys cannot be checked yet (Complement
// uploads such keys); once device keys exist they are.
func TestKeysUploadOTKBeforeDeviceKeys(t *testing.T) {
	s := hstest.Start(t)
	alice := newDevice(t, s.CreateUser(t, "alice"))
	expect(t, upload(t, s, alice, map[string]any{"one_time_keys": alice.otks(t, "A", 2)}), 200, "")
	expect(t, upload(t, s, alice, map[string]any{"device_keys": alice.deviceKeys(t)}), 200, "")
	forged := map[string]any{"key": "abc"}
	newSigner(t).sign(t, forged, alice.UserID, "ed25519:"+alice.DeviceID)
	expect(t, upload(t, s, alice, map[string]any{"one_time_keys": map[string]any{"signed_curve25519:X": forged}}), 400, "M_INVALID_PARAM")
}

// --- /keys/query --------------------------------------------------------------

func TestKeysQuery(t *testing.T) {
	s := hstest.Start(t)
	alice := newDevice(t, s.CreateUser(t, "alice"))
	bob := newDevice(t, s.CreateUser(t, "bob"))
	dk := bob.deviceKeys(t)
	expect(t, upload(t, s, bob, map[string]any{"device_keys": dk}), 200, "")
	if err := s.HS.Store.SetDeviceName(context.Background(), bob.UserID, bob.DeviceID, "Bob's phone"); err != nil {
		t.Fatal(err)
	}
	q := func(body any) *hstest.Response {
		return s.Do(t, "POST", hstest.Path("/keys/query"), alice.Token, body)
	}
	for _, devs := range []any{[]string{}, []string{bob.DeviceID}, nil} {
		r := q(map[string]any{"device_keys": map[string]any{bob.UserID: devs}})
		expect(t, r, 200, "")
		got, _ := dig(r.JSON, "device_keys", bob.UserID, bob.DeviceID).(map[string]any)
		if got == nil {
			t.Fatalf("no keys for %v: %s", devs, r.Body)
		}
		if dig(got, "unsigned", "device_display_name") != "Bob's phone" {
			t.Fatalf("display name: %s", r.Body)
		}
		if dig(got, "keys", "ed25519:"+bob.DeviceID) != bob.ed.pub || dig(got, "signatures", bob.UserID, "ed25519:"+bob.DeviceID) != dig(dk, "signatures", bob.UserID, "ed25519:"+bob.DeviceID) {
			t.Fatalf("keys differ from upload: %s", r.Body)
		}
		// What is served still verifies.
		raw, _ := json.Marshal(got)
		if err := keys.VerifySignature(raw, bob.UserID, "ed25519:"+bob.DeviceID, bob.ed.pub); err != nil {
			t.Fatalf("served keys do not verify: %v", err)
		}
	}
	r := q(map[string]any{"device_keys": map[string]any{bob.UserID: []string{"NOSUCH"}, "@nobody:localhost": []string{}, "@carol:remote.example": []string{}}})
	expect(t, r, 200, "")
	if m, _ := dig(r.JSON, "device_keys", bob.UserID).(map[string]any); len(m) != 0 {
		t.Fatalf("unknown device: %s", r.Body)
	}
	if m, ok := dig(r.JSON, "device_keys", "@nobody:localhost").(map[string]any); !ok || len(m) != 0 {
		t.Fatalf("unknown user should map to {}: %s", r.Body)
	}
	if dig(r.JSON, "failures", "remote.example") == nil {
		t.Fatalf("no failure for the remote server: %s", r.Body)
	}
	// TestKeysQueryWithDeviceIDAsObjectFails.
	expect(t, q(map[string]any{"device_keys": map[string]any{bob.UserID: map[string]bool{"device_id1": true}}}), 400, "M_BAD_JSON")
	expect(t, q(map[string]any{"device_keys": map[string]any{"not a user": []string{}}}), 400, "M_INVALID_PARAM")
	expect(t, q(map[string]any{}), 400, "M_MISSING_PARAM")
	expect(t, q("[]"), 400, "M_BAD_JSON")
}

// --- /keys/claim --------------------------------------------------------------

func claim(t testing.TB, s *hstest.Server, token string, d *e2eDevice) map[string]any {
	t.Helper()
	r := s.MustOK(t, "POST", hstest.Path("/keys/claim"), token, map[string]any{"one_time_keys": map[string]any{d.UserID: map[string]string{d.DeviceID: "signed_curve25519"}}})
	m, _ := dig(r.JSON, "one_time_keys", d.UserID, d.DeviceID).(map[string]any)
	return m
}

func TestKeysClaim(t *testing.T) {
	s := hstest.Start(t)
	alice := newDevice(t, s.CreateUser(t, "alice"))
	bob := newDevice(t, s.CreateUser(t, "bob"))
	expect(t, upload(t, s, bob, map[string]any{"device_keys": bob.deviceKeys(t)}), 200, "")
	// Upload order is claim order (MSC4225), whatever the key IDs.
	k1 := bob.otk(t, "", false)
	k0 := bob.otk(t, "", false)
	expect(t, upload(t, s, bob, map[string]any{"one_time_keys": map[string]any{"signed_curve25519:1": k1}}), 200, "")
	expect(t, upload(t, s, bob, map[string]any{"one_time_keys": map[string]any{"signed_curve25519:0": k0}}), 200, "")
	fb := bob.otk(t, "", true)
	expect(t, upload(t, s, bob, map[string]any{"fallback_keys": map[string]any{"signed_curve25519:F1": fb}}), 200, "")

	extras := func() (map[string]int, []string) {
		_, _, counts, unused, err := s.HS.Keys.SyncExtras(context.Background(), bob.UserID, bob.DeviceID, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		return counts, unused
	}
	if c, u := extras(); c["signed_curve25519"] != 2 || len(u) != 1 || u[0] != "signed_curve25519" {
		t.Fatalf("before claims: %v %v", c, u)
	}
	for i, want := range []map[string]any{k1, k0} {
		got := claim(t, s, alice.Token, bob)
		id := []string{"signed_curve25519:1", "signed_curve25519:0"}[i]
		if got[id] == nil || dig(got, id, "key") != want["key"] || len(got) != 1 {
			t.Fatalf("claim %d: %v", i, got)
		}
	}
	// Exhausted: the fallback key, again and again; it is marked used.
	for i := 0; i < 2; i++ {
		got := claim(t, s, alice.Token, bob)
		if dig(got, "signed_curve25519:F1", "key") != fb["key"] || dig(got, "signed_curve25519:F1", "fallback") != true {
			t.Fatalf("fallback claim %d: %v", i, got)
		}
	}
	if c, u := extras(); c["signed_curve25519"] != 0 || len(u) != 0 {
		t.Fatalf("after claims: %v %v", c, u)
	}
	// The same fallback key again stays used; a new one is unused.
	expect(t, upload(t, s, bob, map[string]any{"fallback_keys": map[string]any{"signed_curve25519:F1": fb}}), 200, "")
	if _, u := extras(); len(u) != 0 {
		t.Fatalf("re-uploaded fallback became unused: %v", u)
	}
	fb2 := bob.otk(t, "", true)
	expect(t, upload(t, s, bob, map[string]any{"fallback_keys": map[string]any{"signed_curve25519:F2": fb2}}), 200, "")
	if _, u := extras(); len(u) != 1 {
		t.Fatalf("new fallback should be unused: %v", u)
	}
	if got := claim(t, s, alice.Token, bob); dig(got, "signed_curve25519:F2", "key") != fb2["key"] {
		t.Fatalf("replaced fallback: %v", got)
	}
	// Two fallback keys for one algorithm, or a bad signature: refused.
	expect(t, upload(t, s, bob, map[string]any{"fallback_keys": map[string]any{"signed_curve25519:F3": bob.otk(t, "", true), "signed_curve25519:F4": bob.otk(t, "", true)}}), 400, "M_INVALID_PARAM")
	forged := newSigner(t).sign(t, map[string]any{"key": "x", "fallback": true}, bob.UserID, "ed25519:"+bob.DeviceID)
	expect(t, upload(t, s, bob, map[string]any{"fallback_keys": map[string]any{"signed_curve25519:F5": forged}}), 400, "M_INVALID_PARAM")

	// A device without keys: nothing, and the user is absent (Complement).
	r := s.MustOK(t, "POST", hstest.Path("/keys/claim"), bob.Token, map[string]any{"one_time_keys": map[string]any{alice.UserID: map[string]string{alice.DeviceID: "signed_curve25519"}, "@x:remote.example": map[string]string{"D": "signed_curve25519"}}})
	if _, ok := dig(r.JSON, "one_time_keys").(map[string]any)[alice.UserID]; ok {
		t.Fatalf("no keys should leave the user out: %s", r.Body)
	}
	if dig(r.JSON, "failures", "remote.example") == nil {
		t.Fatalf("remote failure missing: %s", r.Body)
	}
	expect(t, s.Do(t, "POST", hstest.Path("/keys/claim"), bob.Token, map[string]any{"one_time_keys": map[string]any{alice.UserID: []string{"x"}}}), 400, "M_BAD_JSON")
	expect(t, s.Do(t, "POST", hstest.Path("/keys/claim"), bob.Token, map[string]any{}), 400, "M_MISSING_PARAM")
}

// Many concurrent claims never hand out one key twice, and hand out all.
func TestKeysClaimConcurrent(t *testing.T) {
	s := hstest.Start(t)
	alice := newDevice(t, s.CreateUser(t, "alice"))
	bob := newDevice(t, s.CreateUser(t, "bob"))
	expect(t, upload(t, s, bob, map[string]any{"device_keys": bob.deviceKeys(t)}), 200, "")
	const total = 200
	for i := 0; i < total; i += 50 {
		expect(t, upload(t, s, bob, map[string]any{"one_time_keys": bob.otks(t, fmt.Sprintf("b%d_", i), 50)}), 200, "")
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				res, err := s.HS.Keys.Claim(context.Background(), map[string]map[string]string{bob.UserID: {bob.DeviceID: "signed_curve25519"}}, 0)
				if err != nil {
					errs <- err
					return
				}
				got := res.OneTimeKeys[bob.UserID][bob.DeviceID]
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for id := range got {
					seen[id]++
				}
				mu.Unlock()
			}
		}()
	}
	// Some claims go over HTTP too, interleaved with the direct ones.
	for i := 0; i < 10; i++ {
		for id := range claim(t, s, alice.Token, bob) {
			mu.Lock()
			seen[id]++
			mu.Unlock()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(seen) != total {
		t.Fatalf("handed out %d distinct keys, uploaded %d", len(seen), total)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("key %s handed out %d times", id, n)
		}
	}
}

var _ = http.StatusOK
