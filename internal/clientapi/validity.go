package clientapi

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"time"

	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/store"
)

// Account validity (internal/validity): Synapse's account_validity
// endpoints, which Tchap's clients call for externals: ask for a renewal
// mail (allowed to an expired account), renew by the mailed link, and the
// admin's extension.

func (a *API) registerValidity(mux Mux) {
	if a.Validity == nil {
		return
	}
	for _, prefix := range []string{"/_matrix/client/v3", "/_matrix/client/r0", "/_matrix/client/unstable"} {
		mux.HandleFunc("POST "+prefix+"/account_validity/send_mail", a.authedExpiredOK(a.validitySendMail))
		mux.HandleFunc("GET "+prefix+"/account_validity/renew", a.validityRenew)
	}
	mux.HandleFunc("POST /_synapse/admin/v1/account_validity/validity", a.authed(a.validityAdmin))
}

// authedExpiredOK is authed for what an expired account may still do:
// ask for a renewal mail, log out (Synapse's allow_expired).
func (a *API) authedExpiredOK(h func(w http.ResponseWriter, r *http.Request, s *store.Session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess, err := a.Accounts.AuthenticateAllowExpired(r.Context(), accessToken(r))
		if err != nil {
			fail(w, r, err)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, sess)), sess)
	}
}

// validitySendMail mails a new renewal link. An expired account may ask:
// that is what the link is for.
func (a *API) validitySendMail(w http.ResponseWriter, r *http.Request, sess *store.Session) {
	if a.mailLimit != nil {
		// The same bucket as the validation mails, keyed by the account.
		if err := limited(a.mailLimit, "validity\x00"+sess.UserID, true); err != nil {
			fail(w, r, err)
			return
		}
	}
	if err := a.Validity.SendMail(r.Context(), sess.UserID); err != nil {
		fail(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}

var renewTemplate = template.Must(template.New("renew").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>{{.Title}}</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto; padding: 0 1em">
<h1>{{.Title}}</h1><p>{{.Text}}</p></body></html>
`))

// validityRenew is the mailed link: a page, 200 when renewed, 404 for an
// unknown or used token (Synapse's answers).
func (a *API) validityRenew(w http.ResponseWriter, r *http.Request) {
	if err := a.limitIP(r); err != nil {
		fail(w, r, err)
		return
	}
	_, exp, err := a.Validity.Renew(r.Context(), r.URL.Query().Get("token"))
	data := map[string]string{}
	status := http.StatusOK
	if err != nil {
		me, ok := matrix.AsError(err)
		if !ok {
			fail(w, r, err)
			return
		}
		status = me.Status
		data["Title"], data["Text"] = "Invalid renewal link", "This link is not valid, or was already used. Ask for a new one from your application."
	} else {
		data["Title"] = "Your account has been renewed"
		data["Text"] = "It is valid until " + time.UnixMilli(exp).UTC().Format("2 January 2006 at 15:04 UTC") + "."
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	renewTemplate.Execute(w, data)
}

// validityAdmin is Synapse's POST /_synapse/admin/v1/account_validity/validity:
// {user_id, expiration_ts?, enable_renewal_emails?} → {expiration_ts}.
func (a *API) validityAdmin(w http.ResponseWriter, r *http.Request, s *store.Session) {
	if !s.IsAdmin {
		fail(w, r, matrix.Forbidden("You are not a server admin"))
		return
	}
	var body struct {
		UserID              *string `json:"user_id"`
		ExpirationTS        *int64  `json:"expiration_ts"`
		EnableRenewalEmails *bool   `json:"enable_renewal_emails"`
	}
	if err := jsonhttp.Read(r, a.maxBody, &body); err != nil {
		fail(w, r, err)
		return
	}
	if body.UserID == nil {
		fail(w, r, matrix.MissingParam("Missing user_id"))
		return
	}
	if !matrix.ValidUserID(*body.UserID) || matrix.ServerOf(*body.UserID) != a.Config.ServerName {
		fail(w, r, matrix.InvalidParam("user_id must be a local user"))
		return
	}
	if body.ExpirationTS != nil && *body.ExpirationTS < 0 {
		fail(w, r, matrix.InvalidParam("expiration_ts must not be negative"))
		return
	}
	if _, err := a.Accounts.GetUser(r.Context(), *body.UserID); errors.Is(err, store.ErrNotFound) {
		fail(w, r, matrix.Errorf(http.StatusNotFound, matrix.ErrNotFound, "Unknown user"))
		return
	} else if err != nil {
		fail(w, r, err)
		return
	}
	renewal := true
	if body.EnableRenewalEmails != nil {
		renewal = *body.EnableRenewalEmails
	}
	exp, err := a.Validity.Set(r.Context(), *body.UserID, body.ExpirationTS, renewal)
	if err != nil {
		fail(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]int64{"expiration_ts": exp})
}
