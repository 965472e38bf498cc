package storetest

import (
	"sync"
	"testing"

	"conclave/internal/store"
)

func testSSO(t *testing.T, s store.Store) {
	a := &store.SSOAttempt{StateHash: []byte("state1"), BrowserHash: []byte("b"), Nonce: "n", Verifier: "v", IdP: "oidc",
		RedirectURL: "https://app.example/after", ExpiresTS: 100}
	must(t, s.AddSSOAttempt(ctx(), a))
	wantErr(t, s.AddSSOAttempt(ctx(), a), store.ErrConflict)
	got, err := s.TakeSSOAttempt(ctx(), []byte("state1"), 50)
	must(t, err)
	if string(got.BrowserHash) != "b" || got.Nonce != "n" || got.Verifier != "v" || got.IdP != "oidc" || got.RedirectURL != a.RedirectURL || got.ExpiresTS != 100 {
		t.Fatalf("attempt: %+v", got)
	}
	if got.UIASession != "" || got.UserID != "" {
		t.Fatalf("login attempt with a UIA session: %+v", got)
	}
	_, err = s.TakeSSOAttempt(ctx(), []byte("state1"), 50)
	wantErr(t, err, store.ErrNotFound) // taken once
	// An attempt of the m.login.sso fallback page keeps its session and user.
	u := &store.SSOAttempt{StateHash: []byte("state3"), BrowserHash: []byte("b"), Nonce: "n", Verifier: "v", IdP: "oidc",
		ExpiresTS: 100, UIASession: "sess1.mac", UserID: "@a:x"}
	must(t, s.AddSSOAttempt(ctx(), u))
	got, err = s.TakeSSOAttempt(ctx(), []byte("state3"), 50)
	must(t, err)
	if got.UIASession != "sess1.mac" || got.UserID != "@a:x" || got.RedirectURL != "" {
		t.Fatalf("UIA attempt: %+v", got)
	}
	// Expired: not returned, and gone.
	a.StateHash = []byte("state2")
	must(t, s.AddSSOAttempt(ctx(), a))
	_, err = s.TakeSSOAttempt(ctx(), []byte("state2"), 101)
	wantErr(t, err, store.ErrNotFound)

	// UIA sessions offering m.login.sso.
	must(t, s.AddUIASSOSession(ctx(), "u1", "@a:x", "delete_devices", 100))
	must(t, s.AddUIASSOSession(ctx(), "u1", "@b:x", "other", 500)) // already there: unchanged
	if user, purpose, err := s.UIASSOSession(ctx(), "u1", 50); err != nil || user != "@a:x" || purpose != "delete_devices" {
		t.Fatalf("uia session: %q %q %v", user, purpose, err)
	}
	_, _, err = s.UIASSOSession(ctx(), "u1", 101)
	wantErr(t, err, store.ErrNotFound) // expired
	_, _, err = s.UIASSOSession(ctx(), "nope", 50)
	wantErr(t, err, store.ErrNotFound)
	if took, err := s.TakeUIASSO(ctx(), "u1", "@a:x", "delete_devices", 50); err != nil || took {
		t.Fatalf("taken before completion: %v %v", took, err)
	}
	wantErr(t, s.CompleteUIASSO(ctx(), "u1", "@b:x", 50), store.ErrNotFound)  // another user
	wantErr(t, s.CompleteUIASSO(ctx(), "u1", "@a:x", 101), store.ErrNotFound) // expired
	must(t, s.CompleteUIASSO(ctx(), "u1", "@a:x", 50))
	if took, err := s.TakeUIASSO(ctx(), "u1", "@b:x", "delete_devices", 50); err != nil || took {
		t.Fatalf("taken by another user: %v %v", took, err)
	}
	if took, err := s.TakeUIASSO(ctx(), "u1", "@a:x", "other", 50); err != nil || took {
		t.Fatalf("taken for another operation: %v %v", took, err)
	}
	if took, err := s.TakeUIASSO(ctx(), "u1", "@a:x", "delete_devices", 50); err != nil || !took {
		t.Fatalf("take: %v %v", took, err)
	}
	if took, err := s.TakeUIASSO(ctx(), "u1", "@a:x", "delete_devices", 50); err != nil || took {
		t.Fatalf("taken twice: %v %v", took, err)
	}
	must(t, s.AddUIASSOSession(ctx(), "u2", "@a:x", "delete_devices", 100))
	must(t, s.CompleteUIASSO(ctx(), "u2", "@a:x", 50))
	if took, err := s.TakeUIASSO(ctx(), "u2", "@a:x", "delete_devices", 101); err != nil || took {
		t.Fatalf("expired taken: %v %v", took, err)
	}
	must(t, s.AddUIASSOSession(ctx(), "u3", "@a:x", "p", 100))
	must(t, s.DeleteExpiredSSO(ctx(), 150))
	_, _, err = s.UIASSOSession(ctx(), "u3", 10)
	wantErr(t, err, store.ErrNotFound) // deleted as expired

	must(t, s.AddLoginToken(ctx(), []byte("t1"), "@a:x", 100))
	wantErr(t, s.AddLoginToken(ctx(), []byte("t1"), "@b:x", 100), store.ErrConflict)
	must(t, s.AddLoginToken(ctx(), []byte("t2"), "@b:x", 100))
	must(t, s.AddLoginToken(ctx(), []byte("t3"), "@c:x", 200))
	_, err = s.TakeLoginToken(ctx(), []byte("t2"), 101)
	wantErr(t, err, store.ErrNotFound) // expired
	must(t, s.DeleteExpiredSSO(ctx(), 150))
	_, err = s.TakeLoginToken(ctx(), []byte("t1"), 10)
	wantErr(t, err, store.ErrNotFound) // deleted as expired
	// Many takers of one token: exactly one gets it.
	var wg sync.WaitGroup
	var mu sync.Mutex
	winners := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u, err := s.TakeLoginToken(ctx(), []byte("t3"), 150)
			if err == nil && u == "@c:x" {
				mu.Lock()
				winners++
				mu.Unlock()
			} else if err != nil && err != store.ErrNotFound {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	equal(t, "winners", winners, 1)
}

func testAccountValidity(t *testing.T, s store.Store) {
	v, err := s.EnsureAccountValidity(ctx(), "@e:x", 1000)
	must(t, err)
	if v.ExpirationTS != 1000 || !v.RenewalEmails || v.MailSentTS != 0 {
		t.Fatalf("new validity: %+v", v)
	}
	v, err = s.EnsureAccountValidity(ctx(), "@e:x", 5000)
	must(t, err)
	equal(t, "kept", v.ExpirationTS, int64(1000))
	_, err = s.EnsureAccountValidity(ctx(), "@f:x", 2000)
	must(t, err)
	_, err = s.EnsureAccountValidity(ctx(), "@g:x", 9000)
	must(t, err)
	due, err := s.AccountsDueRenewalMail(ctx(), 3000, 10)
	must(t, err)
	equal(t, "due", len(due), 2)
	equal(t, "soonest first", due[0], "@e:x")
	due, _ = s.AccountsDueRenewalMail(ctx(), 3000, 1)
	equal(t, "limit", len(due), 1)
	wantErr(t, s.SetRenewalToken(ctx(), "@nobody:x", []byte("h"), 10), store.ErrNotFound)
	ok, err := s.ClaimRenewalMail(ctx(), "@e:x", []byte("tok-e"), 10)
	must(t, err)
	equal(t, "claimed", ok, true)
	ok, err = s.ClaimRenewalMail(ctx(), "@e:x", []byte("tok-other"), 10)
	must(t, err)
	equal(t, "claimed twice", ok, false)
	due, _ = s.AccountsDueRenewalMail(ctx(), 3000, 10)
	equal(t, "mailed not due", len(due), 1)
	// A newer token replaces the old one.
	must(t, s.SetRenewalToken(ctx(), "@e:x", []byte("tok-e2"), 11))
	_, err = s.RenewAccount(ctx(), []byte("tok-e"), 7000)
	wantErr(t, err, store.ErrNotFound)
	u, err := s.RenewAccount(ctx(), []byte("tok-e2"), 7000)
	must(t, err)
	equal(t, "renewed", u, "@e:x")
	_, err = s.RenewAccount(ctx(), []byte("tok-e2"), 8000)
	wantErr(t, err, store.ErrNotFound) // used
	v, _ = s.EnsureAccountValidity(ctx(), "@e:x", 0)
	if v.ExpirationTS != 7000 || v.MailSentTS != 0 {
		t.Fatalf("after renewal: %+v", v)
	}
	// The admin API: renewal mails off, token forgotten.
	must(t, s.SetRenewalToken(ctx(), "@f:x", []byte("tok-f"), 12))
	must(t, s.SetAccountValidity(ctx(), "@f:x", 2500, false))
	_, err = s.RenewAccount(ctx(), []byte("tok-f"), 9000)
	wantErr(t, err, store.ErrNotFound)
	due, _ = s.AccountsDueRenewalMail(ctx(), 3000, 10)
	equal(t, "mails off", len(due), 0)
	must(t, s.SetAccountValidity(ctx(), "@new:x", 42, true))
	v, _ = s.EnsureAccountValidity(ctx(), "@new:x", 0)
	equal(t, "set creates", v.ExpirationTS, int64(42))
}
