package threepid

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"time"

	"conclave/internal/matrix"
	"conclave/internal/store"
)

// OpenID tokens and identity service accounts. A client that uses this
// server as its identity service (Element, Tchap) first gets an OpenID
// token from its own homeserver (Client-Server API, "OpenID"), then trades
// it for an identity service token (Identity Service API v2,
// "POST /account/register"); the homeserver that issued the OpenID token
// vouches for the user (Server-Server API, "GET /openid/userinfo"). So a
// user of any server of the circle may use any server's identity endpoints.

// OpenIDLifetime is how long an OpenID token is good for.
const OpenIDLifetime = time.Hour

// OpenIDChecker asks another server whose user an OpenID token proves
// (federation's /openid/userinfo).
type OpenIDChecker func(ctx context.Context, server, token string) (userID string, err error)

func newSecret() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func secretHash(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// NewOpenIDToken issues an OpenID token for userID (a user of this server).
func (s *Service) NewOpenIDToken(ctx context.Context, userID string) (string, time.Duration, error) {
	tok := newSecret()
	now := s.now()
	if err := s.Store.PutOpenIDToken(ctx, secretHash(tok), userID, now.Add(OpenIDLifetime).UnixMilli(), now.UnixMilli()); err != nil {
		return "", 0, err
	}
	return tok, OpenIDLifetime, nil
}

// OpenIDUser returns the user an OpenID token of this server proves (401
// M_UNKNOWN_TOKEN when none).
func (s *Service) OpenIDUser(ctx context.Context, token string) (string, error) {
	if token == "" || len(token) > 256 {
		return "", matrix.Errorf(http.StatusUnauthorized, matrix.ErrUnknownToken, "Unknown or expired token")
	}
	u, err := s.Store.OpenIDTokenUser(ctx, secretHash(token), s.now().UnixMilli())
	if errors.Is(err, store.ErrNotFound) {
		return "", matrix.Errorf(http.StatusUnauthorized, matrix.ErrUnknownToken, "Unknown or expired token")
	}
	return u, err
}

// RegisterIdentity trades an OpenID token issued by server for an identity
// service token. Only servers of the circle are asked (the map names them,
// or this server itself): an identity token must not be had by anyone who
// can run a homeserver.
func (s *Service) RegisterIdentity(ctx context.Context, openIDToken, server string) (string, error) {
	check := s.CheckOpenID
	if openIDToken == "" || server == "" {
		return "", matrix.MissingParam("access_token and matrix_server_name are required")
	}
	var userID string
	var err error
	switch {
	case server == s.ServerName:
		userID, err = s.OpenIDUser(ctx, openIDToken)
	case s.Domains.Names(server) && check != nil:
		rctx, cancel := context.WithTimeout(ctx, remoteTimeout)
		userID, err = check(rctx, server, openIDToken)
		cancel()
		if err != nil {
			err = matrix.Errorf(http.StatusUnauthorized, matrix.ErrUnknownToken, "%s did not vouch for this token", server)
		} else if !matrix.ValidUserID(userID) || matrix.ServerOf(userID) != server {
			err = matrix.Errorf(http.StatusUnauthorized, matrix.ErrUnknownToken, "%s vouched for a user not its own", server)
		}
	default:
		err = matrix.Forbidden("%s is not a server of this circle", server)
	}
	if err != nil {
		return "", err
	}
	tok := newSecret()
	if err := s.Store.PutIdentityToken(ctx, secretHash(tok), userID, s.now().UnixMilli()); err != nil {
		return "", err
	}
	return tok, nil
}

// IdentityUser returns the user of an identity service token (401
// M_UNKNOWN_TOKEN when none).
func (s *Service) IdentityUser(ctx context.Context, token string) (string, error) {
	if token == "" || len(token) > 256 {
		return "", matrix.Errorf(http.StatusUnauthorized, matrix.ErrUnknownToken, "Unknown token")
	}
	u, err := s.Store.IdentityTokenUser(ctx, secretHash(token))
	if errors.Is(err, store.ErrNotFound) {
		return "", matrix.Errorf(http.StatusUnauthorized, matrix.ErrUnknownToken, "Unknown token")
	}
	return u, err
}

// LogoutIdentity forgets an identity service token.
func (s *Service) LogoutIdentity(ctx context.Context, token string) error {
	if _, err := s.IdentityUser(ctx, token); err != nil {
		return err
	}
	return s.Store.DeleteIdentityToken(ctx, secretHash(token))
}
