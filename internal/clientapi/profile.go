package clientapi

import (
	"encoding/json"
	"net/http"

	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/store"
)

// Profile endpoints (spec: Client-Server API, "Profiles") and the user
// directory search ("User directory").
func (a *API) registerProfile(mux Mux) {
	// Profile lookups need no access token (spec: "Requires authentication: No").
	handle(mux, "GET", "/profile/{userId}", a.getProfile)
	handle(mux, "GET", "/profile/{userId}/displayname", a.getProfileField("displayname"))
	handle(mux, "GET", "/profile/{userId}/avatar_url", a.getProfileField("avatar_url"))
	handle(mux, "PUT", "/profile/{userId}/displayname", a.authed(a.putProfileField("displayname")))
	handle(mux, "PUT", "/profile/{userId}/avatar_url", a.authed(a.putProfileField("avatar_url")))
	handle(mux, "POST", "/user_directory/search", a.authed(a.perUser(directoryLimit, a.searchUserDirectory)))
}

func profileJSON(p *store.Profile) map[string]string {
	out := map[string]string{}
	if p.DisplayName != "" {
		out["displayname"] = p.DisplayName
	}
	if p.AvatarURL != "" {
		out["avatar_url"] = p.AvatarURL
	}
	return out
}

func (a *API) getProfile(w http.ResponseWriter, r *http.Request) {
	p, err := a.Profiles.Get(r.Context(), r.PathValue("userId"))
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, profileJSON(p))
}

// getProfileField answers {field: value}, or {} when the field is unset
// (as Synapse does for existing users).
func (a *API) getProfileField(field string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := a.Profiles.Get(r.Context(), r.PathValue("userId"))
		if err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		out := map[string]string{}
		if v := profileJSON(p)[field]; v != "" {
			out[field] = v
		}
		jsonhttp.OK(w, out)
	}
}

func (a *API) putProfileField(field string) func(http.ResponseWriter, *http.Request, *store.Session) {
	return func(w http.ResponseWriter, r *http.Request, s *store.Session) {
		var body map[string]json.RawMessage
		if err := jsonhttp.Read(r, a.maxBody, &body); err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		raw, ok := body[field]
		if !ok {
			jsonhttp.Error(w, r, matrix.MissingParam("Missing key '%s'", field))
			return
		}
		var v string
		if err := json.Unmarshal(raw, &v); err != nil || string(raw) == "null" {
			// Synapse answers a non-string with M_INVALID_PARAM.
			jsonhttp.Error(w, r, matrix.InvalidParam("'%s' must be a string", field))
			return
		}
		target := r.PathValue("userId")
		var err error
		if field == "displayname" {
			err = a.Profiles.SetDisplayName(r.Context(), s.UserID, target, v)
		} else {
			err = a.Profiles.SetAvatarURL(r.Context(), s.UserID, target, v)
		}
		if err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		jsonhttp.Empty(w)
	}
}

type directoryUser struct {
	UserID      string `json:"user_id"`
	DisplayName string `json:"display_name,omitempty"`
	AvatarURL   string `json:"avatar_url,omitempty"`
}

func (a *API) searchUserDirectory(w http.ResponseWriter, r *http.Request, s *store.Session) {
	var body struct {
		SearchTerm *string `json:"search_term"`
		Limit      *int    `json:"limit"`
	}
	if err := jsonhttp.Read(r, a.maxBody, &body); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	if body.SearchTerm == nil {
		jsonhttp.Error(w, r, matrix.MissingParam("Missing search_term"))
		return
	}
	limit := 0
	if body.Limit != nil {
		if *body.Limit < 1 {
			jsonhttp.Error(w, r, matrix.InvalidParam("limit must be a positive integer"))
			return
		}
		limit = *body.Limit
	}
	if a.Rooms.AccessRules.External(s.UserID) {
		// Externals find nobody (Tchap): they meet only the people of the
		// rooms they are invited to.
		jsonhttp.OK(w, map[string]any{"results": []directoryUser{}, "limited": false})
		return
	}
	res, err := a.Profiles.Search(r.Context(), s.UserID, *body.SearchTerm, limit)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	users := make([]directoryUser, len(res.Results))
	for i, e := range res.Results {
		users[i] = directoryUser{e.UserID, e.DisplayName, e.AvatarURL}
	}
	jsonhttp.OK(w, map[string]any{"results": users, "limited": res.Limited})
}
