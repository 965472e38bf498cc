package clientapi

import (
	"encoding/json"
	"net/http"

	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/notices"
	"conclave/internal/store"
)

// Server notices: Synapse's admin API, which operators' tools already speak
// (internal/notices).
func (a *API) registerNotices(mux Mux) {
	mux.HandleFunc("POST /_synapse/admin/v1/send_server_notice", a.authed(a.sendServerNotice))
	mux.HandleFunc("PUT /_synapse/admin/v1/send_server_notice/{txnId}", a.authed(a.sendServerNotice))
}

func (a *API) sendServerNotice(w http.ResponseWriter, r *http.Request, s *store.Session) {
	if !s.IsAdmin {
		jsonhttp.Error(w, r, matrix.Forbidden("You are not a server admin"))
		return
	}
	if a.Notices == nil {
		jsonhttp.Error(w, r, matrix.Errorf(http.StatusBadRequest, matrix.ErrUnknown, "Server notices are not enabled on this server"))
		return
	}
	var body struct {
		UserID   string          `json:"user_id"`
		Content  json.RawMessage `json:"content"`
		Type     string          `json:"type"`
		StateKey *string         `json:"state_key"`
	}
	if err := jsonhttp.Read(r, a.maxBody, &body); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	if body.UserID == "" || len(body.Content) == 0 || body.Content[0] != '{' {
		jsonhttp.Error(w, r, matrix.BadJSON("user_id and an object content are required"))
		return
	}
	// The transaction is the admin's: scoped to them, in the notice's room.
	txn := ""
	if t := r.PathValue("txnId"); t != "" {
		txn = s.UserID + "/" + s.DeviceID + "/" + t
	}
	id, err := a.Notices.Send(r.Context(), notices.Notice{UserID: body.UserID, Type: body.Type, StateKey: body.StateKey, Content: body.Content, TxnID: txn})
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]string{"event_id": id})
}
