package store

import (
	"context"
	"encoding/json"
)

// AccountDataItem is one account data object; RoomID is "" for global data.
type AccountDataItem struct {
	RoomID  string
	Type    string
	Content json.RawMessage
	Pos     int64
}

// AccountData keeps per-user global and per-room account data.
type AccountData interface {
	PutAccountData(ctx context.Context, userID, roomID, typ string, content json.RawMessage) (int64, error)
	GetAccountData(ctx context.Context, userID, roomID, typ string) (json.RawMessage, error)
	// SwapAccountData stores content only if the stored content is still
	// old (byte for byte; nil: none stored), in one transaction: a
	// read-modify-write of one object (room tags) that loses no concurrent
	// change. swapped is false, and nothing written, when it was not.
	SwapAccountData(ctx context.Context, userID, roomID, typ string, old, content json.RawMessage) (pos int64, swapped bool, err error)
	// AccountDataSince lists items changed after pos (all when pos is 0).
	AccountDataSince(ctx context.Context, userID string, pos int64) ([]AccountDataItem, error)
}

// Receipt is one user's receipt in a room.
type Receipt struct {
	RoomID   string
	UserID   string
	Type     string // m.read, m.read.private
	ThreadID string // "" for unthreaded
	EventID  string
	TS       int64
	Pos      int64
}

// Receipts keeps read receipts.
type Receipts interface {
	PutReceipt(ctx context.Context, r *Receipt) (int64, error)
	// ReceiptsSince lists receipts in the rooms changed after pos.
	ReceiptsSince(ctx context.Context, roomIDs []string, pos int64) ([]Receipt, error)
}

// Filters keeps uploaded sync filters.
type Filters interface {
	PutFilter(ctx context.Context, userID string, filter json.RawMessage) (string, error)
	GetFilter(ctx context.Context, userID, filterID string) (json.RawMessage, error)
}
