package storetest

import (
	"fmt"
	"testing"

	"conclave/internal/store"
)

func testThreepidSessions(t *testing.T, s store.Store) {
	_, err := s.ThreepidSession(ctx(), "nope")
	wantErr(t, err, store.ErrNotFound)
	first := &store.ThreepidSession{SID: "sid1", ClientSecret: "cs", Medium: "email", Address: "a@x.org", Purpose: "register",
		SendAttempt: 1, TokenHash: []byte{1}, CreatedTS: 10, TokenExpiresTS: 20, ExpiresTS: 30}
	got, resend, err := s.StartThreepidSession(ctx(), first)
	must(t, err)
	if !resend || got.SID != "sid1" {
		t.Fatalf("new session: %+v resend %v", got, resend)
	}
	// The same attempt again: the same session, no new mail.
	again := *first
	again.SID, again.TokenHash = "sid2", []byte{2}
	got, resend, err = s.StartThreepidSession(ctx(), &again)
	must(t, err)
	if resend || got.SID != "sid1" || string(got.TokenHash) != "\x01" {
		t.Fatalf("same attempt: %+v resend %v", got, resend)
	}
	must(t, s.ValidateThreepidSession(ctx(), "sid1", 15))
	must(t, s.ValidateThreepidSession(ctx(), "sid1", 16))
	got, err = s.ThreepidSession(ctx(), "sid1")
	must(t, err)
	equal(t, "validated once", got.ValidatedTS, int64(15))
	n, err := s.ThreepidTokenFailed(ctx(), "sid1")
	must(t, err)
	equal(t, "failures", n, 1)
	n, _ = s.ThreepidTokenFailed(ctx(), "sid1")
	equal(t, "failures", n, 2)
	// A higher attempt: same SID, new token, failures reset.
	again.SendAttempt, again.TokenExpiresTS, again.ExpiresTS = 2, 40, 50
	got, resend, err = s.StartThreepidSession(ctx(), &again)
	must(t, err)
	if !resend || got.SID != "sid1" || string(got.TokenHash) != "\x02" || got.Failures != 0 || got.ExpiresTS != 50 {
		t.Fatalf("next attempt: %+v resend %v", got, resend)
	}
	got, _ = s.ThreepidSession(ctx(), "sid1")
	if string(got.TokenHash) != "\x02" || got.Failures != 0 || got.SendAttempt != 2 || got.ValidatedTS != 15 {
		t.Fatalf("stored: %+v", got)
	}
	// Another purpose is another session.
	other := *first
	other.SID, other.Purpose = "sid3", "password"
	got, resend, err = s.StartThreepidSession(ctx(), &other)
	must(t, err)
	if !resend || got.SID != "sid3" {
		t.Fatalf("other purpose: %+v", got)
	}
	wantErr(t, s.ValidateThreepidSession(ctx(), "nope", 1), store.ErrNotFound)
	_, err = s.ThreepidTokenFailed(ctx(), "nope")
	wantErr(t, err, store.ErrNotFound)
	must(t, s.DeleteExpiredThreepidSessions(ctx(), 40))
	_, err = s.ThreepidSession(ctx(), "sid3")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.ThreepidSession(ctx(), "sid1")
	must(t, err)
}

func testThreepids(t *testing.T, s store.Store) {
	for _, u := range []string{"@a:x", "@b:x"} {
		must(t, s.CreateUser(ctx(), &store.User{UserID: u, CreatedTS: 1}))
	}
	must(t, s.AddThreepid(ctx(), &store.Threepid{UserID: "@a:x", Medium: "email", Address: "a@x.org", ValidatedTS: 1, AddedTS: 2, LookupHash: "ha"}))
	must(t, s.AddThreepid(ctx(), &store.Threepid{UserID: "@a:x", Medium: "email", Address: "a2@x.org", ValidatedTS: 3, AddedTS: 4, LookupHash: "ha2"}))
	// Again by the same user: nothing changes; by another: a conflict.
	must(t, s.AddThreepid(ctx(), &store.Threepid{UserID: "@a:x", Medium: "email", Address: "a@x.org", ValidatedTS: 9, AddedTS: 9, LookupHash: "ha"}))
	wantErr(t, s.AddThreepid(ctx(), &store.Threepid{UserID: "@b:x", Medium: "email", Address: "a@x.org", ValidatedTS: 5, AddedTS: 5, LookupHash: "ha"}), store.ErrConflict)
	list, err := s.UserThreepids(ctx(), "@a:x")
	must(t, err)
	equal(t, "list", list, []store.Threepid{
		{UserID: "@a:x", Medium: "email", Address: "a@x.org", ValidatedTS: 1, AddedTS: 2, LookupHash: "ha"},
		{UserID: "@a:x", Medium: "email", Address: "a2@x.org", ValidatedTS: 3, AddedTS: 4, LookupHash: "ha2"},
	})
	u, err := s.UserByThreepid(ctx(), "email", "a2@x.org")
	must(t, err)
	equal(t, "owner", u, "@a:x")
	_, err = s.UserByThreepid(ctx(), "email", "b@x.org")
	wantErr(t, err, store.ErrNotFound)
	hashes := []string{"ha", "nope", "ha2"}
	for i := 0; i < 997; i++ {
		hashes = append(hashes, fmt.Sprintf("filler%d", i))
	}
	m, err := s.UsersByLookupHash(ctx(), hashes)
	must(t, err)
	equal(t, "lookup", m, map[string]string{"ha": "@a:x", "ha2": "@a:x"})
	ok, err := s.DeleteThreepid(ctx(), "@b:x", "email", "a@x.org")
	must(t, err)
	equal(t, "not b's", ok, false)
	ok, err = s.DeleteThreepid(ctx(), "@a:x", "email", "a@x.org")
	must(t, err)
	equal(t, "deleted", ok, true)
	must(t, s.AddThreepid(ctx(), &store.Threepid{UserID: "@b:x", Medium: "email", Address: "a@x.org", ValidatedTS: 5, AddedTS: 5, LookupHash: "ha"}))
	// Deactivation unbinds.
	must(t, s.Deactivate(ctx(), "@a:x"))
	list, err = s.UserThreepids(ctx(), "@a:x")
	must(t, err)
	equal(t, "after deactivation", list, []store.Threepid(nil))
	u, _ = s.UserByThreepid(ctx(), "email", "a@x.org")
	equal(t, "b keeps hers", u, "@b:x")

	// Invites.
	list2, err := s.ThreepidInvites(ctx(), "email", "e@ext.org")
	must(t, err)
	equal(t, "no invites", list2, []store.ThreepidInvite(nil))
	for i, inv := range []store.ThreepidInvite{
		{Medium: "email", Address: "e@ext.org", RoomID: "!r2:x", Sender: "@a:x", CreatedTS: 2},
		{Medium: "email", Address: "e@ext.org", RoomID: "!r1:x", Sender: "@a:x", CreatedTS: 1},
		{Medium: "email", Address: "e@ext.org", RoomID: "!r1:x", Sender: "@a:x", Token: "tok", CreatedTS: 3}, // again, with a token
		{Medium: "email", Address: "f@ext.org", RoomID: "!r1:x", Sender: "@b:y", CreatedTS: 4},
	} {
		inv := inv
		if err := s.AddThreepidInvite(ctx(), &inv); err != nil {
			t.Fatalf("invite %d: %v", i, err)
		}
	}
	list2, err = s.ThreepidInvites(ctx(), "email", "e@ext.org")
	must(t, err)
	equal(t, "invites", list2, []store.ThreepidInvite{
		{Medium: "email", Address: "e@ext.org", RoomID: "!r1:x", Sender: "@a:x", Token: "tok", CreatedTS: 1},
		{Medium: "email", Address: "e@ext.org", RoomID: "!r2:x", Sender: "@a:x", CreatedTS: 2},
	})
	must(t, s.DeleteThreepidInvites(ctx(), "email", "e@ext.org"))
	list2, _ = s.ThreepidInvites(ctx(), "email", "e@ext.org")
	equal(t, "deleted invites", list2, []store.ThreepidInvite(nil))
	list2, _ = s.ThreepidInvites(ctx(), "email", "f@ext.org")
	equal(t, "other address kept", len(list2), 1)
}

func testIdentityTokens(t *testing.T, s store.Store) {
	must(t, s.PutOpenIDToken(ctx(), []byte("o1"), "@a:x", 100, 0))
	u, err := s.OpenIDTokenUser(ctx(), []byte("o1"), 100)
	must(t, err)
	equal(t, "openid user", u, "@a:x")
	_, err = s.OpenIDTokenUser(ctx(), []byte("o1"), 101)
	wantErr(t, err, store.ErrNotFound)
	// A new token sweeps the expired ones.
	must(t, s.PutOpenIDToken(ctx(), []byte("o2"), "@b:x", 300, 200))
	_, err = s.OpenIDTokenUser(ctx(), []byte("o1"), 0)
	wantErr(t, err, store.ErrNotFound)
	u, _ = s.OpenIDTokenUser(ctx(), []byte("o2"), 250)
	equal(t, "second", u, "@b:x")

	_, err = s.IdentityTokenUser(ctx(), []byte("i1"))
	wantErr(t, err, store.ErrNotFound)
	must(t, s.PutIdentityToken(ctx(), []byte("i1"), "@c:y", 1))
	u, err = s.IdentityTokenUser(ctx(), []byte("i1"))
	must(t, err)
	equal(t, "identity user", u, "@c:y")
	must(t, s.DeleteIdentityToken(ctx(), []byte("i1")))
	_, err = s.IdentityTokenUser(ctx(), []byte("i1"))
	wantErr(t, err, store.ErrNotFound)
}
