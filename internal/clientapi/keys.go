package clientapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"conclave/internal/accounts"
	"conclave/internal/jsonhttp"
	"conclave/internal/keys"
	"conclave/internal/matrix"
	"conclave/internal/store"
	"conclave/internal/syncer"
)

// Client-Server API, "End-to-End Encryption": key upload, query, claim,
// changes, cross-signing.

func (a *API) registerKeys(mux Mux) {
	handle(mux, "POST", "/keys/upload", a.authed(a.keysUpload))
	handle(mux, "POST", "/keys/query", a.authed(a.keysQuery))
	handle(mux, "POST", "/keys/claim", a.authed(a.keysClaim))
	handle(mux, "GET", "/keys/changes", a.authed(a.keysChanges))
	handle(mux, "POST", "/keys/device_signing/upload", a.authed(a.keysDeviceSigningUpload))
	handle(mux, "POST", "/keys/signatures/upload", a.authed(a.keysSignaturesUpload))
	a.registerToDevice(mux)
	a.registerKeyBackup(mux)
	a.registerDehydrated(mux)
}

func (a *API) keysUpload(w http.ResponseWriter, r *http.Request, s *store.Session) {
	var req keys.UploadRequest
	if err := jsonhttp.Read(r, a.maxBody, &req); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	counts, err := a.Keys.Upload(r.Context(), s.UserID, s.DeviceID, &req)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]any{"one_time_key_counts": counts})
}

func (a *API) keysQuery(w http.ResponseWriter, r *http.Request, s *store.Session) {
	var req struct {
		DeviceKeys map[string]json.RawMessage `json:"device_keys"`
		Timeout    *int64                     `json:"timeout"`
	}
	if err := jsonhttp.Read(r, a.maxBody, &req); err != nil {
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
		// A list of device IDs (empty or null: all devices). Element iOS once
		// sent {"DEVICE": true}; Synapse and Complement
		// (TestKeysQueryWithDeviceIDAsObjectFails) want M_BAD_JSON for that.
		if err := json.Unmarshal(raw, &ids); err != nil {
			jsonhttp.Error(w, r, matrix.BadJSON("device_keys.%s must be a list of device IDs", u))
			return
		}
		users[u] = ids
	}
	res, err := a.Keys.Query(r.Context(), s.UserID, users, remoteTimeout(r, req.Timeout))
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, res)
}

func (a *API) keysClaim(w http.ResponseWriter, r *http.Request, s *store.Session) {
	var req struct {
		OneTimeKeys map[string]map[string]string `json:"one_time_keys"`
		Timeout     *int64                       `json:"timeout"`
	}
	if err := jsonhttp.Read(r, a.maxBody, &req); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	if req.OneTimeKeys == nil {
		jsonhttp.Error(w, r, matrix.MissingParam("one_time_keys is required"))
		return
	}
	res, err := a.Keys.Claim(r.Context(), req.OneTimeKeys, remoteTimeout(r, req.Timeout))
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, res)
}

// remoteTimeout is the request's timeout for other servers in
// milliseconds: the body's "timeout" (spec), else the query parameter
// Synapse reads, else 10 s; kept between 1 s and a minute so that a request
// neither gives up at once nor hangs.
func remoteTimeout(r *http.Request, ms *int64) time.Duration {
	if ms == nil {
		n, err := strconv.ParseInt(r.URL.Query().Get("timeout"), 10, 64)
		if err != nil {
			return keys.DefaultRemoteTimeout
		}
		ms = &n
	}
	return time.Duration(min(max(*ms, 1000), 60000)) * time.Millisecond
}

// ParseStreamToken reads a sync or pagination token as a stream position.
func ParseStreamToken(tok string) (int64, error) {
	if t, ok := syncer.ParseToken(tok); ok {
		return t.Pos, nil
	}
	// Plain positions are accepted too (some clients strip the prefix).
	if n, err := strconv.ParseInt(tok, 10, 64); err == nil && n >= 0 {
		return n, nil
	}
	return 0, matrix.InvalidParam("Invalid stream token %q", tok)
}

func (a *API) keysChanges(w http.ResponseWriter, r *http.Request, s *store.Session) {
	q := r.URL.Query()
	if q.Get("from") == "" {
		jsonhttp.Error(w, r, matrix.MissingParam("from is required"))
		return
	}
	from, err := ParseStreamToken(q.Get("from"))
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	var to int64
	if q.Get("to") == "" {
		// The spec requires "to"; Synapse treats a missing one as "now".
		if to, err = a.Store.MaxStreamPos(r.Context()); err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
	} else if to, err = ParseStreamToken(q.Get("to")); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	changed, left, err := a.Keys.DeviceListChanges(r.Context(), s.UserID, from, to)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]any{"changed": changed, "left": left})
}

func (a *API) keysDeviceSigningUpload(w http.ResponseWriter, r *http.Request, s *store.Session) {
	var req struct {
		keys.DeviceSigningRequest
		Auth *accounts.AuthDict `json:"auth"`
	}
	if err := jsonhttp.Read(r, a.maxBody, &req); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	p, err := a.Keys.PrepareSigningKeys(r.Context(), s.UserID, &req.DeviceSigningRequest)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	// Replacing keys needs the user again (spec: "Cross-signing", the
	// upload "may require" UIA; Synapse asks when a master key exists).
	if p.NeedsAuth {
		if err := a.reauth(r.Context(), s, "device_signing_upload", req.Auth); err != nil {
			fail(w, r, err)
			return
		}
	}
	if err := a.Keys.StoreSigningKeys(r.Context(), p); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}

func (a *API) keysSignaturesUpload(w http.ResponseWriter, r *http.Request, s *store.Session) {
	var req map[string]map[string]json.RawMessage
	if err := jsonhttp.Read(r, a.maxBody, &req); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	failures, err := a.Keys.UploadSignatures(r.Context(), s.UserID, req)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]any{"failures": failures})
}
