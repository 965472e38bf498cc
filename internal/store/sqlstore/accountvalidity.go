package sqlstore

import (
	"context"
	"errors"

	"conclave/internal/store"
)

func (s *Shared) EnsureAccountValidity(ctx context.Context, userID string, expirationTS int64) (*store.AccountValidity, error) {
	v := store.AccountValidity{UserID: userID}
	// Asked on every request of an account whose expiry is not cached:
	// a read, and a write only the first time.
	err := s.b.Read().QueryRow(ctx, `SELECT expiration_ts, renewal_emails, mail_sent_ts FROM account_validity WHERE user_id = ?`, userID).
		Scan(&v.ExpirationTS, &v.RenewalEmails, &v.MailSentTS)
	if err == nil {
		return &v, nil
	}
	if err = notFound(err); !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	err = s.b.Tx(ctx, func(tx Querier) error {
		if _, err := tx.Exec(ctx, `INSERT INTO account_validity (user_id, expiration_ts) VALUES (?, ?) ON CONFLICT (user_id) DO NOTHING`, userID, expirationTS); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT expiration_ts, renewal_emails, mail_sent_ts FROM account_validity WHERE user_id = ?`, userID).
			Scan(&v.ExpirationTS, &v.RenewalEmails, &v.MailSentTS)
	})
	if err != nil {
		return nil, err
	}
	return &v, nil
}

func (s *Shared) SetAccountValidity(ctx context.Context, userID string, expirationTS int64, renewalEmails bool) error {
	_, err := s.b.Write().Exec(ctx, `INSERT INTO account_validity (user_id, expiration_ts, renewal_emails, mail_sent_ts, renewal_token_hash)
		VALUES (?, ?, ?, 0, NULL)
		ON CONFLICT (user_id) DO UPDATE SET expiration_ts = excluded.expiration_ts, renewal_emails = excluded.renewal_emails,
			mail_sent_ts = 0, renewal_token_hash = NULL`, userID, expirationTS, renewalEmails)
	return err
}

func (s *Shared) SetRenewalToken(ctx context.Context, userID string, tokenHash []byte, sentTS int64) error {
	n, err := s.b.Write().Exec(ctx, `UPDATE account_validity SET renewal_token_hash = ?, mail_sent_ts = ? WHERE user_id = ?`, tokenHash, sentTS, userID)
	if err == nil && n == 0 {
		return store.ErrNotFound
	}
	return err
}

func (s *Shared) ClaimRenewalMail(ctx context.Context, userID string, tokenHash []byte, sentTS int64) (bool, error) {
	n, err := s.b.Write().Exec(ctx, `UPDATE account_validity SET renewal_token_hash = ?, mail_sent_ts = ? WHERE user_id = ? AND mail_sent_ts = 0`, tokenHash, sentTS, userID)
	return n == 1, err
}

func (s *Shared) RenewAccount(ctx context.Context, tokenHash []byte, expirationTS int64) (string, error) {
	var userID string
	err := s.b.Tx(ctx, func(tx Querier) error {
		return tx.QueryRow(ctx, `UPDATE account_validity SET expiration_ts = ?, mail_sent_ts = 0, renewal_token_hash = NULL
			WHERE renewal_token_hash = ? RETURNING user_id`, expirationTS, tokenHash).Scan(&userID)
	})
	return userID, notFound(err)
}

func (s *Shared) AccountsDueRenewalMail(ctx context.Context, ts int64, limit int) ([]string, error) {
	rows, err := s.b.Read().Query(ctx, `SELECT user_id FROM account_validity
		WHERE expiration_ts < ? AND renewal_emails = ? AND mail_sent_ts = 0 ORDER BY expiration_ts, user_id LIMIT ?`, ts, true, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}
