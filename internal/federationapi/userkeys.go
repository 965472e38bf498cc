package federationapi

import (
	"encoding/json"
	"net/http"

	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
)

// End-to-end encryption for other servers (Server-Server API, "End-to-End
// Encryption" and "Device Management"): this server's users' device lists
// and keys. internal/keys decides what is shown: master and self-signing
// keys, never user-signing keys.

func (a *API) registerUserKeys(mux Mux) {
	if a.Keys == nil {
		return
	}
	a.HandleSigned(mux, "GET /_matrix/federation/v1/user/devices/{userId}", a.userDevices)
	a.HandleSigned(mux, "POST /_matrix/federation/v1/user/keys/query", a.userKeysQuery)
	a.HandleSigned(mux, "POST /_matrix/federation/v1/user/keys/claim", a.userKeysClaim)
}

func (a *API) userDevices(w http.ResponseWriter, r *http.Request) {
	userID := r.PathValue("userId")
	if !matrix.ValidUserID(userID) || matrix.ServerOf(userID) != a.ServerName {
		jsonhttp.Error(w, r, matrix.InvalidParam("%s is not a user of this server", userID))
		return
	}
	res, err := a.Keys.UserDevices(r.Context(), userID)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, res)
}

func (a *API) userKeysQuery(w http.ResponseWriter, r *http.Request) {
	var req struct {
		DeviceKeys map[string]json.RawMessage `json:"device_keys"`
	}
	if err := jsonhttp.Read(r, MaxRequestBody, &req); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	if req.DeviceKeys == nil {
		jsonhttp.Error(w, r, matrix.MissingParam("device_keys is required"))
		return
	}
	users := make(map[string][]string, len(req.DeviceKeys))
	for u, raw := range req.DeviceKeys {
		var ids []string
		if err := json.Unmarshal(raw, &ids); err != nil {
			jsonhttp.Error(w, r, matrix.BadJSON("device_keys.%s must be a list of device IDs", u))
			return
		}
		users[u] = ids
	}
	res, err := a.Keys.FederationQuery(r.Context(), users)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]any{"device_keys": res.DeviceKeys, "master_keys": res.MasterKeys, "self_signing_keys": res.SelfSigningKeys})
}

func (a *API) userKeysClaim(w http.ResponseWriter, r *http.Request) {
	var req struct {
		OneTimeKeys map[string]map[string]string `json:"one_time_keys"`
	}
	if err := jsonhttp.Read(r, MaxRequestBody, &req); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	if req.OneTimeKeys == nil {
		jsonhttp.Error(w, r, matrix.MissingParam("one_time_keys is required"))
		return
	}
	res, err := a.Keys.FederationClaim(r.Context(), req.OneTimeKeys)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]any{"one_time_keys": res.OneTimeKeys})
}
