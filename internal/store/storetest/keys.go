package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"conclave/internal/store"
)

func otk(alg, id string) store.OneTimeKey {
	return store.OneTimeKey{KeyID: alg + ":" + id, Algorithm: alg, JSON: json.RawMessage(`{"key":"` + id + `"}`)}
}

func devKeys(user, dev, ed string) *store.DeviceKeys {
	return &store.DeviceKeys{UserID: user, DeviceID: dev, JSON: json.RawMessage(`{"ed":"` + ed + `"}`), Ed25519: ed, Curve25519: "c-" + ed}
}

func testUploadKeys(t *testing.T, s store.Store) {
	newUser(t, s, "@a:x")
	newDevice(t, s, "@a:x", "D", "tok")
	counts, changed, err := s.UploadKeys(ctx(), &store.KeyUpload{UserID: "@a:x", DeviceID: "D", DeviceKeys: devKeys("@a:x", "D", "ed1"),
		OneTimeKeys: []store.OneTimeKey{otk("signed_curve25519", "1"), otk("signed_curve25519", "2"), otk("curve25519", "3")}})
	must(t, err)
	if !changed || counts["signed_curve25519"] != 2 || counts["curve25519"] != 1 {
		t.Fatalf("counts %v changed %v", counts, changed)
	}
	// The same upload again: no change, keys skipped.
	counts, changed, err = s.UploadKeys(ctx(), &store.KeyUpload{UserID: "@a:x", DeviceID: "D", DeviceKeys: devKeys("@a:x", "D", "ed1"),
		OneTimeKeys: []store.OneTimeKey{otk("signed_curve25519", "1")}})
	must(t, err)
	if changed || counts["signed_curve25519"] != 2 {
		t.Fatalf("repeat: counts %v changed %v", counts, changed)
	}
	// A key ID with other content: ErrConflict, and nothing of the upload lands.
	bad := otk("signed_curve25519", "1")
	bad.JSON = json.RawMessage(`{"key":"other"}`)
	_, _, err = s.UploadKeys(ctx(), &store.KeyUpload{UserID: "@a:x", DeviceID: "D",
		OneTimeKeys: []store.OneTimeKey{otk("signed_curve25519", "9"), bad}})
	wantErr(t, err, store.ErrConflict)
	if c, _ := s.OneTimeKeyCounts(ctx(), "@a:x", "D"); c["signed_curve25519"] != 2 {
		t.Fatalf("a refused upload stored keys: %v", c)
	}
	// New identity keys replace the old ones and drop the old account's
	// one-time and fallback keys; the new upload's own keys are kept.
	_, _, err = s.UploadKeys(ctx(), &store.KeyUpload{UserID: "@a:x", DeviceID: "D", FallbackKeys: []store.OneTimeKey{otk("signed_curve25519", "fb0")}})
	must(t, err)
	before0 := maxPos(t, s)
	counts, changed, err = s.UploadKeys(ctx(), &store.KeyUpload{UserID: "@a:x", DeviceID: "D", DeviceKeys: devKeys("@a:x", "D", "ed2"),
		OneTimeKeys: []store.OneTimeKey{otk("signed_curve25519", "n1")}})
	must(t, err)
	if !changed || counts["signed_curve25519"] != 1 || counts["curve25519"] != 0 || maxPos(t, s) <= before0 {
		t.Fatalf("new identity keys: counts %v changed %v", counts, changed)
	}
	if algs, _ := s.UnusedFallbackKeyAlgorithms(ctx(), "@a:x", "D"); len(algs) != 0 {
		t.Fatalf("the old account's fallback key survived: %v", algs)
	}
	if ks, _ := s.DeviceKeys(ctx(), "@a:x", nil); len(ks) != 1 || ks[0].Ed25519 != "ed2" {
		t.Fatalf("device keys %+v", ks)
	}
	_, _, err = s.UploadKeys(ctx(), &store.KeyUpload{UserID: "@a:x", DeviceID: "D", DeviceKeys: devKeys("@a:x", "D", "ed1")})
	must(t, err)
	// Other JSON with the same identity keys is a change.
	dk := devKeys("@a:x", "D", "ed1")
	dk.JSON = json.RawMessage(`{"ed":"ed1","more":true}`)
	before := maxPos(t, s)
	_, changed, err = s.UploadKeys(ctx(), &store.KeyUpload{UserID: "@a:x", DeviceID: "D", DeviceKeys: dk})
	must(t, err)
	if !changed || maxPos(t, s) <= before {
		t.Fatal("changed device keys must record a device list change")
	}
	ks, err := s.DeviceKeys(ctx(), "@a:x", nil)
	must(t, err)
	if len(ks) != 1 || string(ks[0].JSON) != string(dk.JSON) || ks[0].Ed25519 != "ed1" || ks[0].DisplayName != nil {
		t.Fatalf("device keys %+v", ks)
	}
	must(t, s.SetDeviceName(ctx(), "@a:x", "D", "Phone"))
	ks, _ = s.DeviceKeys(ctx(), "@a:x", []string{"D", "nope"})
	if len(ks) != 1 || ks[0].DisplayName == nil || *ks[0].DisplayName != "Phone" {
		t.Fatalf("device keys %+v", ks)
	}
	ks, _ = s.DeviceKeys(ctx(), "@a:x", []string{"nope"})
	equal(t, "unknown device", len(ks), 0)

	// Fallback keys: unused until claimed; the same key again keeps its flag.
	fb := otk("signed_curve25519", "fb1")
	_, _, err = s.UploadKeys(ctx(), &store.KeyUpload{UserID: "@a:x", DeviceID: "D", FallbackKeys: []store.OneTimeKey{fb}})
	must(t, err)
	algs, err := s.UnusedFallbackKeyAlgorithms(ctx(), "@a:x", "D")
	must(t, err)
	equal(t, "unused fallback", algs, []string{"signed_curve25519"})
}

func testClaimKeys(t *testing.T, s store.Store) {
	newUser(t, s, "@a:x")
	newDevice(t, s, "@a:x", "D", "tok")
	alg := "signed_curve25519"
	_, _, err := s.UploadKeys(ctx(), &store.KeyUpload{UserID: "@a:x", DeviceID: "D",
		OneTimeKeys:  []store.OneTimeKey{otk(alg, "b"), otk(alg, "a")},
		FallbackKeys: []store.OneTimeKey{otk(alg, "fb")}})
	must(t, err)
	req := []store.ClaimRequest{{UserID: "@a:x", DeviceID: "D", Algorithm: alg}}
	var got []string
	for i := 0; i < 4; i++ {
		c, err := s.ClaimKeys(ctx(), req)
		must(t, err)
		if len(c) != 1 {
			t.Fatalf("claim %d: %+v", i, c)
		}
		got = append(got, c[0].Key.KeyID)
		if c[0].UserID != "@a:x" || c[0].DeviceID != "D" || c[0].Key.Algorithm != alg || len(c[0].Key.JSON) == 0 {
			t.Fatalf("claimed %+v", c[0])
		}
	}
	// Upload order, then the fallback key again and again.
	equal(t, "claims", got, []string{alg + ":b", alg + ":a", alg + ":fb", alg + ":fb"})
	algs, _ := s.UnusedFallbackKeyAlgorithms(ctx(), "@a:x", "D")
	equal(t, "fallback used", len(algs), 0)
	// Re-uploading the same fallback key keeps it used; a new one is unused.
	_, _, _ = s.UploadKeys(ctx(), &store.KeyUpload{UserID: "@a:x", DeviceID: "D", FallbackKeys: []store.OneTimeKey{otk(alg, "fb")}})
	algs, _ = s.UnusedFallbackKeyAlgorithms(ctx(), "@a:x", "D")
	equal(t, "same fallback stays used", len(algs), 0)
	_, _, _ = s.UploadKeys(ctx(), &store.KeyUpload{UserID: "@a:x", DeviceID: "D", FallbackKeys: []store.OneTimeKey{otk(alg, "fb2")}})
	algs, _ = s.UnusedFallbackKeyAlgorithms(ctx(), "@a:x", "D")
	equal(t, "new fallback unused", algs, []string{alg})
	c, err := s.ClaimKeys(ctx(), []store.ClaimRequest{{UserID: "@a:x", DeviceID: "D", Algorithm: "other"}, {UserID: "@z:x", DeviceID: "Z", Algorithm: alg}})
	must(t, err)
	equal(t, "nothing to claim", len(c), 0)
}

// testClaimKeysConcurrent: concurrent claimers never get the same one-time
// key, and none falls back while one-time keys remain.
func testClaimKeysConcurrent(t *testing.T, s store.Store) {
	newUser(t, s, "@a:x")
	newDevice(t, s, "@a:x", "D", "tok")
	alg := "signed_curve25519"
	const keys, claimers = 40, 8
	var up []store.OneTimeKey
	for i := 0; i < keys; i++ {
		up = append(up, otk(alg, fmt.Sprintf("k%02d", i)))
	}
	_, _, err := s.UploadKeys(ctx(), &store.KeyUpload{UserID: "@a:x", DeviceID: "D", OneTimeKeys: up, FallbackKeys: []store.OneTimeKey{otk(alg, "fb")}})
	must(t, err)
	var mu sync.Mutex
	var claimed []string
	var wg sync.WaitGroup
	for w := 0; w < claimers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < keys/claimers; i++ {
				c, err := s.ClaimKeys(ctx(), []store.ClaimRequest{{UserID: "@a:x", DeviceID: "D", Algorithm: alg}})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, k := range c {
					claimed = append(claimed, k.Key.KeyID)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	slices.Sort(claimed)
	if len(claimed) != keys || len(slices.Compact(slices.Clone(claimed))) != keys || slices.Contains(claimed, alg+":fb") {
		t.Fatalf("claimed %d keys, %d distinct: %v", len(claimed), len(slices.Compact(slices.Clone(claimed))), claimed)
	}
	if c, _ := s.OneTimeKeyCounts(ctx(), "@a:x", "D"); c[alg] != 0 {
		t.Fatalf("left %v", c)
	}
}

func testCrossSigning(t *testing.T, s store.Store) {
	newUser(t, s, "@a:x")
	ks, err := s.CrossSigningKeys(ctx(), "@a:x")
	must(t, err)
	equal(t, "none", len(ks), 0)
	put := func(typ, pub string) store.CrossSigningKey {
		return store.CrossSigningKey{UserID: "@a:x", Type: typ, PubKey: pub, JSON: json.RawMessage(`{"k":"` + pub + `"}`)}
	}
	before := maxPos(t, s)
	must(t, s.PutCrossSigningKeys(ctx(), "@a:x", []store.CrossSigningKey{put("master", "M1"), put("self_signing", "S1")}))
	if maxPos(t, s) <= before {
		t.Fatal("cross-signing keys must record a device list change")
	}
	ks, _ = s.CrossSigningKeys(ctx(), "@a:x")
	if len(ks) != 2 || ks["master"].PubKey != "M1" || string(ks["self_signing"].JSON) != `{"k":"S1"}` {
		t.Fatalf("keys %+v", ks)
	}
	must(t, s.PutKeySignatures(ctx(), []store.KeySignature{
		{TargetUserID: "@a:x", TargetKeyID: "DEV", SignerUserID: "@a:x", SignerKeyID: "ed25519:S1", Signature: "sig1"},
		{TargetUserID: "@a:x", TargetKeyID: "M1", SignerUserID: "@a:x", SignerKeyID: "ed25519:DEV", Signature: "sig2"},
		{TargetUserID: "@a:x", TargetKeyID: "M1", SignerUserID: "@b:x", SignerKeyID: "ed25519:BU", Signature: "sig3"},
	}, []string{"@a:x"}))
	must(t, s.PutKeySignatures(ctx(), []store.KeySignature{
		{TargetUserID: "@a:x", TargetKeyID: "M1", SignerUserID: "@b:x", SignerKeyID: "ed25519:BU", Signature: "sig3b"},
	}, nil))
	sigs, err := s.KeySignatures(ctx(), "@a:x")
	must(t, err)
	if len(sigs) != 3 || sigs[0].TargetKeyID != "DEV" || sigs[2].Signature != "sig3b" {
		t.Fatalf("signatures %+v", sigs)
	}
	// Replacing the master key drops signatures over it; replacing the
	// self-signing key drops those it made.
	must(t, s.PutCrossSigningKeys(ctx(), "@a:x", []store.CrossSigningKey{put("master", "M2"), put("self_signing", "S2")}))
	sigs, _ = s.KeySignatures(ctx(), "@a:x")
	equal(t, "signatures after replacing", len(sigs), 0)
	ks, _ = s.CrossSigningKeys(ctx(), "@a:x")
	equal(t, "replaced", ks["master"].PubKey, "M2")
}

func testDeviceListChanges(t *testing.T, s store.Store) {
	for _, u := range []string{"@a:x", "@b:x", "@c:x"} {
		newUser(t, s, u)
	}
	r := newRoom(t, s, "!r:x", "@a:x")
	r.send(t, r.member("@b:x", "join"))
	p0 := maxPos(t, s)
	newDevice(t, s, "@b:x", "B1", "tb")
	newDevice(t, s, "@c:x", "C1", "tc") // shares no room with a
	p1 := maxPos(t, s)
	changed, left, err := s.DeviceListChanges(ctx(), "@a:x", p0, p1)
	must(t, err)
	equal(t, "changed", changed, []string{"@b:x"})
	equal(t, "left", left, []string(nil))
	r.send(t, r.member("@c:x", "join"))
	p2 := maxPos(t, s)
	changed, _, _ = s.DeviceListChanges(ctx(), "@a:x", p1, p2)
	equal(t, "new room member", changed, []string{"@c:x"})
	r.send(t, r.member("@b:x", "leave"))
	p3 := maxPos(t, s)
	_, left, _ = s.DeviceListChanges(ctx(), "@a:x", p2, p3)
	equal(t, "left", left, []string{"@b:x"})
	changed, _, _ = s.DeviceListChanges(ctx(), "@a:x", p3, p3)
	equal(t, "empty range", len(changed), 0)
	// Renaming a device is a change; the owner always sees their own.
	must(t, s.SetDeviceName(ctx(), "@c:x", "C1", "new"))
	changed, _, _ = s.DeviceListChanges(ctx(), "@a:x", p3, maxPos(t, s))
	equal(t, "rename", changed, []string{"@c:x"})
	newDevice(t, s, "@a:x", "A2", "ta2")
	changed, _, _ = s.DeviceListChanges(ctx(), "@a:x", p3, maxPos(t, s))
	equal(t, "own", changed, []string{"@a:x", "@c:x"})
}

func testToDevice(t *testing.T, s store.Store) {
	newUser(t, s, "@a:x")
	newUser(t, s, "@b:x")
	newDevice(t, s, "@a:x", "A", "ta")
	newDevice(t, s, "@b:x", "B1", "tb1")
	newDevice(t, s, "@b:x", "B2", "tb2")
	start := maxPos(t, s)
	msg := func(user, dev, body string) store.ToDeviceSend {
		return store.ToDeviceSend{UserID: user, DeviceID: dev, JSON: json.RawMessage(`{"body":"` + body + `"}`)}
	}
	rec, dup, err := s.SendToDevice(ctx(), "@a:x", "A", "txn1", []store.ToDeviceSend{msg("@b:x", "*", "all"), msg("@b:x", "nope", "lost"), msg("@z:x", "Z", "lost")}, nil)
	must(t, err)
	if dup || len(rec) != 1 || rec[0] != "@b:x" {
		t.Fatalf("recipients %v dup %v", rec, dup)
	}
	top := maxPos(t, s)
	if top != start+2 {
		t.Fatalf("two messages should take two positions: %d → %d", start, top)
	}
	rec, dup, err = s.SendToDevice(ctx(), "@a:x", "A", "txn1", []store.ToDeviceSend{msg("@b:x", "B1", "again")}, nil)
	must(t, err)
	if !dup || len(rec) != 0 || maxPos(t, s) != top {
		t.Fatalf("repeat: recipients %v dup %v", rec, dup)
	}
	// Another device of the sender may reuse the transaction ID.
	newDevice(t, s, "@a:x", "A2", "ta2")
	_, dup, _ = s.SendToDevice(ctx(), "@a:x", "A2", "txn1", []store.ToDeviceSend{msg("@b:x", "B1", "second")}, nil)
	if dup {
		t.Fatal("transaction IDs are per device")
	}
	top = maxPos(t, s)
	ms, err := s.ToDeviceMessages(ctx(), "@b:x", "B1", 0, 0, top, 10)
	must(t, err)
	if len(ms) != 2 || string(ms[0].JSON) != `{"body":"all"}` || ms[0].Pos >= ms[1].Pos {
		t.Fatalf("messages %+v", ms)
	}
	ms, err = s.ToDeviceMessages(ctx(), "@b:x", "B1", 0, 0, top, 1)
	must(t, err)
	equal(t, "limit", len(ms), 1)
	// Acknowledging deletes up to ack.
	ms, err = s.ToDeviceMessages(ctx(), "@b:x", "B1", ms[0].Pos, ms[0].Pos, top, 10)
	must(t, err)
	equal(t, "after ack", len(ms), 1)
	ms, err = s.ToDeviceMessages(ctx(), "@b:x", "B1", 0, 0, top, 10)
	must(t, err)
	equal(t, "acked one gone", len(ms), 1)
	ms, err = s.ToDeviceMessages(ctx(), "@b:x", "B2", 0, 0, top, 10)
	must(t, err)
	equal(t, "B2", len(ms), 1)
	// An acknowledgement beyond after: what it deletes is not returned.
	_, _, err = s.SendToDevice(ctx(), "@a:x", "A", "txn3", []store.ToDeviceSend{msg("@b:x", "B2", "third")}, nil)
	must(t, err)
	top = maxPos(t, s)
	ms, err = s.ToDeviceMessages(ctx(), "@b:x", "B2", top-1, 0, top, 10)
	must(t, err)
	if len(ms) != 1 || ms[0].Pos != top || string(ms[0].JSON) != `{"body":"third"}` {
		t.Fatalf("after an acknowledgement ahead of after: %+v", ms)
	}
	ms, err = s.ToDeviceMessages(ctx(), "@b:x", "B2", 0, 0, top, 10)
	must(t, err)
	equal(t, "acknowledged ahead of after", len(ms), 1)
}

// testToDeviceFedQueue: the EDUs for other servers that SendToDevice is
// given are queued in its transaction — with the transaction ID, so a
// repeated transaction finds them queued and queues nothing more — and a
// write that fails leaves neither (the retry is not a duplicate).
func testToDeviceFedQueue(t *testing.T, s store.Store) {
	c := ctx()
	newUser(t, s, "@a:x")
	newUser(t, s, "@b:x")
	newDevice(t, s, "@a:x", "A", "ta")
	newDevice(t, s, "@b:x", "B", "tb")
	local := []store.ToDeviceSend{{UserID: "@b:x", DeviceID: "B", JSON: json.RawMessage(`{"n":1}`)}}
	fed := []store.FedEnqueue{
		fedEDU("m.direct_to_device", `{"to":"a"}`, "", true, "a.test"),
		fedEDU("m.direct_to_device", `{"to":"b"}`, "", true, "b.test"),
	}
	// A bad queue entry fails the whole write: no message, no transaction.
	top := maxPos(t, s)
	bad := store.FedEnqueue{Destinations: []string{"a.test"}, Item: store.FedItem{EventID: "$x", EDUType: "m.typing", JSON: []byte(`{}`)}}
	if _, _, err := s.SendToDevice(c, "@a:x", "A", "t1", local, append(slices.Clone(fed), bad)); err == nil {
		t.Fatal("a queue entry that is both a PDU and an EDU was accepted")
	}
	ds, err := s.FedDestinations(c)
	must(t, err)
	equal(t, "destinations after a failed write", ds, []store.FedDestination{})
	if ms, _ := s.ToDeviceMessages(c, "@b:x", "B", 0, 0, maxPos(t, s), 10); len(ms) != 0 || maxPos(t, s) != top {
		t.Fatalf("messages after a failed write: %+v", ms)
	}

	rec, dup, err := s.SendToDevice(c, "@a:x", "A", "t1", local, fed)
	must(t, err)
	if dup || len(rec) != 1 {
		t.Fatalf("recipients %v dup %v (the failed write recorded the transaction)", rec, dup)
	}
	// Only remote recipients: queued all the same.
	_, dup, err = s.SendToDevice(c, "@a:x", "A", "t2", nil, []store.FedEnqueue{fedEDU("m.direct_to_device", `{"to":"a2"}`, "", true, "a.test")})
	must(t, err)
	if dup {
		t.Fatal("t2 is new")
	}
	// The retry queues nothing more.
	_, dup, err = s.SendToDevice(c, "@a:x", "A", "t1", local, fed)
	must(t, err)
	if !dup {
		t.Fatal("the retry was not a duplicate")
	}
	ds, err = s.FedDestinations(c)
	must(t, err)
	equal(t, "destinations", ds, []store.FedDestination{{Destination: "a.test"}, {Destination: "b.test"}})
	for dest, want := range map[string][]string{
		"a.test": {`m.direct_to_device {"to":"a"}`, `m.direct_to_device {"to":"a2"}`},
		"b.test": {`m.direct_to_device {"to":"b"}`},
	} {
		b, err := s.FedNextBatch(c, dest, 50, 100)
		must(t, err)
		_, e := fedNames(b)
		equal(t, dest+" EDUs", e, want)
	}
	// Kept by the queue cap like any to-device EDU.
	for i := 0; i < 3; i++ {
		must(t, s.FedEnqueue(c, []store.FedEnqueue{fedEDU("m.typing", fmt.Sprintf(`{"n":%d}`, i), "", false, "b.test")}))
	}
	n, err := s.FedPrune(c, "b.test", 1)
	must(t, err)
	equal(t, "pruned", n, 3)
	b, err := s.FedNextBatch(c, "b.test", 50, 100)
	must(t, err)
	_, e := fedNames(b)
	equal(t, "b.test after the cap", e, []string{`m.direct_to_device {"to":"b"}`})
}

func testDeleteDeviceCleanup(t *testing.T, s store.Store) {
	newUser(t, s, "@a:x")
	newUser(t, s, "@b:x")
	newDevice(t, s, "@a:x", "D", "ta")
	newDevice(t, s, "@b:x", "B", "tb")
	alg := "signed_curve25519"
	_, _, err := s.UploadKeys(ctx(), &store.KeyUpload{UserID: "@a:x", DeviceID: "D", DeviceKeys: devKeys("@a:x", "D", "e"),
		OneTimeKeys: []store.OneTimeKey{otk(alg, "1")}, FallbackKeys: []store.OneTimeKey{otk(alg, "f")}})
	must(t, err)
	must(t, s.PutKeySignatures(ctx(), []store.KeySignature{{TargetUserID: "@a:x", TargetKeyID: "D", SignerUserID: "@a:x", SignerKeyID: "ed25519:M", Signature: "s"}}, nil))
	_, _, err = s.SendToDevice(ctx(), "@b:x", "B", "t1", []store.ToDeviceSend{{UserID: "@a:x", DeviceID: "D", JSON: json.RawMessage(`{}`)}}, nil)
	must(t, err)
	_, _, err = s.SendToDevice(ctx(), "@a:x", "D", "t1", []store.ToDeviceSend{{UserID: "@b:x", DeviceID: "B", JSON: json.RawMessage(`{}`)}}, nil)
	must(t, err)
	must(t, s.DeleteDevices(ctx(), "@a:x", []string{"D"}))
	// A new device with the same ID starts clean.
	newDevice(t, s, "@a:x", "D", "ta2")
	if ks, _ := s.DeviceKeys(ctx(), "@a:x", nil); len(ks) != 0 {
		t.Fatalf("device keys survived: %+v", ks)
	}
	if c, _ := s.OneTimeKeyCounts(ctx(), "@a:x", "D"); c[alg] != 0 {
		t.Fatalf("one-time keys survived: %v", c)
	}
	if a, _ := s.UnusedFallbackKeyAlgorithms(ctx(), "@a:x", "D"); len(a) != 0 {
		t.Fatalf("fallback keys survived: %v", a)
	}
	if sigs, _ := s.KeySignatures(ctx(), "@a:x"); len(sigs) != 0 {
		t.Fatalf("signatures survived: %+v", sigs)
	}
	if ms, _ := s.ToDeviceMessages(ctx(), "@a:x", "D", 0, 0, maxPos(t, s), 10); len(ms) != 0 {
		t.Fatalf("to-device messages survived: %+v", ms)
	}
	_, dup, _ := s.SendToDevice(ctx(), "@a:x", "D", "t1", nil, nil)
	if dup {
		t.Fatal("sent transaction IDs survived")
	}
}

func testDehydratedDevice(t *testing.T, s store.Store) {
	newUser(t, s, "@a:x")
	newDevice(t, s, "@a:x", "REAL", "t")
	_, _, err := s.DehydratedDevice(ctx(), "@a:x")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.DeleteDehydratedDevice(ctx(), "@a:x")
	wantErr(t, err, store.ErrNotFound)
	keys := func(dev string) *store.KeyUpload {
		return &store.KeyUpload{UserID: "@a:x", DeviceID: dev, DeviceKeys: devKeys("@a:x", dev, "e-"+dev), OneTimeKeys: []store.OneTimeKey{otk("signed_curve25519", dev)}}
	}
	err = s.PutDehydratedDevice(ctx(), "@a:x", "REAL", nil, json.RawMessage(`{}`), keys("REAL"), 1, []byte("h0"))
	wantErr(t, err, store.ErrConflict)
	name := "dehydrated"
	must(t, s.PutDehydratedDevice(ctx(), "@a:x", "DH1", &name, json.RawMessage(`{"v":1}`), keys("DH1"), 1, []byte("h1")))
	id, data, err := s.DehydratedDevice(ctx(), "@a:x")
	must(t, err)
	if id != "DH1" || string(data) != `{"v":1}` {
		t.Fatalf("dehydrated %s %s", id, data)
	}
	if d, err := s.GetDevice(ctx(), "@a:x", "DH1"); err != nil || *d.DisplayName != "dehydrated" {
		t.Fatalf("device %+v %v", d, err)
	}
	// Replacing deletes the old one like any device.
	must(t, s.PutDehydratedDevice(ctx(), "@a:x", "DH2", nil, json.RawMessage(`{"v":2}`), keys("DH2"), 2, []byte("h2")))
	if _, err := s.GetDevice(ctx(), "@a:x", "DH1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("old dehydrated device: %v", err)
	}
	if c, _ := s.OneTimeKeyCounts(ctx(), "@a:x", "DH2"); c["signed_curve25519"] != 1 {
		t.Fatalf("keys of the dehydrated device: %v", c)
	}
	id, err = s.DeleteDehydratedDevice(ctx(), "@a:x")
	must(t, err)
	equal(t, "deleted", id, "DH2")
	if _, err := s.GetDevice(ctx(), "@a:x", "DH2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted dehydrated device: %v", err)
	}
}

func testBackups(t *testing.T, s store.Store) {
	_, err := s.BackupVersion(ctx(), "@a:x", 0)
	wantErr(t, err, store.ErrNotFound)
	v1, err := s.CreateBackupVersion(ctx(), "@a:x", "alg", json.RawMessage(`{"a":1}`))
	must(t, err)
	v2, err := s.CreateBackupVersion(ctx(), "@a:x", "alg", json.RawMessage(`{"a":2}`))
	must(t, err)
	if v2 <= v1 {
		t.Fatalf("versions %d %d", v1, v2)
	}
	cur, err := s.BackupVersion(ctx(), "@a:x", 0)
	must(t, err)
	if cur.Version != v2 || string(cur.AuthData) != `{"a":2}` || cur.Count != 0 {
		t.Fatalf("current %+v", cur)
	}
	better := func(old, new *store.RoomKey) bool { return new.FirstMessageIndex < old.FirstMessageIndex }
	key := func(room, sess string, idx int64) store.RoomKey {
		return store.RoomKey{RoomID: room, SessionID: sess, FirstMessageIndex: idx, SessionData: json.RawMessage(fmt.Sprintf(`{"i":%d}`, idx))}
	}
	_, err = s.PutRoomKeys(ctx(), "@a:x", v1, []store.RoomKey{key("!r", "s", 1)}, better)
	wantErr(t, err, store.ErrWrongBackupVersion)
	info, err := s.PutRoomKeys(ctx(), "@a:x", v2, []store.RoomKey{key("!r", "s1", 5), key("!r", "s2", 1), key("!o", "s3", 1)}, better)
	must(t, err)
	if info.Count != 3 {
		t.Fatalf("info %+v", info)
	}
	etag := info.Etag
	info, _ = s.PutRoomKeys(ctx(), "@a:x", v2, []store.RoomKey{key("!r", "s1", 9)}, better)
	if info.Etag != etag {
		t.Fatal("a worse key changed the etag")
	}
	info, _ = s.PutRoomKeys(ctx(), "@a:x", v2, []store.RoomKey{key("!r", "s1", 2)}, better)
	if info.Etag == etag {
		t.Fatal("a better key kept the etag")
	}
	ks, err := s.RoomKeys(ctx(), "@a:x", v2, "", "")
	must(t, err)
	if len(ks) != 3 || ks[0].RoomID != "!o" || ks[1].SessionID != "s1" || ks[1].FirstMessageIndex != 2 || string(ks[1].SessionData) != `{"i":2}` {
		t.Fatalf("keys %+v", ks)
	}
	ks, _ = s.RoomKeys(ctx(), "@a:x", v2, "!r", "s2")
	equal(t, "one key", len(ks), 1)
	_, err = s.RoomKeys(ctx(), "@a:x", 99, "", "")
	wantErr(t, err, store.ErrNotFound)
	info, err = s.DeleteRoomKeys(ctx(), "@a:x", v2, "!r", "")
	must(t, err)
	equal(t, "after delete", info.Count, int64(1))
	wantErr(t, s.UpdateBackupVersion(ctx(), "@a:x", 99, json.RawMessage(`{}`)), store.ErrNotFound)
	must(t, s.UpdateBackupVersion(ctx(), "@a:x", v2, json.RawMessage(`{"a":3}`)))
	must(t, s.DeleteBackupVersion(ctx(), "@a:x", v2))
	wantErr(t, s.DeleteBackupVersion(ctx(), "@a:x", v2), store.ErrNotFound)
	cur, _ = s.BackupVersion(ctx(), "@a:x", 0)
	equal(t, "current after delete", cur.Version, v1)
	// Versions are never reused.
	v3, _ := s.CreateBackupVersion(ctx(), "@a:x", "alg", json.RawMessage(`{}`))
	if v3 <= v2 {
		t.Fatalf("version %d reused after %d", v3, v2)
	}
	_, err = s.BackupVersion(ctx(), "@a:x", v2)
	wantErr(t, err, store.ErrNotFound)
}
