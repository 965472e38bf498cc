package sqlstore

import (
	"context"
)

// The answers to received transactions (store.FedTxns, migration 0018).

func (s *Shared) FedTxnAnswer(ctx context.Context, origin, txnID string) ([]byte, error) {
	var answer []byte
	err := s.b.Read().QueryRow(ctx, `SELECT answer FROM fed_received_txns WHERE origin = ? AND txn_id = ?`, origin, txnID).Scan(&answer)
	if err != nil {
		return nil, notFound(err)
	}
	return answer, nil
}

func (s *Shared) FedTxnRecord(ctx context.Context, origin, txnID string, answer []byte, nowMS int64) error {
	return s.b.Tx(ctx, func(tx Querier) error { return FedTxnRecordTx(ctx, tx, origin, txnID, answer, nowMS) })
}

// FedTxnRecordTx is FedTxnRecord inside tx (SQLite's group commit).
func FedTxnRecordTx(ctx context.Context, tx Querier, origin, txnID string, answer []byte, nowMS int64) error {
	_, err := tx.Exec(ctx, `INSERT INTO fed_received_txns (origin, txn_id, answer, received_ts) VALUES (?, ?, ?, ?)
		ON CONFLICT (origin, txn_id) DO NOTHING`, origin, txnID, answer, nowMS)
	return err
}

func (s *Shared) FedTxnPrune(ctx context.Context, beforeMS int64) (int, error) {
	var n int64
	err := s.b.Tx(ctx, func(tx Querier) error {
		var err error
		n, err = tx.Exec(ctx, `DELETE FROM fed_received_txns WHERE received_ts < ?`, beforeMS)
		return err
	})
	return int(n), err
}
