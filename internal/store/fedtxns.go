package store

import "context"

// FedTxns keeps the answers to transactions received from other servers
// (PUT /send/{txnId}), so that a retry gets the same answer without being
// processed again, across restarts (internal/federation).
type FedTxns interface {
	// FedTxnAnswer returns the answer stored for origin's txnID
	// (ErrNotFound if none).
	FedTxnAnswer(ctx context.Context, origin, txnID string) ([]byte, error)
	// FedTxnRecord stores the answer to origin's txnID, received at nowMS
	// (Unix ms); an answer already stored for it stays. Like PersistEvents,
	// a call is carried to its outcome even if ctx ends.
	FedTxnRecord(ctx context.Context, origin, txnID string, answer []byte, nowMS int64) error
	// FedTxnPrune deletes the answers received before beforeMS and returns
	// how many it deleted.
	FedTxnPrune(ctx context.Context, beforeMS int64) (int, error)
}
