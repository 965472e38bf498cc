package clientapi

import (
	"encoding/json"
	"net/http"

	"conclave/internal/jsonhttp"
	"conclave/internal/keys"
	"conclave/internal/store"
)

// MSC3814 dehydrated devices (unstable endpoints).

const msc3814 = "/_matrix/client/unstable/org.matrix.msc3814.v1"

func (a *API) registerDehydrated(mux Mux) {
	mux.HandleFunc("PUT "+msc3814+"/dehydrated_device", a.authed(a.dehydratedPut))
	mux.HandleFunc("GET "+msc3814+"/dehydrated_device", a.authed(a.dehydratedGet))
	mux.HandleFunc("DELETE "+msc3814+"/dehydrated_device", a.authed(a.dehydratedDelete))
	mux.HandleFunc("POST "+msc3814+"/dehydrated_device/{deviceId}/events", a.authed(a.dehydratedEvents))
}

func (a *API) dehydratedPut(w http.ResponseWriter, r *http.Request, s *store.Session) {
	var req keys.DehydratedDeviceRequest
	if err := jsonhttp.Read(r, a.maxBody, &req); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	if err := a.Keys.PutDehydratedDevice(r.Context(), s.UserID, &req); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]string{"device_id": req.DeviceID})
}

func (a *API) dehydratedGet(w http.ResponseWriter, r *http.Request, s *store.Session) {
	id, data, err := a.Keys.DehydratedDevice(r.Context(), s.UserID)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]any{"device_id": id, "device_data": data})
}

func (a *API) dehydratedDelete(w http.ResponseWriter, r *http.Request, s *store.Session) {
	id, err := a.Keys.DeleteDehydratedDevice(r.Context(), s.UserID)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]string{"device_id": id})
}

func (a *API) dehydratedEvents(w http.ResponseWriter, r *http.Request, s *store.Session) {
	var req struct {
		NextBatch string `json:"next_batch"`
	}
	body, err := jsonhttp.ReadBody(r, a.maxBody)
	if err == nil && len(body) > 0 {
		err = jsonhttp.Decode(body, &req)
	}
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	events, next, err := a.Keys.DehydratedEvents(r.Context(), s.UserID, r.PathValue("deviceId"), req.NextBatch)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]any{"events": append([]json.RawMessage{}, events...), "next_batch": next})
}
