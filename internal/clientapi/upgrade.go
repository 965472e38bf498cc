package clientapi

import (
	"encoding/json"
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
		// Room version 12+ (Client-Server API v1.16): more creators of the
		// new room: a list of valid user IDs, else 400 M_INVALID_PARAM.
		AdditionalCreators json.RawMessage `json:"additional_creators"`
	}
	if err := jsonhttp.Read(r, a.maxBody, &body); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	if body.NewVersion == nil {
		jsonhttp.Error(w, r, matrix.MissingParam("new_version is required"))
		return
	}
	var creators []string
	if len(body.AdditionalCreators) > 0 && string(body.AdditionalCreators) != "null" {
		if err := json.Unmarshal(body.AdditionalCreators, &creators); err != nil {
			jsonhttp.Error(w, r, matrix.InvalidParam("additional_creators must be a list of user IDs"))
			return
		}
		for _, c := range creators {
			if !matrix.ValidUserID(c) {
				jsonhttp.Error(w, r, matrix.InvalidParam("additional_creators: invalid user ID %q", c))
				return
			}
		}
	}
	newID, err := a.Rooms.UpgradeRoom(r.Context(), roomID, s.UserID, s.DeviceID, *body.NewVersion, creators)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]string{"replacement_room": newID})
}
