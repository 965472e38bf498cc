package main

import (
	"bytes"
	"strings"
	"testing"

	"conclave/internal/homeserver/hstest"
)

func TestAdminRegisterEndToEnd(t *testing.T) {
	s := hstest.Start(t)
	var out, errb bytes.Buffer
	code := run([]string{"admin", "register", "--url", s.URL, "--secret", "test-shared-secret", "--user", "Boss", "--password", "pw", "--admin"}, &out, &errb)
	if code != 0 || strings.TrimSpace(out.String()) != "@boss:localhost" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
	if u, err := s.HS.Store.GetUser(t.Context(), "@boss:localhost"); err != nil || !u.IsAdmin {
		t.Fatalf("user: %+v %v", u, err)
	}
	// The new user can log in with the password.
	s.MustOK(t, "POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password", "user": "boss", "password": "pw"})

	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"admin", "register", "--url", s.URL, "--secret", "wrong", "--user", "x", "--password", "pw"}, 1, "M_FORBIDDEN"},
		{[]string{"admin", "register", "--url", s.URL, "--secret", "test-shared-secret", "--user", "boss", "--password", "pw"}, 1, "M_USER_IN_USE"},
		{[]string{"admin", "register", "--url", "http://127.0.0.1:1", "--secret", "s", "--user", "x", "--password", "pw"}, 1, "conclave admin register:"},
		{[]string{"admin", "register", "--url", s.URL, "--user", "x", "--password", "pw"}, 2, "required"},
		{[]string{"admin", "register", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"admin"}, 2, "usage"},
	}
	for _, c := range cases {
		out.Reset()
		errb.Reset()
		code := run(c.args, &out, &errb)
		first, _, _ := strings.Cut(errb.String(), "\n")
		if code != c.code || !strings.Contains(first, c.want) || out.Len() != 0 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", c.args, code, out.String(), errb.String())
		}
	}
}
