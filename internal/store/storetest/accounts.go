package storetest

import (
	"bytes"
	"testing"

	"conclave/internal/store"
)

func newDevice(t *testing.T, s store.Store, user, device string, token string) {
	t.Helper()
	must(t, s.CreateDevice(ctx(), &store.Device{UserID: user, DeviceID: device, CreatedTS: 5}, store.NewToken{AccessHash: []byte(token)}))
}

func newUser(t *testing.T, s store.Store, user string) {
	t.Helper()
	must(t, s.CreateUser(ctx(), &store.User{UserID: user, CreatedTS: 1}))
}

func testUsers(t *testing.T, s store.Store) {
	must(t, s.CreateUser(ctx(), &store.User{UserID: "@Alice:x", PasswordHash: "h", IsAdmin: true, CreatedTS: 7}))
	wantErr(t, s.CreateUser(ctx(), &store.User{UserID: "@alice:x", CreatedTS: 8}), store.ErrConflict)
	wantErr(t, s.CreateUser(ctx(), &store.User{UserID: "@Alice:x", CreatedTS: 8}), store.ErrConflict)
	u, err := s.GetUser(ctx(), "@Alice:x")
	must(t, err)
	if u.PasswordHash != "h" || !u.IsAdmin || u.IsGuest || u.Deactivated || u.CreatedTS != 7 {
		t.Fatalf("user %+v", u)
	}
	_, err = s.GetUser(ctx(), "@alice:x")
	wantErr(t, err, store.ErrNotFound)
	id, err := s.UserIDCaseless(ctx(), "@ALICE:X")
	must(t, err)
	equal(t, "caseless", id, "@Alice:x")
	_, err = s.UserIDCaseless(ctx(), "@bob:x")
	wantErr(t, err, store.ErrNotFound)
	if taken, err := s.UserIDTaken(ctx(), "@alice:X"); err != nil || !taken {
		t.Fatalf("taken %v %v", taken, err)
	}
	if taken, err := s.UserIDTaken(ctx(), "@bob:x"); err != nil || taken {
		t.Fatalf("bob taken %v %v", taken, err)
	}
	must(t, s.CreateUser(ctx(), &store.User{UserID: "@guest:x", IsGuest: true, CreatedTS: 1}))
	if g, _ := s.GetUser(ctx(), "@guest:x"); g == nil || !g.IsGuest {
		t.Fatalf("guest %+v", g)
	}
	wantErr(t, s.SetPassword(ctx(), "@nobody:x", "h2", nil), store.ErrNotFound)

	// SetPassword with logout keeps only the named device.
	newDevice(t, s, "@Alice:x", "A", "tokA")
	newDevice(t, s, "@Alice:x", "B", "tokB")
	newDevice(t, s, "@Alice:x", "C", "tokC")
	keep := "B"
	must(t, s.SetPassword(ctx(), "@Alice:x", "h2", &keep))
	devs, err := s.ListDevices(ctx(), "@Alice:x")
	must(t, err)
	if len(devs) != 1 || devs[0].DeviceID != "B" {
		t.Fatalf("devices after password change: %+v", devs)
	}
	_, err = s.SessionByToken(ctx(), []byte("tokA"))
	wantErr(t, err, store.ErrNotFound)
	if _, err := s.SessionByToken(ctx(), []byte("tokB")); err != nil {
		t.Fatal(err)
	}
	u, _ = s.GetUser(ctx(), "@Alice:x")
	equal(t, "password", u.PasswordHash, "h2")
}

func testDevicesAndTokens(t *testing.T, s store.Store) {
	newUser(t, s, "@a:x")
	name := "Phone"
	must(t, s.CreateDevice(ctx(), &store.Device{UserID: "@a:x", DeviceID: "D1", DisplayName: &name, CreatedTS: 10, LastSeenTS: 10, LastSeenIP: "1.2.3.4"},
		store.NewToken{AccessHash: []byte("t1"), ExpiresTS: 99}))
	sess, err := s.SessionByToken(ctx(), []byte("t1"))
	must(t, err)
	if sess.UserID != "@a:x" || sess.DeviceID != "D1" || sess.ExpiresTS != 99 || sess.RefreshPending {
		t.Fatalf("session %+v", sess)
	}
	_, err = s.SessionByToken(ctx(), []byte("nope"))
	wantErr(t, err, store.ErrNotFound)

	// The same device ID again: old tokens go, the name stays when none is given.
	must(t, s.CreateDevice(ctx(), &store.Device{UserID: "@a:x", DeviceID: "D1", CreatedTS: 20}, store.NewToken{AccessHash: []byte("t2")}))
	_, err = s.SessionByToken(ctx(), []byte("t1"))
	wantErr(t, err, store.ErrNotFound)
	d, err := s.GetDevice(ctx(), "@a:x", "D1")
	must(t, err)
	if d.DisplayName == nil || *d.DisplayName != "Phone" || d.CreatedTS != 10 {
		t.Fatalf("device %+v", d)
	}
	// A token hash is unique.
	wantErr(t, s.CreateDevice(ctx(), &store.Device{UserID: "@a:x", DeviceID: "D2", CreatedTS: 20}, store.NewToken{AccessHash: []byte("t2")}), store.ErrConflict)
	if _, err := s.GetDevice(ctx(), "@a:x", "D2"); err != store.ErrNotFound {
		t.Fatalf("device of a failed CreateDevice exists: %v", err)
	}
	newDevice(t, s, "@a:x", "B0", "t3")
	newDevice(t, s, "@a:x", "a0", "t4")
	devs, err := s.ListDevices(ctx(), "@a:x")
	must(t, err)
	var ids []string
	for _, d := range devs {
		ids = append(ids, d.DeviceID)
	}
	equal(t, "devices in byte order", ids, []string{"B0", "D1", "a0"})
	_, err = s.GetDevice(ctx(), "@a:x", "nope")
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, s.SetDeviceName(ctx(), "@a:x", "nope", "n"), store.ErrNotFound)
	must(t, s.SetDeviceName(ctx(), "@a:x", "B0", "Laptop"))
	must(t, s.TouchDevices(ctx(), []store.DeviceSeen{{UserID: "@a:x", DeviceID: "B0", IP: "5.6.7.8", TS: 77}, {UserID: "@a:x", DeviceID: "gone", IP: "1.1.1.1", TS: 78}}))
	d, _ = s.GetDevice(ctx(), "@a:x", "B0")
	if *d.DisplayName != "Laptop" || d.LastSeenTS != 77 || d.LastSeenIP != "5.6.7.8" {
		t.Fatalf("device %+v", d)
	}
	// An older sighting written late does not move the device back.
	must(t, s.TouchDevices(ctx(), []store.DeviceSeen{{UserID: "@a:x", DeviceID: "B0", IP: "9.9.9.9", TS: 70}}))
	d, _ = s.GetDevice(ctx(), "@a:x", "B0")
	if d.LastSeenTS != 77 || d.LastSeenIP != "5.6.7.8" {
		t.Fatalf("device after an older sighting %+v", d)
	}
	must(t, s.DeleteToken(ctx(), []byte("t3")))
	_, err = s.SessionByToken(ctx(), []byte("t3"))
	wantErr(t, err, store.ErrNotFound)
	must(t, s.DeleteDevices(ctx(), "@a:x", []string{"B0", "nope"}))
	must(t, s.DeleteAllDevices(ctx(), "@a:x"))
	devs, _ = s.ListDevices(ctx(), "@a:x")
	if len(devs) != 0 {
		t.Fatalf("devices left: %+v", devs)
	}
	_, err = s.SessionByToken(ctx(), []byte("t4"))
	wantErr(t, err, store.ErrNotFound)
}

func testRefreshTokens(t *testing.T, s store.Store) {
	newUser(t, s, "@a:x")
	must(t, s.CreateDevice(ctx(), &store.Device{UserID: "@a:x", DeviceID: "D"}, store.NewToken{AccessHash: []byte("a1"), RefreshHash: []byte("r1"), ExpiresTS: 10}))
	_, err := s.RotateRefreshToken(ctx(), []byte("unknown"), store.NewToken{AccessHash: []byte("x"), RefreshHash: []byte("y")}, 1)
	wantErr(t, err, store.ErrNotFound)
	sess, err := s.RotateRefreshToken(ctx(), []byte("r1"), store.NewToken{AccessHash: []byte("a2"), RefreshHash: []byte("r2"), ExpiresTS: 20}, 1)
	must(t, err)
	if sess.UserID != "@a:x" || sess.DeviceID != "D" || sess.ExpiresTS != 20 {
		t.Fatalf("session %+v", sess)
	}
	_, err = s.SessionByToken(ctx(), []byte("a1"))
	wantErr(t, err, store.ErrNotFound)
	s2, err := s.SessionByToken(ctx(), []byte("a2"))
	must(t, err)
	if !s2.RefreshPending {
		t.Fatal("new pair should be pending")
	}
	// Retrying with r1 replaces the unused pair a2/r2.
	if _, err := s.RotateRefreshToken(ctx(), []byte("r1"), store.NewToken{AccessHash: []byte("a3"), RefreshHash: []byte("r3")}, 2); err != nil {
		t.Fatal(err)
	}
	_, err = s.SessionByToken(ctx(), []byte("a2"))
	wantErr(t, err, store.ErrNotFound)
	_, err = s.RotateRefreshToken(ctx(), []byte("r2"), store.NewToken{AccessHash: []byte("x"), RefreshHash: []byte("y")}, 1)
	wantErr(t, err, store.ErrNotFound)
	// Using a3 confirms it: r1 is gone for good.
	must(t, s.ConfirmRefresh(ctx(), []byte("a3")))
	s3, err := s.SessionByToken(ctx(), []byte("a3"))
	must(t, err)
	if s3.RefreshPending {
		t.Fatal("confirmed pair still pending")
	}
	_, err = s.RotateRefreshToken(ctx(), []byte("r1"), store.NewToken{AccessHash: []byte("a4"), RefreshHash: []byte("r4")}, 3)
	wantErr(t, err, store.ErrNotFound)
	if _, err := s.RotateRefreshToken(ctx(), []byte("r3"), store.NewToken{AccessHash: []byte("a5"), RefreshHash: []byte("r5")}, 3); err != nil {
		t.Fatal(err)
	}
	// Deleting the device takes the kept refresh token along.
	must(t, s.DeleteDevices(ctx(), "@a:x", []string{"D"}))
	_, err = s.RotateRefreshToken(ctx(), []byte("r3"), store.NewToken{AccessHash: []byte("a6"), RefreshHash: []byte("r6")}, 4)
	wantErr(t, err, store.ErrNotFound)
}

func testDeactivate(t *testing.T, s store.Store) {
	must(t, s.CreateUser(ctx(), &store.User{UserID: "@a:x", PasswordHash: "h", CreatedTS: 1}))
	newDevice(t, s, "@a:x", "D1", "t1")
	newDevice(t, s, "@a:x", "D2", "t2")
	must(t, s.Deactivate(ctx(), "@a:x"))
	u, err := s.GetUser(ctx(), "@a:x")
	must(t, err)
	if !u.Deactivated || u.PasswordHash != "" {
		t.Fatalf("user %+v", u)
	}
	if devs, _ := s.ListDevices(ctx(), "@a:x"); len(devs) != 0 {
		t.Fatalf("devices %+v", devs)
	}
	_, err = s.SessionByToken(ctx(), []byte("t2"))
	wantErr(t, err, store.ErrNotFound)
	// A token of a deactivated user does not resolve even if one is left.
	must(t, s.CreateDevice(ctx(), &store.Device{UserID: "@a:x", DeviceID: "D3"}, store.NewToken{AccessHash: []byte("t3")}))
	_, err = s.SessionByToken(ctx(), []byte("t3"))
	wantErr(t, err, store.ErrNotFound)
}

func testProfiles(t *testing.T, s store.Store) {
	_, err := s.GetProfile(ctx(), "@a:x")
	wantErr(t, err, store.ErrNotFound)
	must(t, s.SetDisplayName(ctx(), "@a:x", "Alice"))
	must(t, s.SetAvatarURL(ctx(), "@a:x", "mxc://x/y"))
	must(t, s.SetDisplayName(ctx(), "@a:x", "Alice B"))
	p, err := s.GetProfile(ctx(), "@a:x")
	must(t, err)
	if p.DisplayName != "Alice B" || p.AvatarURL != "mxc://x/y" || p.UserID != "@a:x" {
		t.Fatalf("profile %+v", p)
	}
	must(t, s.SetAvatarURL(ctx(), "@b:x", "mxc://x/z"))
	p, _ = s.GetProfile(ctx(), "@b:x")
	if p.DisplayName != "" || p.AvatarURL != "mxc://x/z" {
		t.Fatalf("profile %+v", p)
	}
}

var _ = bytes.Equal
