package clientapi

import (
	"encoding/json"
	"net/http"

	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/store"
)

// Client-Server API, "Send-to-Device messaging".

func (a *API) registerToDevice(mux Mux) {
	handle(mux, "PUT", "/sendToDevice/{eventType}/{txnId}", a.authed(a.sendToDevice))
}

func (a *API) sendToDevice(w http.ResponseWriter, r *http.Request, s *store.Session) {
	var req struct {
		Messages map[string]map[string]json.RawMessage `json:"messages"`
	}
	if err := jsonhttp.Read(r, a.maxBody, &req); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	if req.Messages == nil {
		jsonhttp.Error(w, r, matrix.MissingParam("messages is required"))
		return
	}
	if err := a.Keys.SendToDevice(r.Context(), s.UserID, s.DeviceID, r.PathValue("eventType"), r.PathValue("txnId"), req.Messages); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}
