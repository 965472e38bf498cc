package clientapi

import (
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"conclave/internal/accounts"
	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/sso"
)

// Single sign-on (internal/sso): Client-Server API, "Single Sign-On" and
// "Token-based login". The browser goes from the client to
// /login/sso/redirect, to the provider, back to the callback, and then to
// the client with a loginToken, which the client exchanges at POST /login.

const (
	loginSSO   = "m.login.sso"
	loginToken = "m.login.token"
	// ssoCookie binds an attempt to the browser that began it.
	ssoCookie = "conclave_sso"
)

func (a *API) registerSSO(mux Mux) {
	if a.SSO == nil {
		return
	}
	handle(mux, "GET", "/login/sso/redirect", a.ssoRedirect)
	handle(mux, "GET", "/login/sso/redirect/{idpId}", a.ssoRedirect)
	mux.HandleFunc("GET "+sso.CallbackPath, a.ssoCallback)
}

// ssoRedirect sends the browser to the provider. Errors are JSON, as
// Synapse answers here (the client may call it to check).
func (a *API) ssoRedirect(w http.ResponseWriter, r *http.Request) {
	if err := a.limitIP(r); err != nil {
		fail(w, r, err)
		return
	}
	authURL, cookie, err := a.SSO.Begin(r.Context(), r.PathValue("idpId"), r.URL.Query().Get("redirectUrl"))
	if err != nil {
		fail(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: ssoCookie, Value: cookie, Path: sso.CallbackPath, MaxAge: int(sso.AttemptLifetime.Seconds()),
		HttpOnly: true, Secure: strings.HasPrefix(a.Config.PublicBaseURL, "https:"), SameSite: http.SameSiteLaxMode})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, authURL, http.StatusFound)
}

// ssoCallback finishes the login and hands the client its login token:
// at once to a client URL the operator allows (sso_redirect_allow),
// otherwise after a page that says where the login is going, as Synapse
// does, so that a link to someone else's client cannot take it unseen.
func (a *API) ssoCallback(w http.ResponseWriter, r *http.Request) {
	if err := a.limitIP(r); err != nil {
		ssoPage(w, r, err, nil)
		return
	}
	q := r.URL.Query()
	cb := sso.Callback{State: q.Get("state"), Code: q.Get("code"), Error: q.Get("error"), ErrDesc: q.Get("error_description")}
	if c, err := r.Cookie(ssoCookie); err == nil {
		cb.Cookie = c.Value
	}
	// The cookie has done its work, whatever the outcome.
	http.SetCookie(w, &http.Cookie{Name: ssoCookie, Value: "", Path: sso.CallbackPath, MaxAge: -1, HttpOnly: true})
	res, err := a.SSO.Finish(r.Context(), cb)
	if errors.Is(err, sso.ErrOtherUser) {
		uiaPage(w, r, "Confirmation failed", err, nil)
		return
	}
	if err != nil {
		ssoPage(w, r, err, nil)
		return
	}
	if res.UIASession != "" {
		// A confirmation begun at the m.login.sso fallback page.
		a.uiaSSODone(w, r, res)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if a.ssoAllowed(res.ClientURL) {
		http.Redirect(w, r, res.RedirectURL, http.StatusFound)
		return
	}
	ssoPage(w, r, nil, res)
}

// ssoAllowed: the client URL starts with one the operator allows, compared
// by scheme, host and path prefix (so https://app.example does not let
// https://app.example.evil through), or is this server's own web client.
func (a *API) ssoAllowed(client string) bool {
	u, err := url.Parse(client)
	if err != nil {
		return false
	}
	// The web client served at public_base_url's root (internal/webclient)
	// is the server itself, as Synapse allows its own login fallback page
	// without listing it: its page only, not any path of the host.
	if a.Config.WebClient {
		if p, err := url.Parse(a.Config.PublicBaseURL); err == nil && p.Host != "" &&
			strings.EqualFold(p.Scheme, u.Scheme) && strings.EqualFold(p.Host, u.Host) &&
			u.Path == strings.TrimSuffix(p.Path, "/")+"/" {
			return true
		}
	}
	for _, allow := range a.Config.SSORedirectAllow {
		p, err := url.Parse(allow)
		if err != nil || !strings.EqualFold(p.Scheme, u.Scheme) || !strings.EqualFold(p.Host, u.Host) {
			continue
		}
		prefix := strings.TrimSuffix(p.Path, "/")
		if u.Path == prefix || strings.HasPrefix(u.Path, prefix+"/") || prefix == "" {
			return true
		}
	}
	return false
}

var ssoTemplate = template.Must(template.New("sso").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>{{.Title}}</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto; padding: 0 1em">
<h1>{{.Title}}</h1>
{{if .Error}}<p>{{.Error}}</p>
{{else}}<p>You are signed in as <strong>{{.UserID}}</strong>.</p>
<p>Continue to <strong>{{.Host}}</strong> to finish logging in to your account. If you did not start this login
from that application, close this page: it would give the application access to your account.</p>
<p><a href="{{.Link}}">Continue to {{.Host}}</a></p>{{end}}
</body></html>
`))

// ssoPage answers the browser with a page: the error, or the confirmation
// before going to the client.
func ssoPage(w http.ResponseWriter, r *http.Request, err error, res *sso.Result) {
	data := map[string]any{}
	status := http.StatusOK
	if err != nil {
		me, ok := matrix.AsError(err)
		if !ok {
			// Logged and answered as any unexpected error.
			jsonhttp.Error(w, r, err)
			return
		}
		status = me.Status
		data["Title"], data["Error"] = "Single sign-on failed", me.Msg
	} else {
		u, _ := url.Parse(res.ClientURL)
		host := u.Host
		if host == "" {
			host = u.Scheme + ":"
		}
		data["Title"], data["UserID"], data["Host"] = "Continue to your account", res.UserID, host
		// html/template escapes the URL for the attribute; the scheme was
		// checked at /redirect (no javascript: or data:).
		data["Link"] = template.URL(res.RedirectURL)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	ssoTemplate.Execute(w, data)
}

// tokenLogin is POST /login with m.login.token.
func (a *API) tokenLogin(w http.ResponseWriter, r *http.Request, req loginRequest) {
	if err := accounts.CheckDeviceID(req.DeviceID); err != nil {
		fail(w, r, err)
		return
	}
	ctx := r.Context()
	userID, err := a.SSO.TokenUser(ctx, req.Token)
	if err != nil {
		fail(w, r, err)
		return
	}
	res, err := a.Accounts.LoginUser(ctx, userID, accounts.DeviceOpts{
		DeviceID: req.DeviceID, DisplayName: req.InitialDeviceDisplayName, Refresh: req.RefreshToken, IP: clientIP(r)})
	if err != nil {
		fail(w, r, err)
		return
	}
	jsonhttp.OK(w, a.loginResponse(res))
}
