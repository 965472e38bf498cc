package store

import "context"

// FedItem is one PDU or EDU to send to other servers (internal/fedsender).
// A PDU has EventID and JSON; an EDU has EDUType and JSON (its content).
type FedItem struct {
	// EventID names a PDU (room versions 3 and later do not carry it in
	// the JSON); empty for an EDU.
	EventID string
	// EDUType is an EDU's type; empty for a PDU.
	EDUType string
	// JSON is the PDU, or the EDU's content.
	JSON []byte
	// CoalesceKey, for an EDU: a queued EDU to the same destination with
	// the same key is replaced by this one, which goes to the end of the
	// queue. Empty: never replaced.
	CoalesceKey string
	// Keep, for an EDU: never dropped by the queue cap (to-device
	// messages). PDUs are never dropped.
	Keep bool
}

// IsPDU tells a PDU from an EDU.
func (it *FedItem) IsPDU() bool { return it.EDUType == "" }

// FedEnqueue is an item for several destinations.
type FedEnqueue struct {
	Destinations []string
	Item         FedItem
}

// FedEntry is a queued item as FedNextBatch returns it.
type FedEntry struct {
	// ID orders a destination's queue (ascending) and names the item in
	// FedDelivered and FedFailed.
	ID      int64
	EventID string
	EDUType string
	JSON    []byte
}

// FedBatch is the head of a destination's queue.
type FedBatch struct {
	// TxnID is the transaction ID of a failed attempt whose items are
	// still queued: a retry sends them again under the same ID, so a
	// receiver that had processed the first attempt recognises it. Empty
	// when no attempt failed: the sender chooses a new ID.
	TxnID string
	PDUs  []FedEntry
	EDUs  []FedEntry
	// The destination's delivery state (FedFailed).
	RetryCount    int
	NextAttemptTS int64
}

// Empty reports a batch with nothing to send.
func (b *FedBatch) Empty() bool { return len(b.PDUs) == 0 && len(b.EDUs) == 0 }

// FedDone is a transaction its destination acknowledged.
type FedDone struct {
	Destination string
	PDUs, EDUs  []int64 // FedEntry IDs
}

// FedDestination is a destination with queued items and its delivery state
// (all zero when it was never attempted).
type FedDestination struct {
	Destination   string
	RetryCount    int
	NextAttemptTS int64 // Unix ms; no attempt before
	LastSuccessTS int64
}

// FedQueue is the durable outbound federation queue: one queue per
// destination of PDUs (never dropped) and EDUs. The store keeps order and
// atomicity; which destination gets what, batching, back-off and retries are
// internal/fedsender's.
type FedQueue interface {
	// FedEnqueue queues each item for each of its destinations in one
	// transaction: when it returns nil, everything is committed. An EDU
	// with a CoalesceKey replaces the EDU queued with the same key to the
	// same destination.
	FedEnqueue(ctx context.Context, items []FedEnqueue) error
	// FedNextBatch returns the head of dest's queue: the items of its
	// pending transaction (FedFailed) that are still queued, under its ID,
	// or else, in queue order, up to maxPDUs PDUs and maxEDUs EDUs and no
	// ID. An empty queue gives an empty batch. The batch carries dest's
	// retry count and next attempt time.
	FedNextBatch(ctx context.Context, dest string, maxPDUs, maxEDUs int) (*FedBatch, error)
	// FedDelivered removes, for each acknowledged transaction, its items
	// (IDs of FedNextBatch entries) from its destination's queue, forgets
	// the destination's pending transaction and back-off, and sets its last
	// success to nowMS, all in one transaction. The items' payloads stay
	// until FedCollect.
	FedDelivered(ctx context.Context, done []FedDone, nowMS int64) error
	// FedFailed records a failed attempt to send the items under txnID:
	// they become dest's pending transaction (those still queued), and its
	// retry count and next attempt time are set.
	FedFailed(ctx context.Context, dest, txnID string, pdus, edus []int64, retryCount int, nextAttemptTS int64) error
	// FedResetBackoff sets dest's retry count and next attempt time to
	// zero (the destination talked to us: it is up again). Its pending
	// transaction stays.
	FedResetBackoff(ctx context.Context, dest string) error
	// FedDestinations lists the destinations with queued items, with their
	// delivery state.
	FedDestinations(ctx context.Context) ([]FedDestination, error)
	// FedPrune drops the oldest EDUs of dest that are not Keep while it
	// holds more than max items, and returns how many it dropped.
	FedPrune(ctx context.Context, dest string, max int) (int, error)
	// FedCollect deletes the stored payloads among ids (entry IDs) that no
	// destination's queue holds any more — called after FedDelivered
	// committed — or, with ids nil, every such payload. It returns how many
	// it deleted.
	FedCollect(ctx context.Context, ids []int64) (int, error)
}

// FedLocker is implemented by stores several processes may share
// (PostgreSQL): it makes one process at a time the sender to a destination.
type FedLocker interface {
	// TryLockDestination takes the cross-process right to send to dest if
	// no other process holds it (ok false otherwise). lost is closed if the
	// right is lost before unlock is called (the database session holding
	// it ended); unlock releases it.
	TryLockDestination(ctx context.Context, dest string) (unlock func(), lost <-chan struct{}, ok bool, err error)
}
