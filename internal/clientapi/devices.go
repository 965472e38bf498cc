package clientapi

import (
	"net/http"
	"strings"

	"conclave/internal/accounts"
	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/store"
)

// Device management: Client-Server API, "Device Management".

func (a *API) registerDevices(mux Mux) {
	handle(mux, "GET", "/devices", a.authed(a.listDevices))
	handle(mux, "GET", "/devices/{deviceId}", a.authed(a.getDevice))
	handle(mux, "PUT", "/devices/{deviceId}", a.authed(a.putDevice))
	handle(mux, "DELETE", "/devices/{deviceId}", a.authed(a.deleteDevice))
	handle(mux, "POST", "/delete_devices", a.authed(a.deleteDevices))
}

func deviceJSON(d *store.Device) map[string]any {
	out := map[string]any{"device_id": d.DeviceID}
	if d.DisplayName != nil {
		out["display_name"] = *d.DisplayName
	}
	if d.LastSeenIP != "" {
		out["last_seen_ip"] = d.LastSeenIP
	}
	if d.LastSeenTS != 0 {
		out["last_seen_ts"] = d.LastSeenTS
	}
	return out
}

func (a *API) listDevices(w http.ResponseWriter, r *http.Request, s *store.Session) {
	ds, err := a.Accounts.ListDevices(r.Context(), s.UserID)
	if err != nil {
		fail(w, r, err)
		return
	}
	out := make([]map[string]any, 0, len(ds))
	for i := range ds {
		out = append(out, deviceJSON(&ds[i]))
	}
	jsonhttp.OK(w, map[string]any{"devices": out})
}

func (a *API) getDevice(w http.ResponseWriter, r *http.Request, s *store.Session) {
	d, err := a.Accounts.GetDevice(r.Context(), s.UserID, r.PathValue("deviceId"))
	if err != nil {
		fail(w, r, err)
		return
	}
	jsonhttp.OK(w, deviceJSON(d))
}

func (a *API) putDevice(w http.ResponseWriter, r *http.Request, s *store.Session) {
	var req struct {
		DisplayName *string `json:"display_name"`
	}
	if err := jsonhttp.Read(r, a.maxBody, &req); err != nil {
		fail(w, r, err)
		return
	}
	ctx := r.Context()
	id := r.PathValue("deviceId")
	if req.DisplayName == nil {
		// Nothing to change, but an unknown device is still 404.
		if _, err := a.Accounts.GetDevice(ctx, s.UserID, id); err != nil {
			fail(w, r, err)
			return
		}
		jsonhttp.Empty(w)
		return
	}
	if err := a.Accounts.SetDeviceName(ctx, s.UserID, id, *req.DisplayName); err != nil {
		fail(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}

func (a *API) deleteDevice(w http.ResponseWriter, r *http.Request, s *store.Session) {
	var req struct {
		Auth *accounts.AuthDict `json:"auth"`
	}
	if err := a.readOptional(r, &req); err != nil {
		fail(w, r, err)
		return
	}
	id := r.PathValue("deviceId")
	a.authThenDelete(w, r, s, req.Auth, "delete_device\x00"+id, []string{id})
}

func (a *API) deleteDevices(w http.ResponseWriter, r *http.Request, s *store.Session) {
	var req struct {
		Devices *[]string          `json:"devices"`
		Auth    *accounts.AuthDict `json:"auth"`
	}
	if err := jsonhttp.Read(r, a.maxBody, &req); err != nil {
		fail(w, r, err)
		return
	}
	if req.Devices == nil {
		fail(w, r, matrix.MissingParam("Missing devices"))
		return
	}
	if len(*req.Devices) > accounts.MaxDeleteDevices {
		fail(w, r, matrix.InvalidParam("At most %d devices at once", accounts.MaxDeleteDevices))
		return
	}
	a.authThenDelete(w, r, s, req.Auth, "delete_devices\x00"+strings.Join(*req.Devices, "\x00"), *req.Devices)
}

// authThenDelete runs the password check (the session is bound to exactly
// these devices) and deletes them. Unknown device IDs are ignored, as
// Synapse does.
func (a *API) authThenDelete(w http.ResponseWriter, r *http.Request, s *store.Session, auth *accounts.AuthDict, purpose string, ids []string) {
	if s.IsGuest {
		fail(w, r, guestForbidden())
		return
	}
	ctx := r.Context()
	if err := a.reauth(ctx, s, purpose, auth); err != nil {
		fail(w, r, err)
		return
	}
	if err := a.Accounts.DeleteDevices(ctx, s.UserID, ids); err != nil {
		fail(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}
