package clientapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"html"
	"net/http"

	"conclave/internal/accounts"
	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/ratelimit"
	"conclave/internal/room"
	"conclave/internal/store"
	"conclave/internal/threepid"
)

// E-mail addresses: validation (requestToken, submit_token), the addresses
// of an account (/account/3pid), password reset by e-mail, invites to an
// address, and the identity endpoints this server answers itself
// (/_matrix/identity/…: /info for the circle, the v2 hashed lookup).
// Client-Server API, "Adding Account Administrative Contact Information"
// and "Account registration"; Identity Service API v2, "Lookup"; Tchap's
// /info (sydent's infoservlet). The rules are internal/threepid's.

// mailRate bounds the validation mails one address receives: 3 at once,
// then one a minute (the per-IP registration bucket bounds the rest).
const mailRatePerSecond, mailRateBurst = 1.0 / 60, 3

func (a *API) registerThreepids(mux Mux) {
	if a.Threepids == nil {
		return
	}
	if a.Config.RateLimits {
		a.mailLimit = ratelimit.New(mailRatePerSecond, mailRateBurst, 0)
	}
	handle(mux, "POST", "/register/email/requestToken", a.requestToken(threepid.PurposeRegister))
	handle(mux, "POST", "/account/password/email/requestToken", a.requestToken(threepid.PurposePassword))
	handle(mux, "POST", "/account/3pid/email/requestToken", a.requestToken(threepid.PurposeAdd))
	for _, p := range []string{threepid.SubmitPath, "/_matrix/client/unstable/add_threepid/email/submit_token", "/_synapse/client/password_reset/email/submit_token"} {
		mux.HandleFunc("GET "+p, a.submitTokenLink)
		mux.HandleFunc("POST "+p, a.submitTokenPost)
	}
	handle(mux, "GET", "/account/3pid", a.authed(a.listThreepids))
	handle(mux, "POST", "/account/3pid/add", a.authed(a.addThreepid))
	handle(mux, "POST", "/account/3pid/delete", a.authed(a.deleteThreepid))
	handle(mux, "POST", "/account/3pid/bind", a.authed(a.bindThreepid))
	handle(mux, "POST", "/account/3pid/unbind", a.authed(a.unbindThreepid))
	// The identity endpoints: this server is the circle's identity service.
	mux.HandleFunc("GET /_matrix/identity/api/v1/info", a.identityInfo)
	mux.HandleFunc("GET /_matrix/identity/v2", func(w http.ResponseWriter, r *http.Request) { jsonhttp.Empty(w) })
	// The key of the m.room.third_party_invite events (threepid.InviteEventContent).
	mux.HandleFunc("GET /_matrix/identity/v2/pubkey/isvalid", func(w http.ResponseWriter, r *http.Request) {
		jsonhttp.OK(w, map[string]bool{"valid": a.Threepids.ValidPublicKey(r.URL.Query().Get("public_key"))})
	})
	mux.HandleFunc("GET /_matrix/identity/v2/pubkey/ephemeral/isvalid", func(w http.ResponseWriter, r *http.Request) {
		jsonhttp.OK(w, map[string]bool{"valid": false})
	})
	mux.HandleFunc("GET /_matrix/identity/v2/terms", func(w http.ResponseWriter, r *http.Request) {
		jsonhttp.OK(w, map[string]any{"policies": map[string]any{}})
	})
	mux.HandleFunc("GET /_matrix/identity/v2/hash_details", a.identityAuthed(a.hashDetails))
	mux.HandleFunc("POST /_matrix/identity/v2/lookup", a.identityAuthed(a.identityLookup))
	mux.HandleFunc("POST /_matrix/identity/v2/account/register", a.identityRegister)
	mux.HandleFunc("GET /_matrix/identity/v2/account", a.identityAuthed(func(w http.ResponseWriter, r *http.Request, userID string) {
		jsonhttp.OK(w, map[string]string{"user_id": userID})
	}))
	mux.HandleFunc("POST /_matrix/identity/v2/account/logout", a.identityLogout)
	handle(mux, "POST", "/user/{userId}/openid/request_token", a.authed(a.openIDToken))
}

func (a *API) requestToken(purpose string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := a.limitIP(r); err != nil {
			fail(w, r, err)
			return
		}
		var req struct {
			ClientSecret string `json:"client_secret"`
			Email        string `json:"email"`
			SendAttempt  *int   `json:"send_attempt"`
			NextLink     string `json:"next_link"`
		}
		if err := jsonhttp.Read(r, a.maxBody, &req); err != nil {
			fail(w, r, err)
			return
		}
		if req.ClientSecret == "" || req.Email == "" || req.SendAttempt == nil {
			fail(w, r, matrix.MissingParam("client_secret, email and send_attempt are required"))
			return
		}
		if a.mailLimit != nil {
			if addr, err := threepid.Canonical(threepid.MediumEmail, req.Email); err == nil {
				if err := limited(a.mailLimit, addr, true); err != nil {
					fail(w, r, err)
					return
				}
			}
		}
		sid, err := a.Threepids.RequestToken(r.Context(), purpose, req.ClientSecret, req.Email, *req.SendAttempt)
		if err != nil {
			fail(w, r, err)
			return
		}
		jsonhttp.OK(w, map[string]any{"sid": sid, "submit_url": a.Threepids.SubmitURL()})
	}
}

// submitTokenLink is the link in the mail: a page for a browser.
func (a *API) submitTokenLink(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	err := a.Threepids.SubmitToken(r.Context(), q.Get("sid"), q.Get("client_secret"), q.Get("token"))
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'")
	if err != nil {
		msg := "This link is not valid."
		if me, ok := matrix.AsError(err); ok {
			msg = me.Msg
		} else {
			jsonhttp.Error(w, r, err) // logged, 500
			return
		}
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte("<!doctype html><title>E-mail address</title><p>" + html.EscapeString(msg) + "</p>\n"))
		return
	}
	w.Write([]byte("<!doctype html><title>E-mail address</title><p>Your e-mail address is confirmed. You may go back to the application.</p>\n"))
}

// submitTokenPost takes the code a user typed (the submit_url of
// requestToken; Identity Service API, submitToken).
func (a *API) submitTokenPost(w http.ResponseWriter, r *http.Request) {
	var req struct {
		SID          string `json:"sid"`
		ClientSecret string `json:"client_secret"`
		Token        string `json:"token"`
	}
	if err := jsonhttp.Read(r, a.maxBody, &req); err != nil {
		fail(w, r, err)
		return
	}
	if err := a.Threepids.SubmitToken(r.Context(), req.SID, req.ClientSecret, req.Token); err != nil {
		fail(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]bool{"success": true})
}

func (a *API) listThreepids(w http.ResponseWriter, r *http.Request, s *store.Session) {
	list, err := a.Threepids.List(r.Context(), s.UserID)
	if err != nil {
		fail(w, r, err)
		return
	}
	out := make([]map[string]any, 0, len(list))
	for _, t := range list {
		out = append(out, map[string]any{"medium": t.Medium, "address": t.Address, "validated_at": t.ValidatedTS, "added_at": t.AddedTS})
	}
	jsonhttp.OK(w, map[string]any{"threepids": out})
}

// addThreepid: POST /account/3pid/add, with the caller's password (UIA) and
// a session validated for adding an address.
func (a *API) addThreepid(w http.ResponseWriter, r *http.Request, s *store.Session) {
	if s.IsGuest {
		fail(w, r, guestForbidden())
		return
	}
	var req struct {
		ClientSecret string             `json:"client_secret"`
		SID          string             `json:"sid"`
		Auth         *accounts.AuthDict `json:"auth"`
	}
	if err := jsonhttp.Read(r, a.maxBody, &req); err != nil {
		fail(w, r, err)
		return
	}
	if req.ClientSecret == "" || req.SID == "" {
		fail(w, r, matrix.MissingParam("client_secret and sid are required"))
		return
	}
	ctx := r.Context()
	if err := a.reauth(ctx, s, "add_threepid", req.Auth); err != nil {
		fail(w, r, err)
		return
	}
	if err := a.bindValidated(ctx, s.UserID, req.SID, req.ClientSecret); err != nil {
		fail(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}

// bindValidated puts on userID's account the address a session validated
// for adding (/account/3pid/add and /bind).
func (a *API) bindValidated(ctx context.Context, userID, sid, clientSecret string) error {
	addr, err := a.Threepids.Validated(ctx, threepid.PurposeAdd, sid, clientSecret)
	if err != nil {
		// Not yet validated: the spec's 400 M_THREEPID_AUTH_FAILED here.
		if me, ok := matrix.AsError(err); ok && me.Status == http.StatusUnauthorized {
			err = matrix.Errorf(http.StatusBadRequest, threepid.ErrThreepidAuthFailed, "%s", me.Msg)
		}
		return err
	}
	return a.Threepids.Bind(ctx, userID, addr)
}

// threepidAddress is the body of /account/3pid/delete and /unbind.
type threepidAddress struct {
	Medium  string `json:"medium"`
	Address string `json:"address"`
}

// readThreepidAddress reads a threepidAddress, both fields required.
func (a *API) readThreepidAddress(r *http.Request) (threepidAddress, error) {
	var req threepidAddress
	if err := jsonhttp.Read(r, a.maxBody, &req); err != nil {
		return req, err
	}
	if req.Medium == "" || req.Address == "" {
		return req, matrix.MissingParam("medium and address are required")
	}
	return req, nil
}

func (a *API) deleteThreepid(w http.ResponseWriter, r *http.Request, s *store.Session) {
	req, err := a.readThreepidAddress(r)
	if err != nil {
		fail(w, r, err)
		return
	}
	ok, err := a.Threepids.Unbind(r.Context(), s.UserID, req.Medium, req.Address)
	if err != nil {
		fail(w, r, err)
		return
	}
	if !ok {
		fail(w, r, matrix.NotFound("This address is not on your account"))
		return
	}
	// The binding this server keeps is also what its identity lookup
	// answers from, so it is gone from there too.
	jsonhttp.OK(w, map[string]string{"id_server_unbind_result": "success"})
}

// bindThreepid: POST /account/3pid/bind. This server is its own identity
// service and an address on an account is discoverable by the lookup, so
// binding is adding without the password (the validated session proves the
// address); an address already on the caller's account is bound already.
func (a *API) bindThreepid(w http.ResponseWriter, r *http.Request, s *store.Session) {
	var req struct {
		ClientSecret string `json:"client_secret"`
		SID          string `json:"sid"`
	}
	if err := jsonhttp.Read(r, a.maxBody, &req); err != nil {
		fail(w, r, err)
		return
	}
	if req.ClientSecret == "" || req.SID == "" {
		fail(w, r, matrix.MissingParam("client_secret and sid are required"))
		return
	}
	if err := a.bindValidated(r.Context(), s.UserID, req.SID, req.ClientSecret); err != nil {
		fail(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}

// unbindThreepid: POST /account/3pid/unbind. The account's addresses are
// what the lookup answers from; there is no binding apart from them to
// remove (/account/3pid/delete removes the address).
func (a *API) unbindThreepid(w http.ResponseWriter, r *http.Request, s *store.Session) {
	if _, err := a.readThreepidAddress(r); err != nil {
		fail(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]string{"id_server_unbind_result": "no-support"})
}

// identityInfo: GET /_matrix/identity/api/v1/info?medium=email&address=
// (Tchap's): which server an address belongs to. No authentication: the
// clients ask before signing in (CORS as everywhere: the server middleware).
// Bounded per client address like /login.
func (a *API) identityInfo(w http.ResponseWriter, r *http.Request) {
	if err := a.limitIP(r); err != nil {
		fail(w, r, err)
		return
	}
	q := r.URL.Query()
	if q.Get("medium") == "" || q.Get("address") == "" {
		fail(w, r, matrix.MissingParam("medium and address are required"))
		return
	}
	res, err := a.Threepids.Info(r.Context(), q.Get("medium"), q.Get("address"))
	if err != nil {
		fail(w, r, err)
		return
	}
	jsonhttp.OK(w, res)
}

// identityAuthed: the identity endpoints take an identity service token
// (account/register) or, this server being its own identity service, the
// user's access token here. Every request is bounded per user by the user
// directory's limit (finding people).
func (a *API) identityAuthed(h func(w http.ResponseWriter, r *http.Request, userID string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok := accessToken(r)
		if tok == "" {
			fail(w, r, matrix.Errorf(http.StatusUnauthorized, matrix.ErrMissingToken, "Missing access token"))
			return
		}
		var userID string
		if sess, err := a.Accounts.Authenticate(r.Context(), tok); err == nil {
			userID = sess.UserID
		} else if userID, err = a.Threepids.IdentityUser(r.Context(), tok); err != nil {
			fail(w, r, err)
			return
		}
		if a.userLimits != nil {
			if err := limited(a.userLimits.directory, userID, true); err != nil {
				fail(w, r, err)
				return
			}
		}
		h(w, r, userID)
	}
}

// identityRegister: POST /_matrix/identity/v2/account/register, an OpenID
// token (from a server of the circle) for an identity service token.
func (a *API) identityRegister(w http.ResponseWriter, r *http.Request) {
	if err := a.limitIP(r); err != nil {
		fail(w, r, err)
		return
	}
	var req struct {
		AccessToken      string `json:"access_token"`
		MatrixServerName string `json:"matrix_server_name"`
	}
	if err := jsonhttp.Read(r, a.maxBody, &req); err != nil {
		fail(w, r, err)
		return
	}
	tok, err := a.Threepids.RegisterIdentity(r.Context(), req.AccessToken, req.MatrixServerName)
	if err != nil {
		fail(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]string{"token": tok})
}

func (a *API) identityLogout(w http.ResponseWriter, r *http.Request) {
	tok := accessToken(r)
	if tok == "" {
		fail(w, r, matrix.Errorf(http.StatusUnauthorized, matrix.ErrMissingToken, "Missing access token"))
		return
	}
	if err := a.Threepids.LogoutIdentity(r.Context(), tok); err != nil {
		fail(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}

// openIDToken: POST /user/{userId}/openid/request_token (Client-Server
// API, "OpenID"): a token a third party (an identity service) checks with
// GET /_matrix/federation/v1/openid/userinfo.
func (a *API) openIDToken(w http.ResponseWriter, r *http.Request, s *store.Session) {
	if r.PathValue("userId") != s.UserID {
		fail(w, r, matrix.Forbidden("Cannot request tokens for other users"))
		return
	}
	var body map[string]any
	if err := a.readOptional(r, &body); err != nil {
		fail(w, r, err)
		return
	}
	tok, life, err := a.Threepids.NewOpenIDToken(r.Context(), s.UserID)
	if err != nil {
		fail(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]any{"access_token": tok, "token_type": "Bearer", "matrix_server_name": a.Config.ServerName, "expires_in": int(life.Seconds())})
}

func (a *API) hashDetails(w http.ResponseWriter, r *http.Request, _ string) {
	jsonhttp.OK(w, map[string]any{"algorithms": []string{"sha256"}, "lookup_pepper": threepid.Pepper})
}

// identityLookup: POST /_matrix/identity/v2/lookup, signed-in users only
// (identityAuthed), rate-limited like the user directory.
func (a *API) identityLookup(w http.ResponseWriter, r *http.Request, _ string) {
	var req struct {
		Addresses []string `json:"addresses"`
		Algorithm string   `json:"algorithm"`
		Pepper    string   `json:"pepper"`
	}
	if err := jsonhttp.Read(r, a.maxBody, &req); err != nil {
		fail(w, r, err)
		return
	}
	if req.Algorithm == "" || req.Pepper == "" || req.Addresses == nil {
		fail(w, r, matrix.MissingParam("addresses, algorithm and pepper are required"))
		return
	}
	found, err := a.Threepids.Lookup(r.Context(), req.Algorithm, req.Pepper, req.Addresses)
	if err != nil {
		fail(w, r, err)
		return
	}
	jsonhttp.OK(w, map[string]any{"mappings": found})
}

// inviteThreepid: /invite with id_server, medium and address. An address
// that has an account is invited as that user; otherwise the room gets an
// m.room.third_party_invite event, so the room's rules (power to invite, at
// most one e-mail invite in a direct room) apply and members see the pending
// invite, and the invite is recorded (threepid.RecordInvite): it becomes an
// invite of the account the address gets (threepid.ConvertInvites). An external's address is refused in a restricted room,
// as Tchap's access rules do.
func (a *API) inviteThreepid(w http.ResponseWriter, r *http.Request, s *store.Session, roomID string, body membershipBody) {
	if a.Threepids == nil {
		fail(w, r, matrix.Errorf(http.StatusBadRequest, threepid.ErrThreepidMedium, "Invites by e-mail are not supported here"))
		return
	}
	ctx := r.Context()
	addr, err := threepid.Canonical(body.Medium, body.Address)
	if err != nil {
		fail(w, r, err)
		return
	}
	if _, external, err := a.Threepids.Home(addr); err != nil {
		fail(w, r, err)
		return
	} else if external {
		rule := "restricted"
		if ev, err := a.Rooms.CurrentStateEvent(ctx, roomID, "im.vector.room.access_rules", ""); err == nil && ev != nil {
			var c struct {
				Rule string `json:"rule"`
			}
			if json.Unmarshal(ev.Content, &c) == nil && (c.Rule == "unrestricted" || c.Rule == "direct") {
				rule = c.Rule
			}
		}
		if rule == "restricted" {
			fail(w, r, matrix.Forbidden("This event is not allowed in this context"))
			return
		}
	}
	if m, err := a.Rooms.Membership(ctx, roomID, s.UserID); err != nil {
		fail(w, r, err)
		return
	} else if m != "join" {
		fail(w, r, matrix.Forbidden("You are not in this room"))
		return
	}
	// Bound already? Then it is an ordinary invite.
	if owner, err := a.Threepids.BoundUser(ctx, body.Medium, addr); err != nil {
		fail(w, r, err)
		return
	} else if owner != "" {
		_, err := a.Rooms.SetMembership(ctx, &room.MembershipRequest{RoomID: roomID, Sender: s.UserID, DeviceID: s.DeviceID, Target: owner, Membership: "invite", Reason: body.Reason})
		if err != nil {
			fail(w, r, err)
			return
		}
		jsonhttp.Empty(w)
		return
	}
	// The room event first: it is where the power to invite and the
	// room's rules are checked; the invite is recorded only if it passed.
	var tok [16]byte
	rand.Read(tok[:])
	key := hex.EncodeToString(tok[:])
	if _, err := a.Rooms.Send(ctx, &room.SendRequest{RoomID: roomID, Sender: s.UserID, DeviceID: s.DeviceID, Type: "m.room.third_party_invite", StateKey: &key, Content: a.Threepids.InviteEventContent(addr)}); err != nil {
		fail(w, r, err)
		return
	}
	if err := a.Threepids.RecordInvite(ctx, s.UserID, roomID, body.Medium, addr, key); err != nil {
		fail(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}
