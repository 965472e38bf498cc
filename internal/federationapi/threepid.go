package federationapi

import (
	"net/http"

	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/store"
	"conclave/internal/threepid"
)

// ThreepidPrefix: the circle's identity questions between Conclave servers (not in the
// Matrix spec: every server of a circle is its own identity service, so
// they ask each other what one would ask a central one). Signed like any
// federation request; internal/threepid decides.
//
//	GET  …/info?medium=&address=   → {"user_id"?, "invited"}: bound here? invited here?
//	POST …/lookup {pepper, hashes} → {"mappings": {hash: user ID}}: this server's users
//	PUT  …/invite {medium, address, room_id, sender} → {}: an invite to an address of ours
//	PUT  …/bound {medium, address, user_id} → {}: an address our users invited has an account
const ThreepidPrefix = "/_matrix/federation/unstable/org.conclave.threepid"

// RegisterThreepids adds the endpoints above, answered by t.
func (a *API) RegisterThreepids(mux Mux, t *threepid.Service) {
	// Server-Server API, "GET /_matrix/federation/v1/openid/userinfo": no
	// request signature, the token is the proof.
	mux.HandleFunc("GET /_matrix/federation/v1/openid/userinfo", func(w http.ResponseWriter, r *http.Request) {
		userID, err := t.OpenIDUser(r.Context(), r.URL.Query().Get("access_token"))
		if err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		jsonhttp.OK(w, map[string]string{"sub": userID})
	})
	a.HandleSigned(mux, "GET "+ThreepidPrefix+"/info", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		userID, invited, err := t.LocalInfo(r.Context(), q.Get("medium"), q.Get("address"))
		if err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		out := map[string]any{"invited": invited}
		if userID != "" {
			out["user_id"] = userID
		}
		jsonhttp.OK(w, out)
	})
	a.HandleSigned(mux, "POST "+ThreepidPrefix+"/lookup", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Pepper string   `json:"pepper"`
			Hashes []string `json:"hashes"`
		}
		if err := jsonhttp.Read(r, 1<<20, &req); err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		found, err := t.LocalLookup(r.Context(), req.Pepper, req.Hashes)
		if err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		jsonhttp.OK(w, map[string]any{"mappings": found})
	})
	a.HandleSigned(mux, "PUT "+ThreepidPrefix+"/invite", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Medium  string `json:"medium"`
			Address string `json:"address"`
			RoomID  string `json:"room_id"`
			Sender  string `json:"sender"`
		}
		if err := jsonhttp.Read(r, 64<<10, &req); err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		if req.Medium == "" || req.Address == "" || req.RoomID == "" || req.Sender == "" {
			jsonhttp.Error(w, r, matrix.MissingParam("medium, address, room_id and sender are required"))
			return
		}
		err := t.ReceiveInvite(r.Context(), Origin(r.Context()), store.ThreepidInvite{Medium: req.Medium, Address: req.Address, RoomID: req.RoomID, Sender: req.Sender})
		if err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		jsonhttp.Empty(w)
	})
	a.HandleSigned(mux, "PUT "+ThreepidPrefix+"/bound", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Medium  string `json:"medium"`
			Address string `json:"address"`
			UserID  string `json:"user_id"`
		}
		if err := jsonhttp.Read(r, 64<<10, &req); err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		if req.Medium == "" || req.Address == "" || req.UserID == "" {
			jsonhttp.Error(w, r, matrix.MissingParam("medium, address and user_id are required"))
			return
		}
		if err := t.ReceiveBound(r.Context(), Origin(r.Context()), req.Medium, req.Address, req.UserID); err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		jsonhttp.Empty(w)
	})
}
