package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"conclave/internal/store"
)

const threepidSessionCols = `sid, client_secret, medium, address, purpose, send_attempt, token_hash, failures, created_ts, token_expires_ts, expires_ts, validated_ts`

func scanThreepidSession(row Row) (*store.ThreepidSession, error) {
	var t store.ThreepidSession
	var attempt, failures int64
	err := row.Scan(&t.SID, &t.ClientSecret, &t.Medium, &t.Address, &t.Purpose, &attempt, &t.TokenHash, &failures,
		&t.CreatedTS, &t.TokenExpiresTS, &t.ExpiresTS, &t.ValidatedTS)
	if err != nil {
		return nil, notFound(err)
	}
	t.SendAttempt, t.Failures = int(attempt), int(failures)
	return &t, nil
}

func (s *Shared) StartThreepidSession(ctx context.Context, n *store.ThreepidSession) (*store.ThreepidSession, bool, error) {
	var got *store.ThreepidSession
	var resend bool
	err := s.b.Tx(ctx, func(tx Querier) error {
		got, resend = nil, false
		old, err := scanThreepidSession(tx.QueryRow(ctx, `SELECT `+threepidSessionCols+` FROM threepid_sessions
			WHERE client_secret = ? AND medium = ? AND address = ? AND purpose = ?`+s.d.ForUpdate, n.ClientSecret, n.Medium, n.Address, n.Purpose))
		switch {
		case errors.Is(err, store.ErrNotFound):
			_, err := tx.Exec(ctx, `INSERT INTO threepid_sessions (`+threepidSessionCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				n.SID, n.ClientSecret, n.Medium, n.Address, n.Purpose, n.SendAttempt, n.TokenHash, n.Failures, n.CreatedTS, n.TokenExpiresTS, n.ExpiresTS, n.ValidatedTS)
			if err != nil {
				return err
			}
			c := *n
			got, resend = &c, true
			return nil
		case err != nil:
			return err
		}
		if n.SendAttempt <= old.SendAttempt {
			got = old
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE threepid_sessions SET send_attempt = ?, token_hash = ?, failures = 0, token_expires_ts = ?, expires_ts = ? WHERE sid = ?`,
			n.SendAttempt, n.TokenHash, n.TokenExpiresTS, n.ExpiresTS, old.SID); err != nil {
			return err
		}
		c := *old
		c.SendAttempt, c.TokenHash, c.Failures, c.TokenExpiresTS, c.ExpiresTS = n.SendAttempt, n.TokenHash, 0, n.TokenExpiresTS, n.ExpiresTS
		got, resend = &c, true
		return nil
	})
	if s.b.IsUnique(err) {
		// Two first requests raced: the other one's session stands.
		return nil, false, store.ErrConflict
	}
	return got, resend, err
}

func (s *Shared) ThreepidSession(ctx context.Context, sid string) (*store.ThreepidSession, error) {
	return scanThreepidSession(s.b.Read().QueryRow(ctx, `SELECT `+threepidSessionCols+` FROM threepid_sessions WHERE sid = ?`, sid))
}

func (s *Shared) ThreepidTokenFailed(ctx context.Context, sid string) (int, error) {
	var n int64
	err := s.b.Tx(ctx, func(tx Querier) error {
		if _, err := tx.Exec(ctx, `UPDATE threepid_sessions SET failures = failures + 1 WHERE sid = ?`, sid); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT failures FROM threepid_sessions WHERE sid = ?`, sid).Scan(&n)
	})
	return int(n), notFound(err)
}

func (s *Shared) ValidateThreepidSession(ctx context.Context, sid string, ts int64) error {
	n, err := s.b.Write().Exec(ctx, `UPDATE threepid_sessions SET validated_ts = ? WHERE sid = ? AND validated_ts = 0`, ts, sid)
	if err != nil || n > 0 {
		return err
	}
	_, err = s.ThreepidSession(ctx, sid)
	return err
}

func (s *Shared) DeleteExpiredThreepidSessions(ctx context.Context, ts int64) error {
	_, err := s.b.Write().Exec(ctx, `DELETE FROM threepid_sessions WHERE expires_ts < ?`, ts)
	return err
}

func (s *Shared) AddThreepid(ctx context.Context, t *store.Threepid) error {
	return s.b.Tx(ctx, func(tx Querier) error {
		var owner string
		err := tx.QueryRow(ctx, `SELECT user_id FROM user_threepids WHERE medium = ? AND address = ?`+s.d.ForUpdate, t.Medium, t.Address).Scan(&owner)
		switch {
		case err == nil && owner == t.UserID:
			return nil
		case err == nil:
			return store.ErrConflict
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO user_threepids (medium, address, user_id, validated_ts, added_ts, lookup_hash) VALUES (?, ?, ?, ?, ?, ?)`,
			t.Medium, t.Address, t.UserID, t.ValidatedTS, t.AddedTS, t.LookupHash)
		if s.b.IsUnique(err) {
			return store.ErrConflict
		}
		return err
	})
}

func (s *Shared) UserThreepids(ctx context.Context, userID string) ([]store.Threepid, error) {
	rows, err := s.b.Read().Query(ctx, `SELECT medium, address, validated_ts, added_ts, lookup_hash FROM user_threepids WHERE user_id = ? ORDER BY added_ts, address`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Threepid
	for rows.Next() {
		t := store.Threepid{UserID: userID}
		if err := rows.Scan(&t.Medium, &t.Address, &t.ValidatedTS, &t.AddedTS, &t.LookupHash); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

func (s *Shared) DeleteThreepid(ctx context.Context, userID, medium, address string) (bool, error) {
	n, err := s.b.Write().Exec(ctx, `DELETE FROM user_threepids WHERE user_id = ? AND medium = ? AND address = ?`, userID, medium, address)
	return n > 0, err
}

func (s *Shared) UserByThreepid(ctx context.Context, medium, address string) (string, error) {
	var userID string
	err := s.b.Read().QueryRow(ctx, `SELECT user_id FROM user_threepids WHERE medium = ? AND address = ?`, medium, address).Scan(&userID)
	return userID, notFound(err)
}

// MaxLookupHashes bounds one UsersByLookupHash call.
const MaxLookupHashes = 1000

func (s *Shared) UsersByLookupHash(ctx context.Context, hashes []string) (map[string]string, error) {
	if len(hashes) > MaxLookupHashes {
		return nil, errors.New("sqlstore: too many lookup hashes")
	}
	out := map[string]string{}
	for start := 0; start < len(hashes); start += s.d.MaxList {
		chunk := hashes[start:min(len(hashes), start+s.d.MaxList)]
		cond, args := s.d.In("lookup_hash", chunk, nil)
		rows, err := s.b.Read().Query(ctx, `SELECT lookup_hash, user_id FROM user_threepids WHERE `+cond, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var h, u string
			if err := rows.Scan(&h, &u); err != nil {
				rows.Close()
				return nil, err
			}
			out[h] = u
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Shared) AddThreepidInvite(ctx context.Context, inv *store.ThreepidInvite) error {
	// A second invite by the same sender to the same room keeps the first
	// one's time, and its token unless it had none.
	_, err := s.b.Write().Exec(ctx, `INSERT INTO threepid_invites (medium, address, room_id, sender, token, created_ts) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (medium, address, room_id, sender) DO UPDATE SET token = CASE WHEN threepid_invites.token = '' THEN excluded.token ELSE threepid_invites.token END`,
		inv.Medium, inv.Address, inv.RoomID, inv.Sender, inv.Token, inv.CreatedTS)
	return err
}

func (s *Shared) ThreepidInvites(ctx context.Context, medium, address string) ([]store.ThreepidInvite, error) {
	rows, err := s.b.Read().Query(ctx, `SELECT room_id, sender, token, created_ts FROM threepid_invites WHERE medium = ? AND address = ? ORDER BY created_ts, room_id, sender LIMIT 100`, medium, address)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.ThreepidInvite
	for rows.Next() {
		inv := store.ThreepidInvite{Medium: medium, Address: address}
		if err := rows.Scan(&inv.RoomID, &inv.Sender, &inv.Token, &inv.CreatedTS); err != nil {
			return nil, err
		}
		out = append(out, inv)
	}
	return out, rows.Err()
}

func (s *Shared) DeleteThreepidInvites(ctx context.Context, medium, address string) error {
	_, err := s.b.Write().Exec(ctx, `DELETE FROM threepid_invites WHERE medium = ? AND address = ?`, medium, address)
	return err
}

func (s *Shared) PutOpenIDToken(ctx context.Context, hash []byte, userID string, expires, now int64) error {
	return s.b.Tx(ctx, func(tx Querier) error {
		if _, err := tx.Exec(ctx, `DELETE FROM openid_tokens WHERE expires_ts < ?`, now); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO openid_tokens (token_hash, user_id, expires_ts) VALUES (?, ?, ?)`, hash, userID, expires)
		return err
	})
}

func (s *Shared) OpenIDTokenUser(ctx context.Context, hash []byte, now int64) (string, error) {
	var userID string
	err := s.b.Read().QueryRow(ctx, `SELECT user_id FROM openid_tokens WHERE token_hash = ? AND expires_ts >= ?`, hash, now).Scan(&userID)
	return userID, notFound(err)
}

func (s *Shared) PutIdentityToken(ctx context.Context, hash []byte, userID string, ts int64) error {
	_, err := s.b.Write().Exec(ctx, `INSERT INTO identity_tokens (token_hash, user_id, created_ts) VALUES (?, ?, ?)`, hash, userID, ts)
	return err
}

func (s *Shared) IdentityTokenUser(ctx context.Context, hash []byte) (string, error) {
	var userID string
	err := s.b.Read().QueryRow(ctx, `SELECT user_id FROM identity_tokens WHERE token_hash = ?`, hash).Scan(&userID)
	return userID, notFound(err)
}

func (s *Shared) DeleteIdentityToken(ctx context.Context, hash []byte) error {
	_, err := s.b.Write().Exec(ctx, `DELETE FROM identity_tokens WHERE token_hash = ?`, hash)
	return err
}
