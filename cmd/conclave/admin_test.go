package main

import (
	"bytes"
	"os"
	"path/filepath"
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

func TestAdminRotateKey(t *testing.T) {
	s := hstest.Start(t)
	first := s.HS.SigningKey
	args := []string{"admin", "rotate-key", "--data-dir", s.Config.DataDir, "--server-name", s.Config.ServerName}
	if s.Config.Database != "" {
		args = append(args, "--database", s.Config.Database)
	}
	var out, errb bytes.Buffer
	if s.Config.Database == "" {
		// SQLite: a running server holds the database.
		if code := run(args, &out, &errb); code != 1 || !strings.Contains(errb.String(), "in use") || out.Len() != 0 {
			t.Fatalf("rotate-key while the server runs: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
		}
		if k, _ := os.ReadFile(filepath.Join(s.Config.DataDir, "signing.key")); !strings.Contains(string(k), first.Version()) {
			t.Fatal("signing.key changed by a refused rotation")
		}
	}
	s.Stop()
	out.Reset()
	errb.Reset()
	if code := run(args, &out, &errb); code != 0 || !strings.Contains(out.String(), first.ID+" is now an old key") {
		t.Fatalf("rotate-key: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
	s = hstest.StartConfig(t, s.Config)
	if s.HS.SigningKey.ID == first.ID || !strings.Contains(out.String(), s.HS.SigningKey.ID+" signs") {
		t.Fatalf("restarted with %s; %s", s.HS.SigningKey.ID, out.String())
	}
	if old := s.HS.Keyring.OwnOldKeys(); len(old) != 1 || old[0].KeyID != first.ID || old[0].PublicKey != first.PublicKeyBase64() {
		t.Fatalf("old keys %+v", old)
	}

	out.Reset()
	if code := run([]string{"admin", "rotate-key", "--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "STOP THE SERVER") {
		t.Fatalf("help: %d %q", code, out.String())
	}
	errb.Reset()
	if code := run([]string{"admin", "rotate-key", "--bogus"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "conclave admin rotate-key:") {
		t.Fatalf("bad flag: %d %q", code, errb.String())
	}
}
