// Package validity owns account expiry for external users
// (--external-account-validity; Synapse's account validity, which Tchap
// turns on for externals): when an account expires, the 403
// ORG_MATRIX_EXPIRED_ACCOUNT every request then gets (but renewal), the
// renewal mail sent before expiry and on request, renewal by the mailed
// link, and the admin's extension. Who is subject to it is the caller's
// choice (Applies): on the externals' server, every local user.
package validity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"conclave/internal/accounts"
	"conclave/internal/lru"
	"conclave/internal/mail"
	"conclave/internal/matrix"
	"conclave/internal/store"
)

// ErrExpiredAccount is the errcode of an expired account (Synapse's
// Codes.EXPIRED_ACCOUNT, which Tchap's clients recognise).
const ErrExpiredAccount = "ORG_MATRIX_EXPIRED_ACCOUNT"

// RenewPath is the renewal link's path (the client API's
// account_validity/renew, without authentication).
const RenewPath = "/_matrix/client/v3/account_validity/renew"

const (
	// cacheTTL: how long a looked-up expiry is trusted before the store is
	// asked again. Every authenticated request checks it; an extension by
	// another process is seen within this time.
	cacheTTL  = time.Minute
	cacheSize = 100_000
	// mailBatch bounds the accounts one pass of MailDue mails.
	mailBatch = 100
	// MaxTokenLength bounds a renewal token given to Renew.
	MaxTokenLength = 256
)

// Addresses lists a user's bound e-mail addresses (threepid.Service).
type Addresses interface {
	List(ctx context.Context, userID string) ([]store.Threepid, error)
}

// Service is account validity.
type Service struct {
	Store store.AccountValidities
	// Period is how long an account lasts from its first request, and from
	// each renewal.
	Period time.Duration
	// Notice is how long before expiry the renewal mail is sent.
	Notice time.Duration
	// Applies says whether a user's account expires.
	Applies   func(userID string) bool
	Addresses Addresses
	Mailer    mail.Sender // nil: no mail can be sent
	// BaseURL is public_base_url: renewal links start with it.
	BaseURL string
	Log     *slog.Logger

	clock atomic.Pointer[func() time.Time]
	cache *lru.Cache[string, cached]
}

type cached struct {
	expires int64 // ms
	fetched time.Time
}

// SetClock replaces the time source (tests); safe while serving.
func (s *Service) SetClock(now func() time.Time) { s.clock.Store(&now) }

func (s *Service) now() time.Time {
	if f := s.clock.Load(); f != nil {
		return (*f)()
	}
	return time.Now()
}

func (s *Service) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

func (s *Service) lru() *lru.Cache[string, cached] { return s.cache }

// New returns the service; set the other fields before sharing it.
func New(st store.AccountValidities, period, notice time.Duration, applies func(userID string) bool) *Service {
	return &Service{Store: st, Period: period, Notice: notice, Applies: applies, cache: lru.New[string, cached](cacheSize)}
}

// expiry is the user's expiry, recorded as now + Period on first sight.
func (s *Service) expiry(ctx context.Context, userID string) (int64, error) {
	now := s.now()
	if c, ok := s.lru().Get(userID); ok && now.Sub(c.fetched) < cacheTTL && now.Sub(c.fetched) >= 0 {
		return c.expires, nil
	}
	v, err := s.Store.EnsureAccountValidity(ctx, userID, now.Add(s.Period).UnixMilli())
	if err != nil {
		return 0, err
	}
	s.lru().Put(userID, cached{v.ExpirationTS, now})
	return v.ExpirationTS, nil
}

// Check refuses the requests of an expired account: 403
// ORG_MATRIX_EXPIRED_ACCOUNT. Server admins are not subject to it: they
// run the server (and extend the others).
func (s *Service) Check(ctx context.Context, sess *store.Session) error {
	if sess.IsAdmin || !s.Applies(sess.UserID) {
		return nil
	}
	exp, err := s.expiry(ctx, sess.UserID)
	if err != nil {
		return err
	}
	if s.now().UnixMilli() >= exp {
		return matrix.Errorf(http.StatusForbidden, ErrExpiredAccount, "User account has expired")
	}
	return nil
}

// Set is the admin's extension: the account expires at expirationTS (nil:
// now + Period), renewal mails on or off. Returns the expiry.
func (s *Service) Set(ctx context.Context, userID string, expirationTS *int64, renewalEmails bool) (int64, error) {
	exp := s.now().Add(s.Period).UnixMilli()
	if expirationTS != nil {
		exp = *expirationTS
	}
	if err := s.Store.SetAccountValidity(ctx, userID, exp, renewalEmails); err != nil {
		return 0, err
	}
	s.lru().Delete(userID)
	return exp, nil
}

// Renew extends the account of a renewal token by Period from now; an
// unknown or used token is 404 M_NOT_FOUND.
func (s *Service) Renew(ctx context.Context, token string) (userID string, expirationTS int64, err error) {
	if token == "" {
		return "", 0, matrix.MissingParam("Missing token")
	}
	if len(token) > MaxTokenLength {
		return "", 0, matrix.Errorf(http.StatusNotFound, matrix.ErrNotFound, "Invalid renewal token")
	}
	exp := s.now().Add(s.Period).UnixMilli()
	userID, err = s.Store.RenewAccount(ctx, accounts.HashToken(token), exp)
	if errors.Is(err, store.ErrNotFound) {
		return "", 0, matrix.Errorf(http.StatusNotFound, matrix.ErrNotFound, "Invalid renewal token")
	}
	if err != nil {
		return "", 0, err
	}
	s.lru().Delete(userID)
	return userID, exp, nil
}

// SendMail mails a new renewal link to the user's addresses (POST
// account_validity/send_mail); the previous link stops working.
func (s *Service) SendMail(ctx context.Context, userID string) error {
	if !s.Applies(userID) {
		return matrix.Errorf(http.StatusBadRequest, matrix.ErrUnknown, "This account does not expire")
	}
	if s.Mailer == nil {
		return matrix.Errorf(http.StatusBadRequest, matrix.ErrUnknown, "This server cannot send mail")
	}
	addrs, err := s.addresses(ctx, userID)
	if err != nil {
		return err
	}
	if len(addrs) == 0 {
		return matrix.Errorf(http.StatusBadRequest, matrix.ErrUnknown, "No e-mail address is bound to this account")
	}
	exp, err := s.expiry(ctx, userID)
	if err != nil {
		return err
	}
	token := accounts.NewToken("syv_")
	if err := s.Store.SetRenewalToken(ctx, userID, accounts.HashToken(token), s.now().UnixMilli()); err != nil {
		return err
	}
	return s.mail(ctx, addrs, token, exp)
}

func (s *Service) addresses(ctx context.Context, userID string) ([]string, error) {
	if s.Addresses == nil {
		return nil, nil
	}
	tps, err := s.Addresses.List(ctx, userID)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, t := range tps {
		if t.Medium == "email" {
			out = append(out, t.Address)
		}
	}
	return out, nil
}

func (s *Service) mail(ctx context.Context, addrs []string, token string, expires int64) error {
	link := strings.TrimRight(s.BaseURL, "/") + RenewPath + "?token=" + url.QueryEscape(token)
	when := time.UnixMilli(expires).UTC().Format("2 January 2006 at 15:04 UTC")
	text := fmt.Sprintf("Your account expires on %s.\n\nTo keep it, open this link:\n\n%s\n\nIf you do nothing, you will no longer be able to use your account after that date.\n", when, link)
	var firstErr error
	for _, a := range addrs {
		if err := s.Mailer.Send(ctx, mail.Message{To: a, Subject: "Renew your account", Text: text}); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// MailDue sends the renewal mails of the accounts expiring within Notice
// that have not had one for this period, at most a batch; it returns how
// many were mailed. Each account's mail is claimed in the store first, so
// several processes never mail it twice.
func (s *Service) MailDue(ctx context.Context) (int, error) {
	if s.Mailer == nil {
		return 0, nil
	}
	now := s.now()
	due, err := s.Store.AccountsDueRenewalMail(ctx, now.Add(s.Notice).UnixMilli(), mailBatch)
	if err != nil {
		return 0, err
	}
	sent := 0
	for _, userID := range due {
		if !s.Applies(userID) {
			continue
		}
		token := accounts.NewToken("syv_")
		ok, err := s.Store.ClaimRenewalMail(ctx, userID, accounts.HashToken(token), now.UnixMilli())
		if err != nil {
			return sent, err
		}
		if !ok {
			continue
		}
		addrs, err := s.addresses(ctx, userID)
		if err != nil {
			return sent, err
		}
		if len(addrs) == 0 {
			// Nobody to tell (a deactivated account has none): claimed all
			// the same, so it does not fill every pass's batch.
			continue
		}
		exp, err := s.expiry(ctx, userID)
		if err != nil {
			return sent, err
		}
		if err := s.mail(ctx, addrs, token, exp); err != nil {
			// Released for the next pass (the token was never delivered).
			s.log().Warn("validity: sending a renewal mail", "user", userID, "err", err)
			if rerr := s.Store.SetRenewalToken(ctx, userID, accounts.HashToken(token), 0); rerr != nil {
				return sent, rerr
			}
			continue
		}
		sent++
	}
	return sent, nil
}

// Run sends due renewal mails every interval until ctx ends.
func (s *Service) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := s.MailDue(ctx); err != nil && ctx.Err() == nil {
			s.log().Warn("validity: renewal mails", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
