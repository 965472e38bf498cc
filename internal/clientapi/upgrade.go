package clientapi

import (
	"net/http"

	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/store"
)

func (a *API) upgradeRoom(w http.ResponseWriter, r *http.Request, s *store.Session) {
	roomID, err := roomIDParam(r)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	var body struct {
		NewVersion *string `json:"new_version"`
	}
	if err := jsonhttp.Read(r, a.maxBody, &body); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	if body.NewVersion == nil {
		jsonhttp.Error(w, r, matrix.MissingParam("new_version is required"))
		return
	}
	newID, err := a.Rooms.UpgradeRoom(r.Context(), roomID, s.UserID, s.DeviceID, *body.NewVersion)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]string{"replacement_room": newID})
}
