package accounts_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"conclave/internal/accounts"
	"conclave/internal/store/sqlite"
)

// A stage completed out of band (m.login.sso's fallback) counts only for
// the session's own user and only where the endpoint offers it; the
// session alone then finishes the operation, once.
func TestUIAStageOutOfBand(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	svc := accounts.New(db, "localhost", accounts.Options{HashParams: accounts.TestHashParams})
	sso := accounts.UIA{Purpose: "delete_devices", UserID: "@a:localhost", Flows: []accounts.Flow{{Stages: []string{accounts.LoginSSO}}}}
	var ue *accounts.UIAError
	if err := svc.AuthenticateUIA(ctx, sso, nil); !errors.As(err, &ue) {
		t.Fatalf("challenge: %v", err)
	}
	id := ue.Session
	if err := svc.CompleteUIAStage(ctx, id, accounts.LoginSSO, "@b:localhost"); err == nil {
		t.Fatal("another user completed the stage")
	}
	if err := svc.CompleteUIAStage(ctx, "unknown", accounts.LoginSSO, "@a:localhost"); !errors.Is(err, accounts.ErrUnknownUIASession) {
		t.Fatalf("unknown session: %v", err)
	}
	if err := svc.AuthenticateUIA(ctx, sso, &accounts.AuthDict{Session: id}); !errors.As(err, &ue) {
		t.Fatalf("not completed yet: %v", err)
	}
	if err := svc.CompleteUIAStage(ctx, id, accounts.LoginSSO, "@a:localhost"); err != nil {
		t.Fatal(err)
	}
	// An endpoint that does not offer m.login.sso is not satisfied by it.
	pw := sso
	pw.Flows = []accounts.Flow{{Stages: []string{accounts.LoginPassword}}}
	if err := svc.AuthenticateUIA(ctx, pw, &accounts.AuthDict{Session: id}); !errors.As(err, &ue) {
		t.Fatalf("password flows satisfied by sso: %v", err)
	}
	if err := svc.AuthenticateUIA(ctx, sso, &accounts.AuthDict{Session: id}); err != nil {
		t.Fatalf("completed: %v", err)
	}
	if err := svc.AuthenticateUIA(ctx, sso, &accounts.AuthDict{Session: id}); err == nil || errors.As(err, &ue) {
		t.Fatalf("used twice: %v", err)
	}
}
