package clientapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/push"
	"conclave/internal/store"
)

// Push rules and pushers (spec: Client-Server API, "Push Notifications").
func (a *API) registerPush(mux Mux) {
	handle(mux, "GET", "/pushrules/{$}", a.authed(a.getAllPushRules))
	handle(mux, "GET", "/pushrules/{scope}/{$}", a.authed(a.getPushRuleScope))
	handle(mux, "GET", "/pushrules/{scope}/{kind}/{$}", a.authed(a.getPushRuleKind))
	handle(mux, "GET", "/pushrules/{scope}/{kind}/{ruleId}", a.authed(a.getPushRule))
	handle(mux, "PUT", "/pushrules/{scope}/{kind}/{ruleId}", a.authed(a.putPushRule))
	handle(mux, "DELETE", "/pushrules/{scope}/{kind}/{ruleId}", a.authed(a.deletePushRule))
	handle(mux, "GET", "/pushrules/{scope}/{kind}/{ruleId}/enabled", a.authed(a.getPushRuleEnabled))
	handle(mux, "PUT", "/pushrules/{scope}/{kind}/{ruleId}/enabled", a.authed(a.putPushRuleEnabled))
	handle(mux, "GET", "/pushrules/{scope}/{kind}/{ruleId}/actions", a.authed(a.getPushRuleActions))
	handle(mux, "PUT", "/pushrules/{scope}/{kind}/{ruleId}/actions", a.authed(a.putPushRuleActions))
	handle(mux, "GET", "/pushers", a.authed(a.getPushers))
	handle(mux, "POST", "/pushers/set", a.authed(a.setPusher))
	handle(mux, "GET", "/notifications", a.authed(a.getNotifications))
}

// getNotifications serves GET /notifications (from, limit, only).
func (a *API) getNotifications(w http.ResponseWriter, r *http.Request, s *store.Session) {
	q := r.URL.Query()
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			jsonhttp.Error(w, r, matrix.InvalidParam("limit must be an integer"))
			return
		}
		limit = n
	}
	page, err := a.Push.Notifications(r.Context(), s.UserID, q.Get("from"), limit, q.Get("only"),
		func(ctx context.Context, rows []store.StoredEvent) ([]json.RawMessage, error) {
			return a.Rooms.ClientEvents(ctx, rows, s.UserID, s.DeviceID, true)
		})
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, page)
}

// maxPushRuleBody bounds a rule upload: conditions and actions are small.
const maxPushRuleBody = 64 << 10

func (a *API) getAllPushRules(w http.ResponseWriter, r *http.Request, s *store.Session) {
	rs, err := a.Push.Rules(r.Context(), s.UserID)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, push.Account{Global: rs})
}

func (a *API) getPushRuleScope(w http.ResponseWriter, r *http.Request, s *store.Session) {
	if err := push.CheckPath(r.PathValue("scope"), ""); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	rs, err := a.Push.Rules(r.Context(), s.UserID)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, rs)
}

func (a *API) getPushRuleKind(w http.ResponseWriter, r *http.Request, s *store.Session) {
	kind := r.PathValue("kind")
	if err := push.CheckPath(r.PathValue("scope"), kind); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	rs, err := a.Push.Rules(r.Context(), s.UserID)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, *rs.List(kind))
}

// rulePath validates the path of a single-rule endpoint.
func rulePath(r *http.Request) (kind, id string, err error) {
	kind, id = r.PathValue("kind"), r.PathValue("ruleId")
	if err = push.CheckPath(r.PathValue("scope"), kind); err != nil {
		return "", "", err
	}
	if id == "" || len(id) > push.MaxRuleIDLen {
		return "", "", matrix.InvalidParam("Invalid rule ID")
	}
	return kind, id, nil
}

func (a *API) getPushRule(w http.ResponseWriter, r *http.Request, s *store.Session) {
	if r.PathValue("scope") == "global" && !push.ValidKind(r.PathValue("kind")) {
		// GET /pushrules/global/{kind}/{ruleId} answers 404 when "the push
		// rule does not exist": a kind this server does not know (an
		// unstable one such as MSC4306's postcontent) holds none. Writes to
		// it stay 400 M_UNRECOGNIZED.
		jsonhttp.Error(w, r, matrix.NotFound("Unknown push rule"))
		return
	}
	kind, id, err := rulePath(r)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	rule, err := a.Push.Rule(r.Context(), s.UserID, kind, id)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, rule)
}

func (a *API) putPushRule(w http.ResponseWriter, r *http.Request, s *store.Session) {
	kind, id, err := rulePath(r)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	var body push.NewRule
	if err := jsonhttp.Read(r, maxPushRuleBody, &body); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	q := r.URL.Query()
	if err := a.Push.PutRule(r.Context(), s.UserID, kind, id, &body, q.Get("before"), q.Get("after")); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}

func (a *API) deletePushRule(w http.ResponseWriter, r *http.Request, s *store.Session) {
	kind, id, err := rulePath(r)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	if err := a.Push.DeleteRule(r.Context(), s.UserID, kind, id); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}

func (a *API) getPushRuleEnabled(w http.ResponseWriter, r *http.Request, s *store.Session) {
	kind, id, err := rulePath(r)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	rule, err := a.Push.Rule(r.Context(), s.UserID, kind, id)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]bool{"enabled": rule.Enabled})
}

func (a *API) putPushRuleEnabled(w http.ResponseWriter, r *http.Request, s *store.Session) {
	kind, id, err := rulePath(r)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	var body struct {
		Enabled *bool `json:"enabled"`
	}
	if err := jsonhttp.Read(r, maxPushRuleBody, &body); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	if body.Enabled == nil {
		jsonhttp.Error(w, r, matrix.MissingParam("Missing enabled"))
		return
	}
	if err := a.Push.SetEnabled(r.Context(), s.UserID, kind, id, *body.Enabled); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}

func (a *API) getPushRuleActions(w http.ResponseWriter, r *http.Request, s *store.Session) {
	kind, id, err := rulePath(r)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	rule, err := a.Push.Rule(r.Context(), s.UserID, kind, id)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]any{"actions": rule.Actions})
}

func (a *API) putPushRuleActions(w http.ResponseWriter, r *http.Request, s *store.Session) {
	kind, id, err := rulePath(r)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	var body struct {
		Actions []json.RawMessage `json:"actions"`
	}
	if err := jsonhttp.Read(r, maxPushRuleBody, &body); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	if err := a.Push.SetActions(r.Context(), s.UserID, kind, id, body.Actions); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}

func (a *API) getPushers(w http.ResponseWriter, r *http.Request, s *store.Session) {
	ps, err := a.Push.Pushers(r.Context(), s.UserID)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]any{"pushers": ps})
}

func (a *API) setPusher(w http.ResponseWriter, r *http.Request, s *store.Session) {
	var body push.PusherRequest
	if err := jsonhttp.Read(r, maxPushRuleBody, &body); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	if err := a.Push.SetPusher(r.Context(), s, &body); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}
