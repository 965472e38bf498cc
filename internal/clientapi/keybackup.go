package clientapi

import (
	"encoding/json"
	"net/http"

	"conclave/internal/jsonhttp"
	"conclave/internal/keys"
	"conclave/internal/matrix"
	"conclave/internal/store"
)

// Client-Server API, "Server-side key backups".

func (a *API) registerKeyBackup(mux Mux) {
	handle(mux, "POST", "/room_keys/version", a.authed(a.backupCreate))
	handle(mux, "GET", "/room_keys/version", a.authed(a.backupGet))
	handle(mux, "GET", "/room_keys/version/{version}", a.authed(a.backupGet))
	handle(mux, "PUT", "/room_keys/version/{version}", a.authed(a.backupUpdate))
	handle(mux, "DELETE", "/room_keys/version/{version}", a.authed(a.backupDelete))
	for _, p := range []string{"/room_keys/keys", "/room_keys/keys/{roomId}", "/room_keys/keys/{roomId}/{sessionId}"} {
		handle(mux, "PUT", p, a.authed(a.roomKeysPut))
		handle(mux, "GET", p, a.authed(a.roomKeysGet))
		handle(mux, "DELETE", p, a.authed(a.roomKeysDelete))
	}
}

func (a *API) backupCreate(w http.ResponseWriter, r *http.Request, s *store.Session) {
	var req keys.BackupVersionRequest
	if err := jsonhttp.Read(r, a.maxBody, &req); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	v, err := a.Keys.CreateBackup(r.Context(), s.UserID, &req)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]string{"version": v})
}

func (a *API) backupGet(w http.ResponseWriter, r *http.Request, s *store.Session) {
	res, err := a.Keys.GetBackup(r.Context(), s.UserID, r.PathValue("version"))
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, res)
}

func (a *API) backupUpdate(w http.ResponseWriter, r *http.Request, s *store.Session) {
	var req keys.BackupVersionRequest
	if err := jsonhttp.Read(r, a.maxBody, &req); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	if err := a.Keys.UpdateBackup(r.Context(), s.UserID, r.PathValue("version"), &req); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}

func (a *API) backupDelete(w http.ResponseWriter, r *http.Request, s *store.Session) {
	if err := a.Keys.DeleteBackup(r.Context(), s.UserID, r.PathValue("version")); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}

func (a *API) roomKeysPut(w http.ResponseWriter, r *http.Request, s *store.Session) {
	roomID, sessionID := r.PathValue("roomId"), r.PathValue("sessionId")
	body, err := jsonhttp.ReadBody(r, a.maxBody)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	var ks []store.RoomKey
	addRoom := func(room string, sessions map[string]json.RawMessage) error {
		for sid, raw := range sessions {
			k, err := keys.ParseSession(room, sid, raw)
			if err != nil {
				return err
			}
			ks = append(ks, *k)
			if len(ks) > keys.MaxBackupKeys {
				return matrix.InvalidParam("At most %d sessions can be uploaded at once", keys.MaxBackupKeys)
			}
		}
		return nil
	}
	switch {
	case sessionID != "":
		var m map[string]json.RawMessage
		if err = jsonhttp.Decode(body, &m); err == nil {
			err = addRoom(roomID, map[string]json.RawMessage{sessionID: body})
		}
	case roomID != "":
		var sb keys.SessionsBody
		if err = jsonhttp.Decode(body, &sb); err == nil {
			if sb.Sessions == nil {
				err = matrix.MissingParam("sessions is required")
			} else {
				err = addRoom(roomID, sb.Sessions)
			}
		}
	default:
		var rb keys.RoomsBody
		if err = jsonhttp.Decode(body, &rb); err == nil && rb.Rooms == nil {
			err = matrix.MissingParam("rooms is required")
		}
		for room, raw := range rb.Rooms {
			if err != nil {
				break
			}
			var sb keys.SessionsBody
			if json.Unmarshal(raw, &sb) != nil || sb.Sessions == nil {
				err = matrix.BadJSON("rooms.%s must be an object with sessions", room)
				break
			}
			err = addRoom(room, sb.Sessions)
		}
	}
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	res, err := a.Keys.PutRoomKeys(r.Context(), s.UserID, r.URL.Query().Get("version"), ks)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, res)
}

func (a *API) roomKeysGet(w http.ResponseWriter, r *http.Request, s *store.Session) {
	roomID, sessionID := r.PathValue("roomId"), r.PathValue("sessionId")
	ks, err := a.Keys.RoomKeys(r.Context(), s.UserID, r.URL.Query().Get("version"), roomID, sessionID)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	switch {
	case sessionID != "":
		if len(ks) == 0 {
			jsonhttp.Error(w, r, matrix.NotFound("No backed-up key for this session"))
			return
		}
		jsonhttp.OK(w, keys.BackupDataJSON(&ks[0]))
	case roomID != "":
		sessions := map[string]any{}
		for i := range ks {
			sessions[ks[i].SessionID] = keys.BackupDataJSON(&ks[i])
		}
		jsonhttp.OK(w, map[string]any{"sessions": sessions})
	default:
		rooms := map[string]map[string]map[string]any{}
		for i := range ks {
			room := rooms[ks[i].RoomID]
			if room == nil {
				room = map[string]map[string]any{"sessions": {}}
				rooms[ks[i].RoomID] = room
			}
			room["sessions"][ks[i].SessionID] = keys.BackupDataJSON(&ks[i])
		}
		jsonhttp.OK(w, map[string]any{"rooms": rooms})
	}
}

func (a *API) roomKeysDelete(w http.ResponseWriter, r *http.Request, s *store.Session) {
	res, err := a.Keys.DeleteRoomKeys(r.Context(), s.UserID, r.URL.Query().Get("version"), r.PathValue("roomId"), r.PathValue("sessionId"))
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, res)
}
