package clientapi

import (
	"context"
	"net/http"
	"slices"

	"conclave/internal/accounts"
	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
	"conclave/internal/store"
	"conclave/internal/threepid"
)

// whoami, password change and deactivation: Client-Server API, "Account
// registration and management" and "Current account information".

func (a *API) registerAccount(mux Mux) {
	handle(mux, "GET", "/account/whoami", a.authed(a.whoami))
	// Without an access token, a password reset proved by e-mail.
	change := a.authed(a.changePassword)
	handle(mux, "POST", "/account/password", func(w http.ResponseWriter, r *http.Request) {
		if accessToken(r) == "" && a.Threepids != nil {
			a.resetPassword(w, r)
			return
		}
		change(w, r)
	})
	handle(mux, "POST", "/account/deactivate", a.authed(a.deactivate))
}

func (a *API) whoami(w http.ResponseWriter, r *http.Request, s *store.Session) {
	jsonhttp.OK(w, map[string]any{"user_id": s.UserID, "device_id": s.DeviceID, "is_guest": s.IsGuest})
}

// passwordFlows: the operations below re-check the caller's password.
var passwordFlows = []accounts.Flow{{Stages: []string{accounts.LoginPassword}}}

// reauthFlows are the ways userID proves again who they are before a
// sensitive operation. Without single sign-on: the password. With it, as
// Synapse's _get_available_ui_auth_types: m.login.password if the account
// has a password, m.login.sso if single sign-on can map to it (an address
// is bound to it: the provider's verified address finds the account), each
// a flow of its own. An account with neither cannot prove itself: none.
func (a *API) reauthFlows(ctx context.Context, userID string) ([]accounts.Flow, error) {
	if a.SSO == nil {
		return passwordFlows, nil
	}
	u, err := a.Accounts.GetUser(ctx, userID)
	if err != nil {
		return nil, err
	}
	var flows []accounts.Flow
	if u.PasswordHash != "" {
		flows = append(flows, passwordFlows...)
	}
	if a.Threepids != nil {
		bound, err := a.Threepids.List(ctx, userID)
		if err != nil {
			return nil, err
		}
		if len(bound) > 0 {
			flows = append(flows, accounts.Flow{Stages: []string{accounts.LoginSSO}})
		}
	}
	return flows, nil
}

// reauth runs user-interactive authentication of the caller s for the
// operation purpose with reauthFlows.
func (a *API) reauth(ctx context.Context, s *store.Session, purpose string, auth *accounts.AuthDict) error {
	flows, err := a.reauthFlows(ctx, s.UserID)
	if err != nil {
		return err
	}
	return a.Accounts.AuthenticateUIA(ctx, accounts.UIA{Purpose: purpose, UserID: s.UserID, Flows: flows}, auth)
}

func guestForbidden() error {
	return matrix.Errorf(http.StatusForbidden, matrix.ErrGuestAccessForbid, "Guest access is not allowed")
}

// newPasswordBody is the body of POST /account/password, signed in or not.
type newPasswordBody struct {
	NewPassword   *string            `json:"new_password"`
	LogoutDevices *bool              `json:"logout_devices"`
	Auth          *accounts.AuthDict `json:"auth"`
}

// logout: every other device is logged out unless logout_devices is false.
func (b *newPasswordBody) logout() bool { return b.LogoutDevices == nil || *b.LogoutDevices }

// readNewPassword reads a newPasswordBody whose new_password is given and
// meets the password policy.
func (a *API) readNewPassword(r *http.Request) (*newPasswordBody, error) {
	var req newPasswordBody
	if err := jsonhttp.Read(r, a.maxBody, &req); err != nil {
		return nil, err
	}
	if req.NewPassword == nil || *req.NewPassword == "" {
		return nil, matrix.MissingParam("Missing new_password")
	}
	if err := a.Accounts.CheckNewPasswordPolicy(*req.NewPassword); err != nil {
		return nil, err
	}
	return &req, nil
}

func (a *API) changePassword(w http.ResponseWriter, r *http.Request, s *store.Session) {
	if s.IsGuest {
		fail(w, r, guestForbidden())
		return
	}
	req, err := a.readNewPassword(r)
	if err != nil {
		fail(w, r, err)
		return
	}
	ctx := r.Context()
	flows, err := a.passwordChangeFlows(ctx, s.UserID)
	if err != nil {
		fail(w, r, err)
		return
	}
	if err := a.Accounts.AuthenticateUIA(ctx, accounts.UIA{Purpose: "password", UserID: s.UserID, Flows: flows}, req.Auth); err != nil {
		fail(w, r, err)
		return
	}
	if err := a.Accounts.ChangePassword(ctx, s, *req.NewPassword, req.logout()); err != nil {
		fail(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}

// passwordChangeFlows: the password, or, where mail is sent, an address of
// the caller's proved by e-mail.
func (a *API) passwordChangeFlows(ctx context.Context, userID string) ([]accounts.Flow, error) {
	flows, err := a.reauthFlows(ctx, userID)
	if err != nil {
		return nil, err
	}
	if a.Threepids != nil && a.Threepids.Mailer != nil {
		return append(slices.Clone(flows), accounts.Flow{Stages: []string{accounts.LoginEmailIdentity}}), nil
	}
	return flows, nil
}

// emailFlows: a password reset proves an address by e-mail.
var emailFlows = []accounts.Flow{{Stages: []string{accounts.LoginEmailIdentity}}}

// resetPassword: POST /account/password without an access token, its UIA
// proving an address bound to an account (requested through
// /account/password/email/requestToken). Every device is logged out
// unless logout_devices is false.
func (a *API) resetPassword(w http.ResponseWriter, r *http.Request) {
	if err := a.limitIP(r); err != nil {
		fail(w, r, err)
		return
	}
	req, err := a.readNewPassword(r)
	if err != nil {
		fail(w, r, err)
		return
	}
	ctx := r.Context()
	proved, err := a.Accounts.AuthenticateUIAResult(ctx, accounts.UIA{Purpose: "password", Flows: emailFlows}, req.Auth)
	if err != nil {
		fail(w, r, err)
		return
	}
	owner, err := a.Threepids.Owner(ctx, proved.Email)
	if err != nil {
		fail(w, r, err)
		return
	}
	if owner == "" {
		fail(w, r, matrix.Errorf(http.StatusBadRequest, threepid.ErrThreepidNotFound, "Your e-mail address has not been found on this server"))
		return
	}
	if err := a.Accounts.ResetPassword(ctx, owner, *req.NewPassword, req.logout()); err != nil {
		fail(w, r, err)
		return
	}
	jsonhttp.Empty(w)
}

func (a *API) deactivate(w http.ResponseWriter, r *http.Request, s *store.Session) {
	if s.IsGuest {
		fail(w, r, guestForbidden())
		return
	}
	var req struct {
		Auth     *accounts.AuthDict `json:"auth"`
		Erase    bool               `json:"erase"`
		IDServer string             `json:"id_server"`
	}
	if err := a.readOptional(r, &req); err != nil {
		fail(w, r, err)
		return
	}
	if req.Erase {
		// Erasure (spec: POST /account/deactivate, "erase") means serving
		// the user's events redacted to everyone who joins their rooms
		// later, on every read path. That is not implemented, and accepting
		// the flag while doing nothing would mislead the user; refuse it
		// before anything is changed, so the client can ask again without.
		fail(w, r, matrix.InvalidParam("erase is not supported by this server: your messages would stay visible to people who join your rooms later. Deactivate without erase (your devices, profile and room memberships are still removed)."))
		return
	}
	ctx := r.Context()
	if err := a.reauth(ctx, s, "deactivate", req.Auth); err != nil {
		fail(w, r, err)
		return
	}
	if err := a.Accounts.Deactivate(ctx, s.UserID); err != nil {
		fail(w, r, err)
		return
	}
	// The account's addresses went with it (the store's Deactivate); no
	// separate identity server is ever told of bindings, so none is asked.
	jsonhttp.OK(w, map[string]string{"id_server_unbind_result": "no-support"})
}
