package storetest

import (
	"encoding/json"
	"testing"

	"conclave/internal/store"
)

// Device lists across servers (migration 0020).

func testDeviceListOutbound(t *testing.T, s store.Store) {
	newUser(t, s, "@a:x")
	newDevice(t, s, "@a:x", "A1", "t1")
	newDevice(t, s, "@a:x", "A2", "t2")
	_, _, err := s.UploadKeys(ctx(), &store.KeyUpload{UserID: "@a:x", DeviceID: "A2", DeviceKeys: devKeys("@a:x", "A2", "ed")})
	must(t, err)
	must(t, s.SetDeviceName(ctx(), "@a:x", "A1", "Phone"))
	l, err := s.LocalDeviceList(ctx(), "@a:x")
	must(t, err)
	if len(l) != 2 || l[0].DeviceID != "A1" || l[0].Keys != nil || l[0].DisplayName == nil || *l[0].DisplayName != "Phone" ||
		l[1].DeviceID != "A2" || string(l[1].Keys) != `{"ed":"ed"}` {
		t.Fatalf("local list %+v", l)
	}
	sent, last, err := s.DeviceListOutbound(ctx(), "@a:x")
	must(t, err)
	if len(sent) != 0 || last != 0 {
		t.Fatalf("nothing announced yet: %v %d", sent, last)
	}
	unannounced, err := s.UnannouncedDeviceLists(ctx())
	must(t, err)
	equal(t, "unannounced", unannounced, []string{"@a:x"})
	pos, err := s.LastDeviceListChange(ctx(), "@a:x")
	must(t, err)
	must(t, s.SetDeviceListOutbound(ctx(), "@a:x", map[string]string{"A1": "h1", "A2": "h2"}, 2, pos))
	unannounced, err = s.UnannouncedDeviceLists(ctx())
	must(t, err)
	equal(t, "unannounced after the announcement", len(unannounced), 0)
	must(t, s.SetDeviceListOutbound(ctx(), "@a:x", map[string]string{"A1": "", "A2": "h3"}, 4, pos-1)) // never goes back
	newDevice(t, s, "@a:x", "A3", "t3")
	unannounced, _ = s.UnannouncedDeviceLists(ctx())
	equal(t, "a new change", unannounced, []string{"@a:x"})
	if p2, _ := s.LastDeviceListChange(ctx(), "@a:x"); p2 <= pos {
		t.Fatalf("last change %d after %d", p2, pos)
	}
	sent, last, err = s.DeviceListOutbound(ctx(), "@a:x")
	must(t, err)
	equal(t, "announced", sent, map[string]string{"A2": "h3"})
	equal(t, "stream", last, int64(4))
}

func testRemoteDeviceLists(t *testing.T, s store.Store) {
	for _, u := range []string{"@a:x", "@c:x"} {
		newUser(t, s, u)
	}
	r := newRoom(t, s, "!r:x", "@a:x")
	r.send(t, r.member("@b:y", "join"))
	name := "Laptop"
	_, _, _, cached, err := s.RemoteDeviceList(ctx(), "@b:y")
	must(t, err)
	if cached {
		t.Fatal("cached before any resync")
	}
	// An update for a list not cached records a change only.
	p0 := maxPos(t, s)
	applied, err := s.UpdateRemoteDevice(ctx(), "@b:y", 5, store.DeviceListEntry{DeviceID: "B0"}, false)
	must(t, err)
	if applied || maxPos(t, s) <= p0 {
		t.Fatalf("applied %v; a change must be recorded", applied)
	}
	changed, _, _ := s.DeviceListChanges(ctx(), "@a:x", p0, maxPos(t, s))
	equal(t, "changed", changed, []string{"@b:y"})
	if _, _, _, cached, _ := s.RemoteDeviceList(ctx(), "@b:y"); cached {
		t.Fatal("an update must not start a cache")
	}

	// A resync caches the whole list.
	must(t, s.ReplaceRemoteDeviceList(ctx(), "@b:y", 7, []store.DeviceListEntry{
		{DeviceID: "B1", DisplayName: &name, Keys: json.RawMessage(`{"k":1}`)}, {DeviceID: "B2"},
	}, map[string]json.RawMessage{"master": json.RawMessage(`{"m":1}`)}))
	devs, cs, id, cached, err := s.RemoteDeviceList(ctx(), "@b:y")
	must(t, err)
	if !cached || id != 7 || len(devs) != 2 || *devs[0].DisplayName != "Laptop" || string(devs[0].Keys) != `{"k":1}` || devs[1].Keys != nil || string(cs["master"]) != `{"m":1}` {
		t.Fatalf("cache %+v %v %d %v", devs, cs, id, cached)
	}
	// Stale updates are not applied; newer ones are.
	applied, err = s.UpdateRemoteDevice(ctx(), "@b:y", 7, store.DeviceListEntry{DeviceID: "B3"}, false)
	must(t, err)
	equal(t, "stale update applied", applied, false)
	applied, err = s.UpdateRemoteDevice(ctx(), "@b:y", 8, store.DeviceListEntry{DeviceID: "B1"}, true)
	must(t, err)
	equal(t, "newer update applied", applied, true)
	applied, err = s.UpdateRemoteDevice(ctx(), "@b:y", 9, store.DeviceListEntry{DeviceID: "B2", Keys: json.RawMessage(`{"k":2}`)}, false)
	must(t, err)
	equal(t, "newer update applied", applied, true)
	must(t, s.PutRemoteCrossSigningKeys(ctx(), "@b:y", map[string]json.RawMessage{"self_signing": json.RawMessage(`{"s":1}`)}))
	devs, cs, id, _, _ = s.RemoteDeviceList(ctx(), "@b:y")
	if id != 9 || len(devs) != 1 || devs[0].DeviceID != "B2" || string(devs[0].Keys) != `{"k":2}` || len(cs) != 2 {
		t.Fatalf("after updates %+v %v %d", devs, cs, id)
	}

	// Still shared with @a:x: kept. Once @a:x leaves: dropped.
	dropped, err := s.DropUnsharedRemoteDeviceLists(ctx())
	must(t, err)
	equal(t, "dropped while shared", len(dropped), 0)
	r.send(t, r.member("@a:x", "leave"))
	dropped, err = s.DropUnsharedRemoteDeviceLists(ctx())
	must(t, err)
	equal(t, "dropped", dropped, []string{"@b:y"})
	if devs, cs, _, cached, _ := s.RemoteDeviceList(ctx(), "@b:y"); cached || len(devs) != 0 || len(cs) != 0 {
		t.Fatal("a dropped cache still answers")
	}
	must(t, s.ReplaceRemoteDeviceList(ctx(), "@b:y", 10, nil, nil))
	must(t, s.DropRemoteDeviceLists(ctx(), []string{"@b:y"}))
	if _, _, _, cached, _ := s.RemoteDeviceList(ctx(), "@b:y"); cached {
		t.Fatal("DropRemoteDeviceLists kept the cache")
	}
	p1 := maxPos(t, s)
	must(t, s.RecordDeviceListChanges(ctx(), []string{"@b:y"}))
	if maxPos(t, s) <= p1 {
		t.Fatal("RecordDeviceListChanges recorded nothing")
	}
}
