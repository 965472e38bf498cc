package clientapi_test

import (
	"testing"

	"conclave/internal/homeserver/hstest"
)

// Access tokens are cached once resolved (accounts/sessioncache.go): every
// way of revoking one must take effect on the very next request.
func TestRevokedTokensStopWorkingAtOnce(t *testing.T) {
	s := hstest.Start(t)
	s.MustOK(t, "POST", v3+"/register", "", map[string]any{"username": "alice", "password": "pw-alice-1", "auth": dummy()})
	tokens := map[string]string{}
	for _, d := range []string{"D1", "D2", "D3", "D4", "D5"} {
		tokens[d] = login(t, s, "alice", "pw-alice-1", map[string]any{"device_id": d}).Str("access_token")
	}
	whoami := func(d string) int { return s.Do(t, "GET", v3+"/account/whoami", tokens[d], nil).Status }
	use := func(ds ...string) {
		for _, d := range ds {
			for range 2 { // the second use is served from the cache
				if st := whoami(d); st != 200 {
					t.Fatalf("%s: whoami %d", d, st)
				}
			}
		}
	}
	use("D1", "D2", "D3", "D4", "D5")

	s.MustOK(t, "POST", v3+"/logout", tokens["D1"], map[string]any{})
	if st := whoami("D1"); st != 401 {
		t.Fatalf("after logout: %d", st)
	}
	use("D2")
	s.MustOK(t, "DELETE", v3+"/devices/D2", tokens["D3"], map[string]any{"auth": map[string]any{
		"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": "pw-alice-1"}})
	if st := whoami("D2"); st != 401 {
		t.Fatalf("after device deletion: %d", st)
	}
	use("D3", "D4")
	s.MustOK(t, "POST", v3+"/account/password", tokens["D3"], map[string]any{"new_password": "pw-alice-2", "logout_devices": true, "auth": map[string]any{
		"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": "pw-alice-1"}})
	if whoami("D4") != 401 || whoami("D5") != 401 {
		t.Fatal("after password change with logout: another device's token still works")
	}
	tokens["D5"] = login(t, s, "alice", "pw-alice-2", map[string]any{"device_id": "D5"}).Str("access_token")
	use("D3")
	// Logging in again with an existing device ID replaces its token.
	old := tokens["D3"]
	tokens["D3"] = login(t, s, "alice", "pw-alice-2", map[string]any{"device_id": "D3"}).Str("access_token")
	if st := s.Do(t, "GET", v3+"/account/whoami", old, nil).Status; st != 401 {
		t.Fatalf("replaced token of a re-used device ID: %d", st)
	}
	use("D3", "D5")
	s.MustOK(t, "POST", v3+"/logout/all", tokens["D3"], map[string]any{})
	if whoami("D3") != 401 || whoami("D5") != 401 {
		t.Fatal("after logout/all a token still works")
	}
	tokens["D6"] = login(t, s, "alice", "pw-alice-2", nil).Str("access_token")
	use("D6")
	s.MustOK(t, "POST", v3+"/account/deactivate", tokens["D6"], map[string]any{"auth": map[string]any{
		"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": "pw-alice-2"}})
	if st := whoami("D6"); st != 401 {
		t.Fatalf("after deactivation: %d", st)
	}
}
