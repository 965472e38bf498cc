// Package store defines Conclave's persistence contract: the records it keeps
// and the interfaces the services use to keep them. store/sqlite (and later
// store/postgres) implement the interfaces; a shared conformance suite checks
// both. Stores never decide Matrix rules: they persist and look up, atomically.
package store

import (
	"context"
	"errors"
)

// ErrNotFound is returned by lookups that find nothing. Services translate it
// into the Matrix error that fits the request.
var ErrNotFound = errors.New("store: not found")

// ErrConflict is returned when a uniqueness rule refuses a write (a user ID
// or alias already taken, an event ID already stored).
var ErrConflict = errors.New("store: conflict")

// ErrRoomChanged is returned by PersistEvents when the room's forward
// extremities are no longer the PrevEvents its first event was built on:
// another writer (another process on the same database) appended to the
// room. Nothing is written; the caller reloads the room and may retry.
var ErrRoomChanged = errors.New("store: room changed since it was loaded")

// Store is everything the server persists. Services depend on the narrower
// interfaces they need.
type Store interface {
	Accounts
	Profiles
	Rooms
	Events
	Graph
	RemoteMemberships
	StateHistory
	RoomsRead
	SyncQueries
	AccountData
	Receipts
	Filters
	Directory
	Keys
	DeviceLists
	Stream
	MediaStore
	Pushers
	Notifications
	PushQueue
	Search
	ServerKeys
	FedQueue
	FedTxns
	ServerNotices
	SlidingSync
	TimelineGaps
	ThreadSubscriptions
	Threepids
	SSO
	AccountValidities
	Retention
	Close() error
}

// Stream gives the global stream position: every persisted change that /sync
// reports (events, receipts, account data, to-device messages, device list
// changes) takes the next position, so a sync token is one number.
type Stream interface {
	// MaxStreamPos is the highest position committed so far.
	MaxStreamPos(ctx context.Context) (int64, error)
}

// Tx marks a function that runs inside one write transaction.
type TxFunc func(ctx context.Context) error
