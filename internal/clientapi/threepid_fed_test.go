package clientapi_test

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/mail/mailtest"
	"conclave/internal/threepid"
)

// A circle of a ministry server (ministry.fr) and the externals' server
// (everything else), one domain map, one mail server.
func emailCircle(t *testing.T) (ministry, external *hstest.Server, smtp *mailtest.Server) {
	t.Helper()
	smtp = mailtest.Start(t, mailtest.Options{})
	domains := filepath.Join(t.TempDir(), "domains")
	servers := hstest.StartFederationEach(t, 2, func(i int, c *config.Config) {
		if i == 0 {
			os.WriteFile(domains, []byte("ministry.fr "+c.FederationAllow[0]+"\n* "+c.FederationAllow[1]+"\n"), 0o600)
		}
		c.EmailDomains = domains
		c.SMTPURL, c.SMTPFrom, c.PublicBaseURL = smtp.URL, "noreply@ministry.fr", "https://matrix.ministry.fr"
	})
	return servers[0], servers[1], smtp
}

func info(t *testing.T, s *hstest.Server, address string) *hstest.Response {
	t.Helper()
	return s.MustOK(t, "GET", "/_matrix/identity/api/v1/info?"+url.Values{"medium": {"email"}, "address": {address}}.Encode(), "", nil)
}

// An external registers only after a member of a ministry invited the
// address; every server of the circle answers /info alike; a colleague's
// Matrix ID is found from the address across the circle.
func TestExternalInvitedByEmailAcrossServers(t *testing.T) {
	a, b, smtp := emailCircle(t)
	jean := registerByEmail(t, a, smtp, "jean@ministry.fr", "Pass-word-1")

	for _, s := range []*hstest.Server{a, b} {
		if r := info(t, s, "Jean@ministry.fr"); r.Str("hs") != a.ServerName || r.JSON["invited"] != false || r.JSON["new_hs"] != nil {
			t.Fatalf("info jean on %s: %s", s.ServerName, r.Body)
		}
		if r := info(t, s, "ext@gmail.com"); r.Str("hs") != b.ServerName || r.JSON["invited"] != false {
			t.Fatalf("info ext on %s: %s", s.ServerName, r.Body)
		}
	}
	expectErr(t, a.Do(t, "GET", "/_matrix/identity/api/v1/info?medium=msisdn&address=33600000000", "", nil), http.StatusBadRequest, "M_THREEPID_MEDIUM_NOT_SUPPORTED")

	// No invite yet: the external server refuses the address.
	expectErr(t, requestToken(t, b, "/register/email/requestToken", "ext@gmail.com", "e-1", 1), http.StatusForbidden, "M_THREEPID_DENIED")
	// Nor does the ministry take it.
	expectErr(t, requestToken(t, a, "/register/email/requestToken", "ext@gmail.com", "e-1", 1), http.StatusForbidden, "M_THREEPID_DENIED")

	// A restricted room refuses an external's address; an unrestricted one
	// takes it.
	restricted := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", jean, map[string]any{}).Str("room_id")
	invite3pid := func(roomID, address string) *hstest.Response {
		return a.Do(t, "POST", hstest.Path("/rooms/%s/invite", roomID), jean, map[string]string{"id_server": "matrix.ministry.fr", "medium": "email", "address": address})
	}
	expectErr(t, invite3pid(restricted, "ext@gmail.com"), http.StatusForbidden, "M_FORBIDDEN")
	open := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", jean, map[string]any{
		"initial_state": []any{map[string]any{"type": "im.vector.room.access_rules", "state_key": "", "content": map[string]string{"rule": "unrestricted"}}},
	}).Str("room_id")
	if r := invite3pid(open, "ext@gmail.com"); r.Status != 200 {
		t.Fatalf("3pid invite: %d %s", r.Status, r.Body)
	}
	// The room shows the pending invite, without the address.
	st := a.MustOK(t, "GET", hstest.Path("/rooms/%s/state", open), jean, nil)
	if !containsThirdPartyInvite(st.Body, "ext…@gmail.com") {
		t.Fatalf("no third-party invite in the room state: %s", st.Body)
	}
	// The externals' server recorded it and told the person.
	m := smtp.Wait(t, "ext@gmail.com", 1)
	if m.Subject != "You are invited to "+b.ServerName {
		t.Errorf("invitation mail: %q", m.Subject)
	}
	for _, s := range []*hstest.Server{a, b} {
		if r := info(t, s, "ext@gmail.com"); r.Str("hs") != b.ServerName || r.JSON["invited"] != true {
			t.Fatalf("info ext on %s after the invite: %s", s.ServerName, r.Body)
		}
	}
	// A direct chat with an external, by e-mail (Tchap's usual way): one
	// e-mail invite is all the room takes.
	dm := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", jean, map[string]any{"is_direct": true, "preset": "trusted_private_chat"}).Str("room_id")
	if r := invite3pid(dm, "ext@gmail.com"); r.Status != 200 {
		t.Fatalf("3pid invite into a direct room: %d %s", r.Status, r.Body)
	}
	expectErr(t, invite3pid(dm, "someone.else@gmail.com"), http.StatusForbidden, "M_FORBIDDEN")

	ext := registerByEmail(t, b, smtp, "ext@gmail.com", "Pass-word-2")
	extID := b.MustOK(t, "GET", "/_matrix/client/v3/account/whoami", ext, nil).Str("user_id")
	if extID != "@ext-gmail.com:"+b.ServerName {
		t.Fatalf("external's user ID %q", extID)
	}
	// The e-mail invites became invites of the new account (signed by the
	// inviter's server, the key its m.room.third_party_invite named), and
	// the external joins both rooms.
	for _, roomID := range []string{open, dm} {
		mem := a.MustOK(t, "GET", hstest.Path("/rooms/%s/state/m.room.member/%s", roomID, extID), jean, nil)
		if mem.Str("membership") != "invite" || mem.JSON["third_party_invite"] == nil {
			t.Fatalf("membership of the external in %s: %s", roomID, mem.Body)
		}
		b.MustOK(t, "POST", hstest.Path("/join/%s", roomID), ext, map[string]any{})
	}
	if r := info(t, b, "ext@gmail.com"); r.Str("hs") != b.ServerName {
		t.Fatalf("info after registration: %s", r.Body)
	}

	// Finding a colleague: signed-in users only, sha256 with the pepper.
	expectErr(t, a.Do(t, "GET", "/_matrix/identity/v2/hash_details", "", nil), http.StatusUnauthorized, "M_MISSING_TOKEN")
	hd := a.MustOK(t, "GET", "/_matrix/identity/v2/hash_details", jean, nil)
	pepper := hd.Str("lookup_pepper")
	hash := func(addr string) string { return threepid.LookupHash(addr, "email", pepper) }
	r := a.Do(t, "POST", "/_matrix/identity/v2/lookup", jean, map[string]any{"algorithm": "sha256", "pepper": "wrong", "addresses": []string{hash("ext@gmail.com")}})
	if r.Status != 400 || r.Errcode() != "M_INVALID_PEPPER" || r.Str("lookup_pepper") != pepper {
		t.Fatalf("wrong pepper: %d %s", r.Status, r.Body)
	}
	r = a.MustOK(t, "POST", "/_matrix/identity/v2/lookup", jean, map[string]any{"algorithm": "sha256", "pepper": pepper,
		"addresses": []string{hash("ext@gmail.com"), hash("jean@ministry.fr"), hash("nobody@ministry.fr")}})
	mappings, _ := r.JSON["mappings"].(map[string]any)
	if len(mappings) != 2 || mappings[hash("ext@gmail.com")] != extID || mappings[hash("jean@ministry.fr")] != "@jean-ministry.fr:"+a.ServerName {
		t.Fatalf("lookup: %s", r.Body)
	}
	// The external's server answers for the ministry's people too.
	r = b.MustOK(t, "POST", "/_matrix/identity/v2/lookup", ext, map[string]any{"algorithm": "sha256", "pepper": pepper, "addresses": []string{hash("jean@ministry.fr")}})
	if m, _ := r.JSON["mappings"].(map[string]any); m[hash("jean@ministry.fr")] != "@jean-ministry.fr:"+a.ServerName {
		t.Fatalf("lookup from the external server: %s", r.Body)
	}

	// As Element and Tchap use an identity service: an OpenID token from
	// the user's own server, traded at any server of the circle for an
	// identity token.
	openid := b.MustOK(t, "POST", hstest.Path("/user/%s/openid/request_token", extID), ext, map[string]any{})
	if openid.Str("token_type") != "Bearer" || openid.Str("matrix_server_name") != b.ServerName || openid.JSON["expires_in"] != float64(3600) {
		t.Fatalf("openid token: %s", openid.Body)
	}
	expectErr(t, b.Do(t, "POST", hstest.Path("/user/%s/openid/request_token", "@jean-ministry.fr:"+a.ServerName), ext, map[string]any{}), http.StatusForbidden, "M_FORBIDDEN")
	register := func(tok, server string) *hstest.Response {
		return a.Do(t, "POST", "/_matrix/identity/v2/account/register", "", map[string]any{"access_token": tok, "token_type": "Bearer", "matrix_server_name": server, "expires_in": 3600})
	}
	expectErr(t, register("forged", b.ServerName), http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
	expectErr(t, register(openid.Str("access_token"), "elsewhere.example"), http.StatusForbidden, "M_FORBIDDEN")
	isToken := register(openid.Str("access_token"), b.ServerName).Str("token")
	if isToken == "" {
		t.Fatal("no identity token")
	}
	if r := a.MustOK(t, "GET", "/_matrix/identity/v2/account", isToken, nil); r.Str("user_id") != extID {
		t.Fatalf("identity account: %s", r.Body)
	}
	r = a.MustOK(t, "POST", "/_matrix/identity/v2/lookup", isToken, map[string]any{"algorithm": "sha256", "pepper": pepper, "addresses": []string{hash("jean@ministry.fr")}})
	if m, _ := r.JSON["mappings"].(map[string]any); m[hash("jean@ministry.fr")] != "@jean-ministry.fr:"+a.ServerName {
		t.Fatalf("lookup with an identity token: %s", r.Body)
	}
	a.MustOK(t, "POST", "/_matrix/identity/v2/account/logout", isToken, nil)
	expectErr(t, a.Do(t, "GET", "/_matrix/identity/v2/hash_details", isToken, nil), http.StatusUnauthorized, "M_UNKNOWN_TOKEN")

	// Now that the address has an account, an invite by e-mail is an
	// ordinary invite of that account.
	third := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", jean, map[string]any{
		"initial_state": []any{map[string]any{"type": "im.vector.room.access_rules", "state_key": "", "content": map[string]string{"rule": "unrestricted"}}},
	}).Str("room_id")
	if r := invite3pid(third, "EXT@gmail.com"); r.Status != 200 {
		t.Fatalf("3pid invite of a bound address: %d %s", r.Status, r.Body)
	}
	mem := a.MustOK(t, "GET", hstest.Path("/rooms/%s/state/m.room.member/%s", third, extID), jean, nil)
	if mem.Str("membership") != "invite" || mem.JSON["third_party_invite"] != nil {
		t.Fatalf("membership of the external: %s", mem.Body)
	}
	// The map's catch-all server is the externals': the restricted room
	// refuses them, by address and by user ID alike.
	expectErr(t, invite3pid(restricted, "ext@gmail.com"), http.StatusForbidden, "M_FORBIDDEN")
	expectErr(t, a.Do(t, "POST", hstest.Path("/rooms/%s/invite", restricted), jean, map[string]string{"user_id": extID}), http.StatusForbidden, "M_FORBIDDEN")
}

func containsThirdPartyInvite(body []byte, display string) bool {
	var events []struct {
		Type    string `json:"type"`
		Content struct {
			DisplayName string `json:"display_name"`
		} `json:"content"`
	}
	if err := jsonUnmarshal(body, &events); err != nil {
		return false
	}
	for _, e := range events {
		if e.Type == "m.room.third_party_invite" && e.Content.DisplayName == display {
			return true
		}
	}
	return false
}
