package sqlstore

import (
	"context"

	"conclave/internal/store"
)

func (s *Shared) ServerKeys(ctx context.Context, serverName string) ([]store.ServerKey, error) {
	rows, err := s.b.Read().Query(ctx, `SELECT key_id, public_key, valid_until_ts, expired_ts, fetched_ts FROM server_keys WHERE server_name = ? ORDER BY key_id`+s.d.Collate, serverName)
	keys, err := collect(rows, err, func(r Rows, k *store.ServerKey) error {
		k.ServerName = serverName
		return r.Scan(&k.KeyID, &k.PublicKey, &k.ValidUntilTS, &k.ExpiredTS, &k.FetchedTS)
	})
	if keys == nil && err == nil {
		keys = []store.ServerKey{}
	}
	return keys, err
}

// StoreServerKeys upserts with "newest fetch wins": processes fetching the
// same server concurrently may commit in any order.
func (s *Shared) StoreServerKeys(ctx context.Context, serverName string, keys []store.ServerKey, resp *store.ServerKeyResponse) error {
	return s.b.Tx(ctx, func(tx Querier) error {
		for _, k := range keys {
			if _, err := tx.Exec(ctx, `INSERT INTO server_keys (server_name, key_id, public_key, valid_until_ts, expired_ts, fetched_ts) VALUES (?, ?, ?, ?, ?, ?)
				ON CONFLICT (server_name, key_id) DO UPDATE SET public_key = excluded.public_key, valid_until_ts = excluded.valid_until_ts,
				expired_ts = excluded.expired_ts, fetched_ts = excluded.fetched_ts WHERE excluded.fetched_ts >= server_keys.fetched_ts`,
				serverName, k.KeyID, k.PublicKey, k.ValidUntilTS, k.ExpiredTS, k.FetchedTS); err != nil {
				return err
			}
		}
		if resp == nil {
			return nil
		}
		_, err := tx.Exec(ctx, `INSERT INTO server_key_responses (server_name, valid_until_ts, fetched_ts, response) VALUES (?, ?, ?, ?)
			ON CONFLICT (server_name) DO UPDATE SET valid_until_ts = excluded.valid_until_ts, fetched_ts = excluded.fetched_ts, response = excluded.response
			WHERE excluded.fetched_ts >= server_key_responses.fetched_ts`,
			serverName, resp.ValidUntilTS, resp.FetchedTS, string(resp.JSON))
		return err
	})
}

func (s *Shared) ServerKeyResponse(ctx context.Context, serverName string) (*store.ServerKeyResponse, error) {
	r := store.ServerKeyResponse{ServerName: serverName}
	var body string
	err := s.b.Read().QueryRow(ctx, `SELECT valid_until_ts, fetched_ts, response FROM server_key_responses WHERE server_name = ?`, serverName).Scan(&r.ValidUntilTS, &r.FetchedTS, &body)
	if err != nil {
		return nil, notFound(err)
	}
	r.JSON = []byte(body)
	return &r, nil
}
