package clientapi_test

// Each thing the server says it does, it does; what it does not do is
// refused with a clear error (issue 17, "Honesty").

import (
	"testing"

	"conclave/internal/homeserver/hstest"
)

// Every room version /capabilities advertises can be created and upgraded
// to; none other is advertised.
func TestCapabilitiesAdvertiseOnlyCreatableVersions(t *testing.T) {
	s := hstest.Start(t)
	u := s.Register(t, "caps")
	r := s.MustOK(t, "GET", acV3+"/capabilities", u.Token, nil)
	avail, _ := dig(r.JSON, "capabilities", "m.room_versions", "available").(map[string]any)
	if len(avail) == 0 {
		t.Fatalf("no versions: %s", r.Body)
	}
	for v := range avail {
		res := s.Do(t, "POST", acV3+"/createRoom", u.Token, map[string]any{"room_version": v})
		if res.Status != 200 {
			t.Errorf("advertised room version %s: createRoom %d %s", v, res.Status, res.Body)
			continue
		}
		up := s.Do(t, "POST", hstest.Path("/rooms/%s/upgrade", res.Str("room_id")), u.Token, map[string]any{"new_version": v})
		if up.Status != 200 {
			t.Errorf("advertised room version %s: upgrade %d %s", v, up.Status, up.Body)
		}
	}
	for _, v := range []string{"1", "2"} {
		if _, ok := avail[v]; ok {
			t.Errorf("room version %s advertised, but createRoom refuses it", v)
		}
	}
}
