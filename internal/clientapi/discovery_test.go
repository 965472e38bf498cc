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
