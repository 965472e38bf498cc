package clientapi

import (
	"crypto/rand"
	"errors"
	"html/template"
	"net/http"
	"strings"

	"conclave/internal/accounts"
	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/sso"
)

// The fallback of user-interactive authentication (Client-Server API,
// "User-Interactive Authentication API", "Fallback"): a client that cannot
// do a stage itself opens GET /auth/{authType}/fallback/web?session=… in a
// browser. For m.login.sso the page asks the person to confirm at the
// identity provider; the provider's callback (ssoCallback) completes the
// stage in the session when it names the session's own user, and answers a
// page that tells the client (window.onAuthDone, or postMessage "authDone"
// to its opener). The client then sends the request again with the session
// alone. Sessions offering m.login.sso are in the database too (accounts,
// SSOSessions), so the page, the callback and the repeated request may
// reach different processes; the password fallback needs the process that
// issued the session.

func (a *API) registerUIAFallback(mux Mux) {
	handle(mux, "GET", "/auth/{authType}/fallback/web", a.uiaFallback)
	handle(mux, "POST", "/auth/{authType}/fallback/web", a.uiaFallbackPassword)
}

// maxFallbackForm bounds the password fallback's form.
const maxFallbackForm = 16 << 10

// uiaActions says, on the confirmation page, what the client asks to do
// (the operation names of the UIA calls, before their first NUL).
var uiaActions = map[string]string{
	"delete_device":         "remove a device from your account",
	"delete_devices":        "remove devices from your account",
	"device_signing_upload": "replace your cross-signing keys (reset your secure identity)",
	"add_threepid":          "add an e-mail address to your account",
	"deactivate":            "deactivate your account",
	"password":              "change your password",
}

func uiaAction(purpose string) string {
	op, _, _ := strings.Cut(purpose, "\x00")
	if d, ok := uiaActions[op]; ok {
		return d
	}
	return "perform a sensitive action on your account"
}

func (a *API) uiaFallback(w http.ResponseWriter, r *http.Request) {
	if err := a.limitIP(r); err != nil {
		uiaPage(w, r, "Confirmation failed", err, nil)
		return
	}
	stage := r.PathValue("authType")
	// m.login.sso and m.login.password have a fallback here; Synapse
	// answers an unknown stage type with 404.
	if !(stage == accounts.LoginSSO && a.SSO != nil || stage == accounts.LoginPassword) {
		uiaPage(w, r, "Confirmation failed", matrix.Errorf(http.StatusNotFound, matrix.ErrNotFound, "Unknown authentication stage type"), nil)
		return
	}
	id := r.URL.Query().Get("session")
	if id == "" {
		uiaPage(w, r, "Confirmation failed", matrix.MissingParam("Missing session"), nil)
		return
	}
	info, err := a.Accounts.UIASession(r.Context(), id)
	if err != nil || info.UserID == "" {
		uiaPage(w, r, "Confirmation failed", accounts.ErrUnknownUIASession, nil)
		return
	}
	if stage == accounts.LoginPassword {
		uiaPage(w, r, "Confirm this action", nil, passwordForm(id, info))
		return
	}
	authURL, cookie, err := a.SSO.BeginUIA(r.Context(), id, info.UserID)
	if err != nil {
		uiaPage(w, r, "Confirmation failed", err, nil)
		return
	}
	// The attempt is bound to this browser as a login's is (ssoRedirect).
	http.SetCookie(w, &http.Cookie{Name: ssoCookie, Value: cookie, Path: sso.CallbackPath, MaxAge: int(sso.AttemptLifetime.Seconds()),
		HttpOnly: true, Secure: strings.HasPrefix(a.Config.PublicBaseURL, "https:"), SameSite: http.SameSiteLaxMode})
	uiaPage(w, r, "Confirm this action", nil, map[string]any{
		"Confirm": true, "Action": uiaAction(info.Purpose), "UserID": info.UserID,
		"IdP": a.SSO.IdP()["name"], "Link": template.URL(authURL)})
}

func passwordForm(id string, info accounts.UIASessionInfo) map[string]any {
	return map[string]any{"Form": true, "Action": uiaAction(info.Purpose), "UserID": info.UserID, "Session": id}
}

// uiaFallbackPassword takes the password fallback's form: the password of
// the session's user completes m.login.password in it. A page of another
// site posting here gains nothing without the password.
func (a *API) uiaFallbackPassword(w http.ResponseWriter, r *http.Request) {
	if err := a.limitIP(r); err != nil {
		uiaPage(w, r, "Confirmation failed", err, nil)
		return
	}
	if r.PathValue("authType") != accounts.LoginPassword {
		uiaPage(w, r, "Confirmation failed", matrix.Errorf(http.StatusNotFound, matrix.ErrNotFound, "Unknown authentication stage type"), nil)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFallbackForm)
	if err := r.ParseForm(); err != nil {
		uiaPage(w, r, "Confirmation failed", matrix.BadJSON("Unreadable form"), nil)
		return
	}
	id := r.PostForm.Get("session")
	info, err := a.Accounts.UIASession(r.Context(), id)
	if id == "" || err != nil || info.UserID == "" {
		uiaPage(w, r, "Confirmation failed", accounts.ErrUnknownUIASession, nil)
		return
	}
	if err := a.Accounts.CheckPassword(r.Context(), info.UserID, r.PostForm.Get("password")); err != nil {
		data := passwordForm(id, info)
		me, ok := matrix.AsError(err)
		if !ok {
			jsonhttp.Error(w, r, err)
			return
		}
		data["Wrong"] = me.Msg
		uiaPageStatus(w, me.Status, "Confirm this action", data)
		return
	}
	if err := a.Accounts.CompleteUIAStage(r.Context(), id, accounts.LoginPassword, info.UserID); err != nil {
		uiaPage(w, r, "Confirmation failed", err, nil)
		return
	}
	uiaPage(w, r, "Action confirmed", nil, map[string]any{"Done": true, "UserID": info.UserID})
}

// uiaSSODone completes the session the provider confirmed and answers the
// browser (from ssoCallback).
func (a *API) uiaSSODone(w http.ResponseWriter, r *http.Request, res *sso.Result) {
	if err := a.Accounts.CompleteUIAStage(r.Context(), res.UIASession, accounts.LoginSSO, res.UserID); err != nil {
		uiaPage(w, r, "Confirmation failed", err, nil)
		return
	}
	uiaPage(w, r, "Action confirmed", nil, map[string]any{"Done": true, "UserID": res.UserID})
}

var uiaTemplate = template.Must(template.New("uia").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>{{.Title}}</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto; padding: 0 1em">
<h1>{{.Title}}</h1>
{{if .Error}}<p>{{.Error}}</p>
{{else if .Confirm}}<p>An application is trying to <strong>{{.Action}}</strong> (account <strong>{{.UserID}}</strong>).</p>
<p>To confirm this action, sign in again with {{.IdP}}. If you did not ask for it, close this page: someone may be
using your account.</p>
<p><a href="{{.Link}}">Continue with {{.IdP}}</a></p>
{{else if .Form}}<p>An application is trying to <strong>{{.Action}}</strong> (account <strong>{{.UserID}}</strong>).</p>
<p>To confirm this action, enter your password. If you did not ask for it, close this page: someone may be using
your account.</p>
{{if .Wrong}}<p><strong>{{.Wrong}}</strong></p>{{end}}
<form method="post"><input type="hidden" name="session" value="{{.Session}}">
<input type="password" name="password" autocomplete="current-password" aria-label="Password" autofocus>
<button type="submit">Confirm</button></form>
{{else if .Done}}<p>Thank you: the action is confirmed for <strong>{{.UserID}}</strong>. You may close this page and
return to the application.</p>
<script nonce="{{.Nonce}}">
if (window.onAuthDone) {
	window.onAuthDone();
} else if (window.opener && window.opener.postMessage) {
	window.opener.postMessage("authDone", "*");
}
</script>{{end}}
</body></html>
`))

// uiaPage answers the browser: the error, or the page data describes.
func uiaPage(w http.ResponseWriter, r *http.Request, title string, err error, data map[string]any) {
	if data == nil {
		data = map[string]any{}
	}
	status := http.StatusOK
	if err != nil {
		me, ok := matrix.AsError(err)
		if !ok {
			jsonhttp.Error(w, r, err)
			return
		}
		if errors.Is(err, sso.ErrOtherUser) {
			title = "Not the same account"
		}
		status = me.Status
		data["Error"] = me.Msg
	}
	uiaPageStatus(w, status, title, data)
}

func uiaPageStatus(w http.ResponseWriter, status int, title string, data map[string]any) {
	data["Title"] = title
	// The only script is the success page's, allowed by its nonce; the
	// password form posts here only.
	nonce := rand.Text()
	data["Nonce"] = nonce
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; script-src 'nonce-"+nonce+"'")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	uiaTemplate.Execute(w, data)
}
