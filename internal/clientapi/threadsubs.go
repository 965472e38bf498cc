package clientapi

import (
	"encoding/json"
	"net/http"
	"strconv"

	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/store"
	"conclave/internal/threadsubs"
)

// Thread subscriptions (MSC4306) and the paging of their changes (MSC4308),
// under their unstable paths (what clients speak) and the stable ones the
// MSCs name. Sliding sync's thread_subscriptions extension is in
// internal/slidingsync.
func (a *API) registerThreadSubscriptions(mux Mux) {
	if a.ThreadSubs == nil {
		return
	}
	for _, prefix := range []string{"/_matrix/client/unstable/io.element.msc4306", "/_matrix/client/v1"} {
		sub := prefix + "/rooms/{roomId}/thread/{eventId}/subscription"
		mux.HandleFunc("GET "+sub, a.authed(a.getThreadSubscription))
		mux.HandleFunc("PUT "+sub, a.authed(a.perUser(eventLimit, a.putThreadSubscription)))
		mux.HandleFunc("DELETE "+sub, a.authed(a.perUser(eventLimit, a.deleteThreadSubscription)))
	}
	for _, path := range []string{"/_matrix/client/unstable/io.element.msc4308/thread_subscriptions", "/_matrix/client/v1/thread_subscriptions"} {
		mux.HandleFunc("GET "+path, a.authed(a.threadSubscriptionChanges))
	}
}

func (a *API) getThreadSubscription(w http.ResponseWriter, r *http.Request, s *store.Session) {
	automatic, err := a.ThreadSubs.Get(r.Context(), s.UserID, r.PathValue("roomId"), r.PathValue("eventId"))
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]bool{"automatic": automatic})
}

// putThreadSubscription: {"automatic": "$cause"} subscribes automatically
// because of the event $cause; no "automatic" (or null) manually.
func (a *API) putThreadSubscription(w http.ResponseWriter, r *http.Request, s *store.Session) {
	var body struct {
		Automatic json.RawMessage `json:"automatic"`
	}
	if err := jsonhttp.Read(r, a.maxBody, &body); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	var cause string
	if len(body.Automatic) > 0 && string(body.Automatic) != "null" {
		if err := json.Unmarshal(body.Automatic, &cause); err != nil || cause == "" {
			jsonhttp.Error(w, r, matrix.BadJSON("automatic must be the ID of the event causing the subscription"))
			return
		}
	}
	if err := a.ThreadSubs.Subscribe(r.Context(), s.UserID, r.PathValue("roomId"), r.PathValue("eventId"), cause); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, struct{}{})
}

func (a *API) deleteThreadSubscription(w http.ResponseWriter, r *http.Request, s *store.Session) {
	if err := a.ThreadSubs.Unsubscribe(r.Context(), s.UserID, r.PathValue("roomId"), r.PathValue("eventId")); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.OK(w, struct{}{})
}

// threadSubscriptionChanges pages back through the user's thread
// subscription changes (MSC4308 "Companion endpoint"): dir=b only; from is
// a token of this endpoint or a sliding sync prev_batch (the latest when
// absent); to is a token of ours, or sliding sync's pos, in which case the
// lower bound the from token carries is used (it is that pos's).
func (a *API) threadSubscriptionChanges(w http.ResponseWriter, r *http.Request, s *store.Session) {
	q := r.URL.Query()
	if q.Get("dir") != "b" {
		jsonhttp.Error(w, r, matrix.InvalidParam("dir must be b"))
		return
	}
	limit := threadsubs.DefaultLimit
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n <= 0 {
			jsonhttp.Error(w, r, matrix.InvalidParam("limit must be greater than 0"))
			return
		}
		limit = min(n, threadsubs.MaxLimit)
	}
	var tok threadsubs.Token
	if from := q.Get("from"); from != "" {
		t, ok := threadsubs.ParseToken(from)
		if !ok {
			jsonhttp.Error(w, r, matrix.InvalidParam("from is not a token this server gave"))
			return
		}
		tok = t
	} else {
		pos, err := a.Sync.Position(r.Context(), 0)
		if err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		tok.Upper = pos
	}
	if to := q.Get("to"); to != "" {
		if t, ok := threadsubs.ParseToken(to); ok {
			tok.Lower = max(tok.Lower, t.Upper)
		}
		// Otherwise a sliding sync pos: the from token's lower bound is its.
	}
	if tok.Lower > tok.Upper {
		jsonhttp.OK(w, struct{}{})
		return
	}
	cs, more, err := a.ThreadSubs.ChangesBetween(r.Context(), s.UserID, tok.Lower, tok.Upper, limit)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	out := struct {
		threadsubs.Encoded
		End string `json:"end,omitempty"`
	}{Encoded: threadsubs.Encode(cs)}
	if more {
		out.End = threadsubs.Token{Upper: cs[0].Pos - 1, Lower: tok.Lower}.String()
	}
	jsonhttp.OK(w, out)
}
