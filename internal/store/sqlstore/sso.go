package sqlstore

import (
	"context"
	"errors"

	"conclave/internal/store"
)

func (s *Shared) AddSSOAttempt(ctx context.Context, a *store.SSOAttempt) error {
	_, err := s.b.Write().Exec(ctx, `INSERT INTO sso_attempts (state_hash, browser_hash, nonce, verifier, idp, redirect_url, expires_ts, uia_session, user_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, a.StateHash, a.BrowserHash, a.Nonce, a.Verifier, a.IdP, a.RedirectURL, a.ExpiresTS, a.UIASession, a.UserID)
	if s.b.IsUnique(err) {
		return store.ErrConflict
	}
	return err
}

func (s *Shared) TakeSSOAttempt(ctx context.Context, stateHash []byte, now int64) (*store.SSOAttempt, error) {
	// DELETE … RETURNING: of two callbacks with the same state, one gets
	// the row and the other nothing.
	var a store.SSOAttempt
	err := s.b.Tx(ctx, func(tx Querier) error {
		return tx.QueryRow(ctx, `DELETE FROM sso_attempts WHERE state_hash = ?
			RETURNING state_hash, browser_hash, nonce, verifier, idp, redirect_url, expires_ts, uia_session, user_id`, stateHash).
			Scan(&a.StateHash, &a.BrowserHash, &a.Nonce, &a.Verifier, &a.IdP, &a.RedirectURL, &a.ExpiresTS, &a.UIASession, &a.UserID)
	})
	if err != nil {
		return nil, notFound(err)
	}
	if a.ExpiresTS < now {
		return nil, store.ErrNotFound
	}
	return &a, nil
}

func (s *Shared) AddLoginToken(ctx context.Context, tokenHash []byte, userID string, expiresTS int64) error {
	_, err := s.b.Write().Exec(ctx, `INSERT INTO login_tokens (token_hash, user_id, expires_ts) VALUES (?, ?, ?)`, tokenHash, userID, expiresTS)
	if s.b.IsUnique(err) {
		return store.ErrConflict
	}
	return err
}

func (s *Shared) TakeLoginToken(ctx context.Context, tokenHash []byte, now int64) (string, error) {
	var userID string
	var expires int64
	err := s.b.Tx(ctx, func(tx Querier) error {
		return tx.QueryRow(ctx, `DELETE FROM login_tokens WHERE token_hash = ? RETURNING user_id, expires_ts`, tokenHash).Scan(&userID, &expires)
	})
	if err != nil {
		return "", notFound(err)
	}
	if expires < now {
		return "", store.ErrNotFound
	}
	return userID, nil
}

func (s *Shared) DeleteExpiredSSO(ctx context.Context, now int64) error {
	return s.b.Tx(ctx, func(tx Querier) error {
		if _, err := tx.Exec(ctx, `DELETE FROM sso_attempts WHERE expires_ts < ?`, now); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM login_tokens WHERE expires_ts < ?`, now); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM uia_sso_sessions WHERE expires_ts < ?`, now)
		return err
	})
}

func (s *Shared) AddUIASSOSession(ctx context.Context, id, userID, purpose string, expiresTS int64) error {
	_, err := s.b.Write().Exec(ctx, `INSERT INTO uia_sso_sessions (session_id, user_id, purpose, expires_ts) VALUES (?, ?, ?, ?)
		ON CONFLICT (session_id) DO NOTHING`, id, userID, purpose, expiresTS)
	return err
}

func (s *Shared) UIASSOSession(ctx context.Context, id string, now int64) (string, string, error) {
	var userID, purpose string
	err := s.b.Read().QueryRow(ctx, `SELECT user_id, purpose FROM uia_sso_sessions WHERE session_id = ? AND expires_ts >= ?`, id, now).
		Scan(&userID, &purpose)
	if err != nil {
		return "", "", notFound(err)
	}
	return userID, purpose, nil
}

func (s *Shared) CompleteUIASSO(ctx context.Context, id, userID string, now int64) error {
	n, err := s.b.Write().Exec(ctx, `UPDATE uia_sso_sessions SET completed = true WHERE session_id = ? AND user_id = ? AND expires_ts >= ?`,
		id, userID, now)
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

func (s *Shared) TakeUIASSO(ctx context.Context, id, userID, purpose string, now int64) (bool, error) {
	// DELETE … RETURNING: of two requests repeated with one session (two
	// processes), one takes it.
	var expires int64
	err := s.b.Tx(ctx, func(tx Querier) error {
		return tx.QueryRow(ctx, `DELETE FROM uia_sso_sessions WHERE session_id = ? AND user_id = ? AND purpose = ? AND completed = true
			RETURNING expires_ts`, id, userID, purpose).Scan(&expires)
	})
	if err != nil {
		if err = notFound(err); errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		return false, err
	}
	return expires >= now, nil
}
