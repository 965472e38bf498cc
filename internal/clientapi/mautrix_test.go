package clientapi_test

import (
	"context"
	"errors"
	"testing"

	"maunium.net/go/mautrix"

	"conclave/internal/homeserver/hstest"
)

// A real client library registers with m.login.dummy, logs in, asks who it
// is, lists and deletes a device with password UIA, and logs out.
func TestMautrixRegisterLogin(t *testing.T) {
	s := hstest.Start(t)
	ctx := context.Background()
	cli, err := mautrix.NewClient(s.URL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := cli.RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: "neo", Password: "follow the white rabbit"})
	if err != nil {
		t.Fatalf("RegisterDummy: %v", err)
	}
	if reg.UserID != "@neo:localhost" || reg.AccessToken == "" {
		t.Fatalf("register: %+v", reg)
	}
	_, err = cli.RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: "neo", Password: "x"})
	if !errors.Is(err, mautrix.MUserInUse) {
		t.Fatalf("second RegisterDummy: %v", err)
	}

	login, err := cli.Login(ctx, &mautrix.ReqLogin{
		Type:       mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "neo"},
		Password:   "follow the white rabbit", InitialDeviceDisplayName: "mautrix", StoreCredentials: true,
	})
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	who, err := cli.Whoami(ctx)
	if err != nil || who.UserID != "@neo:localhost" || who.DeviceID != login.DeviceID {
		t.Fatalf("Whoami: %+v %v", who, err)
	}
	_, err = cli.Login(ctx, &mautrix.ReqLogin{
		Type:       mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "neo"},
		Password:   "wrong",
	})
	if !errors.Is(err, mautrix.MForbidden) {
		t.Fatalf("wrong password: %v", err)
	}

	devs, err := cli.GetDevicesInfo(ctx)
	if err != nil || len(devs.Devices) != 2 {
		t.Fatalf("devices: %+v %v", devs, err)
	}
	// Delete the registration's device with password UIA.
	auth := map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "neo"}, "password": "follow the white rabbit"}
	if err := cli.DeleteDevice(ctx, reg.DeviceID, &mautrix.ReqDeleteDevice[any]{Auth: auth}); err != nil {
		t.Fatalf("DeleteDevice: %v", err)
	}
	old, _ := mautrix.NewClient(s.URL, reg.UserID, reg.AccessToken)
	if _, err := old.Whoami(ctx); !errors.Is(err, mautrix.MUnknownToken) {
		t.Fatalf("deleted device's token: %v", err)
	}
	if _, err := cli.Logout(ctx); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	if _, err := cli.Whoami(ctx); !errors.Is(err, mautrix.MUnknownToken) {
		t.Fatalf("token after logout: %v", err)
	}
}
