package clientapi_test

import (
	"net/http"
	"testing"

	"conclave/internal/homeserver/hstest"
)

func TestVersionsAndUnknownEndpoints(t *testing.T) {
	s := hstest.Start(t)
	r := s.MustOK(t, "GET", "/_matrix/client/versions", "", nil)
	if vs, _ := r.JSON["versions"].([]any); len(vs) == 0 {
		t.Fatalf("no versions: %s", r.Body)
	}
	r = s.Do(t, "GET", "/_matrix/client/v3/no/such/endpoint", "", nil)
	if r.Status != http.StatusNotFound || r.Errcode() != "M_UNRECOGNIZED" {
		t.Fatalf("unknown path: %d %s", r.Status, r.Body)
	}
	r = s.Do(t, "DELETE", "/_matrix/client/versions", "", nil)
	if r.Status != http.StatusMethodNotAllowed || r.Errcode() != "M_UNRECOGNIZED" {
		t.Fatalf("wrong method: %d %s", r.Status, r.Body)
	}
	r = s.Do(t, "OPTIONS", "/_matrix/client/v3/login", "", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("preflight: %d", r.Status)
	}
	r = s.Do(t, "GET", "/_matrix/client/v3/capabilities", "", nil)
	if r.Status != http.StatusUnauthorized || r.Errcode() != "M_MISSING_TOKEN" {
		t.Fatalf("capabilities without token: %d %s", r.Status, r.Body)
	}
	r = s.Do(t, "GET", "/_matrix/client/v3/capabilities", "nonsense", nil)
	if r.Status != http.StatusUnauthorized || r.Errcode() != "M_UNKNOWN_TOKEN" {
		t.Fatalf("capabilities with bad token: %d %s", r.Status, r.Body)
	}
}

func TestCapabilitiesWithToken(t *testing.T) {
	s := hstest.Start(t)
	u := s.CreateUser(t, "alice")
	r := s.MustOK(t, "GET", "/_matrix/client/v3/capabilities", u.Token, nil)
	caps, _ := r.JSON["capabilities"].(map[string]any)
	rv, _ := caps["m.room_versions"].(map[string]any)
	if rv["default"] != "10" {
		t.Fatalf("capabilities: %s", r.Body)
	}
}

// The federation API is served on its own listener, but the client listener
// knows its paths: a known federation or key path asked with the wrong
// method is 405 M_UNRECOGNIZED there too, an unknown one 404 (Client-Server
// API, "Unrecognised requests"; Complement's TestUnknownEndpoints asks the
// client port).
func TestUnknownFederationEndpointsOnClientListener(t *testing.T) {
	s := hstest.StartFederation(t, 1)[0]
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"PUT", "/_matrix/federation/v1/version", http.StatusMethodNotAllowed},
		{"POST", "/_matrix/key/v2/server", http.StatusMethodNotAllowed},
		{"PUT", "/_matrix/key/v2/query", http.StatusMethodNotAllowed},
		{"GET", "/_matrix/federation/unknown", http.StatusNotFound},
		{"GET", "/_matrix/federation/v1/unknown", http.StatusNotFound},
		{"GET", "/_matrix/key/unknown", http.StatusNotFound},
		{"GET", "/_matrix/key/v2/unknown", http.StatusNotFound},
		// Served by the federation listener only.
		{"GET", "/_matrix/federation/v1/version", http.StatusNotFound},
	} {
		r := s.Do(t, c.method, c.path, "", nil)
		if r.Status != c.status || r.Errcode() != "M_UNRECOGNIZED" {
			t.Errorf("%s %s: %d %s, want %d M_UNRECOGNIZED", c.method, c.path, r.Status, r.Body, c.status)
		}
	}
}
