package clientapi

import (
	"bytes"
	"net/http"

	"conclave/internal/jsonhttp"
	"conclave/internal/store"
)

// Receipts and read markers (spec: Client-Server API, "Receipts", "Fully
// read markers").
func (a *API) registerReceipts(mux Mux) {
	handle(mux, "POST", "/rooms/{roomId}/receipt/{receiptType}/{eventId}", a.authed(a.postReceipt))
	handle(mux, "POST", "/rooms/{roomId}/read_markers", a.authed(a.postReadMarkers))
}

func (a *API) postReceipt(w http.ResponseWriter, r *http.Request, s *store.Session) {
	var body struct {
		ThreadID *string `json:"thread_id"`
	}
	raw, err := jsonhttp.ReadBody(r, a.maxBody)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	// Older clients send no body at all; that is an empty object.
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := jsonhttp.Decode(raw, &body); err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
	}
	thread := ""
	if body.ThreadID != nil {
		thread = *body.ThreadID
		if thread == "" {
			thread = "\x00" // present but empty: invalid, let the service say so
		}
	}
	err = a.Receipts.Post(r.Context(), s.UserID, r.PathValue("roomId"), r.PathValue("receiptType"), r.PathValue("eventId"), thread)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}

func (a *API) postReadMarkers(w http.ResponseWriter, r *http.Request, s *store.Session) {
	var body struct {
		FullyRead   string `json:"m.fully_read"`
		Read        string `json:"m.read"`
		ReadPrivate string `json:"m.read.private"`
	}
	if err := jsonhttp.Read(r, a.maxBody, &body); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	if err := a.Receipts.SetReadMarkers(r.Context(), s.UserID, r.PathValue("roomId"), body.FullyRead, body.Read, body.ReadPrivate); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}
