package clientapi_test

import (
	"testing"

	"conclave/internal/homeserver/hstest"
)

func TestDehydratedDevice(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	base := "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device"
	expect(t, s.Do(t, "GET", base, alice.Token, nil), 404, "M_NOT_FOUND")
	expect(t, s.Do(t, "DELETE", base, alice.Token, nil), 404, "M_NOT_FOUND")

	dehydrated := func(id string) *e2eDevice {
		return newDevice(t, &hstest.User{UserID: alice.UserID, DeviceID: id, Token: alice.Token})
	}
	d1 := dehydrated("DEHYD1")
	body := map[string]any{"device_id": "DEHYD1", "device_data": map[string]any{"algorithm": "m.dehydration.v1.olm", "x": 1},
		"initial_device_display_name": "Dehydrated", "device_keys": d1.deviceKeys(t), "one_time_keys": d1.otks(t, "d", 2)}
	r := s.MustOK(t, "PUT", base, alice.Token, body)
	if r.Str("device_id") != "DEHYD1" {
		t.Fatalf("put: %s", r.Body)
	}
	r = s.MustOK(t, "GET", base, alice.Token, nil)
	if r.Str("device_id") != "DEHYD1" || dig(r.JSON, "device_data", "x") != 1.0 {
		t.Fatalf("get: %s", r.Body)
	}
	// Others can query and claim its keys and message it.
	if got := claim(t, s, bob.Token, d1); len(got) != 1 {
		t.Fatalf("claim from dehydrated device: %v", got)
	}
	for i, txn := range []string{"a", "b", "c"} {
		s.MustOK(t, "PUT", hstest.Path("/sendToDevice/%s/%s", "m.room.encrypted", txn), bob.Token, map[string]any{"messages": map[string]any{alice.UserID: map[string]any{"DEHYD1": map[string]any{"i": i}}}})
	}
	ev := base + "/DEHYD1/events"
	r = s.MustOK(t, "POST", ev, alice.Token, map[string]any{})
	if evs, _ := r.JSON["events"].([]any); len(evs) != 3 || dig(evs[2], "content", "i") != 2.0 || r.Str("next_batch") == "" {
		t.Fatalf("events: %s", r.Body)
	}
	next := r.Str("next_batch")
	r = s.MustOK(t, "POST", ev, alice.Token, map[string]any{"next_batch": next})
	if evs, _ := r.JSON["events"].([]any); len(evs) != 0 || r.Str("next_batch") != next {
		t.Fatalf("after next_batch: %s", r.Body)
	}
	expect(t, s.Do(t, "POST", base+"/OTHER/events", alice.Token, map[string]any{}), 403, "M_FORBIDDEN")
	expect(t, s.Do(t, "POST", ev, bob.Token, map[string]any{}), 403, "M_FORBIDDEN")
	expect(t, s.Do(t, "POST", ev, alice.Token, map[string]any{"next_batch": "x"}), 400, "M_INVALID_PARAM")

	// A new dehydrated device replaces the old, whose keys go.
	d2 := dehydrated("DEHYD2")
	s.MustOK(t, "PUT", base, alice.Token, map[string]any{"device_id": "DEHYD2", "device_data": map[string]any{"v": 2}, "device_keys": d2.deviceKeys(t)})
	q := s.MustOK(t, "POST", hstest.Path("/keys/query"), bob.Token, map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}})
	if dig(q.JSON, "device_keys", alice.UserID, "DEHYD1") != nil || dig(q.JSON, "device_keys", alice.UserID, "DEHYD2", "unsigned", "device_display_name") != nil {
		t.Fatalf("after replace: %s", q.Body)
	}
	if dig(q.JSON, "device_keys", alice.UserID, "DEHYD2") == nil {
		t.Fatalf("new dehydrated device keys missing: %s", q.Body)
	}
	// Errors: taken device ID, bad keys, bad data; nothing changes.
	expect(t, s.Do(t, "PUT", base, alice.Token, map[string]any{"device_id": alice.DeviceID, "device_data": map[string]any{}}), 400, "M_INVALID_PARAM")
	expect(t, s.Do(t, "PUT", base, alice.Token, map[string]any{"device_id": "DEHYD3", "device_data": "x"}), 400, "M_BAD_JSON")
	expect(t, s.Do(t, "PUT", base, alice.Token, map[string]any{"device_data": map[string]any{}}), 400, "M_MISSING_PARAM")
	bad := dehydrated("DEHYD3").deviceKeys(t)
	bad["device_id"] = "OTHER"
	expect(t, s.Do(t, "PUT", base, alice.Token, map[string]any{"device_id": "DEHYD3", "device_data": map[string]any{}, "device_keys": bad}), 400, "M_BAD_JSON")
	if r = s.MustOK(t, "GET", base, alice.Token, nil); r.Str("device_id") != "DEHYD2" {
		t.Fatalf("failed puts changed the device: %s", r.Body)
	}
	r = s.MustOK(t, "DELETE", base, alice.Token, nil)
	if r.Str("device_id") != "DEHYD2" {
		t.Fatalf("delete: %s", r.Body)
	}
	expect(t, s.Do(t, "GET", base, alice.Token, nil), 404, "M_NOT_FOUND")
}
