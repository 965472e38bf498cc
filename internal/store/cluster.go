package store

import "context"

// Cluster is implemented by stores that several server processes may share
// (PostgreSQL). It carries the messages that keep the processes' in-memory
// views in step: wake-ups of long-polling /sync requests, room state
// invalidations, typing and presence changes. The store moves opaque
// strings; what they mean is the homeserver's business.
type Cluster interface {
	// Publish sends each message to every listening process, this one
	// included. A message is at most MaxClusterMessage bytes.
	Publish(ctx context.Context, msgs []string) error
	// PublishSequenced takes the next cluster-wide ephemeral serial and
	// publishes build(serial) in the same transaction: every listener
	// receives sequenced messages in serial order.
	PublishSequenced(ctx context.Context, build func(serial int64) (string, error)) error
	// Listen delivers every published message to onMessage, and every
	// allocation of stream positions (from, to] with the change tracker's
	// marks of its transaction (changes.Payload) to onStream, all in commit
	// order, until ctx ends. On each (re)connection it first calls onConnect
	// with the last ephemeral serial allocated and the committed stream
	// position: messages may have been missed before a reconnection.
	// Connection failures go to onError, and it reconnects; it returns only
	// when ctx ends.
	Listen(ctx context.Context, onConnect func(serial, streamPos int64), onMessage func(string), onStream func(from, to int64, marks string), onError func(error))
	// SharedSigningKey stores key (text form) as the server's signing key
	// unless the database already has one, and returns the one it has.
	SharedSigningKey(ctx context.Context, key []byte) ([]byte, error)
}

// MaxClusterMessage bounds a published message (PostgreSQL's NOTIFY payload
// limit is 8000 bytes).
const MaxClusterMessage = 7900

// RoomLocker is implemented by stores several processes may share: LockRoom
// takes a cross-process lock on writing to roomID, held until unlock, so the
// room service loads, builds and persists an event without another process
// slipping an event in between (which would make it rebuild, and a busy
// process could starve another's writers for ever). Waiters are served in
// turn.
type RoomLocker interface {
	LockRoom(ctx context.Context, roomID string) (unlock func(), err error)
}
