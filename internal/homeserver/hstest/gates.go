package hstest

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"conclave/internal/homeserver"
	"conclave/internal/store"
)

// Gates hold a server's writes of a chosen kind right after the store
// committed them and before the write returns to its service: the moment
// at which a change is visible in the database but the service has not yet
// recorded or announced it. Tests force interleavings with them — a /sync
// in that moment — without sleeps. Start a server with
// StartWith(t, homeserver.Options{WrapStore: g.Wrap}).
type Gates struct {
	mu      sync.Mutex
	armed   map[Op]*Gate
	reading map[Op]chan struct{}
}

// Op names a gated store write.
type Op string

// The store writes Gates can hold.
const (
	OpSendToDevice   Op = "SendToDevice"
	OpPutAccountData Op = "PutAccountData"
	OpPutReceipt     Op = "PutReceipt"
	OpPersistEvents  Op = "PersistEvents"
	OpUploadKeys     Op = "UploadKeys"
	OpCreateDevice   Op = "CreateDevice"
	// Reads, for Reading.
	OpUserMemberships Op = "UserMemberships"
	OpMaxStreamPos    Op = "MaxStreamPos"
	// A stream notification received from the database (WrapShared).
	OpStreamNotification Op = "StreamNotification"
)

// Gate is one armed hold: the next write of its kind closes Committed once
// committed, then waits for Release.
type Gate struct {
	Committed chan struct{}
	release   chan struct{}
	once      sync.Once
}

// NewGates returns gates with nothing armed.
func NewGates() *Gates { return &Gates{armed: map[Op]*Gate{}, reading: map[Op]chan struct{}{}} }

// Reading returns a channel closed at the next store read of kind op: a
// test learns that a request got that far, e.g. a /sync that goes on to
// wait for the room lock a held write keeps.
func (g *Gates) Reading(op Op) <-chan struct{} {
	ch := make(chan struct{})
	g.mu.Lock()
	g.reading[op] = ch
	g.mu.Unlock()
	return ch
}

func (g *Gates) read(op Op) {
	g.mu.Lock()
	ch := g.reading[op]
	delete(g.reading, op)
	g.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

// Arm holds the next write of kind op. The test must call Release (it is
// also released when the test ends).
func (g *Gates) Arm(t testing.TB, op Op) *Gate {
	gt := &Gate{Committed: make(chan struct{}), release: make(chan struct{})}
	g.mu.Lock()
	g.armed[op] = gt
	g.mu.Unlock()
	t.Cleanup(gt.Release)
	return gt
}

// Release lets the held write return.
func (gt *Gate) Release() { gt.once.Do(func() { close(gt.release) }) }

// WaitCommitted waits until the held write committed (fails the test after
// 10 s).
func (gt *Gate) WaitCommitted(t testing.TB) {
	t.Helper()
	select {
	case <-gt.Committed:
	case <-time.After(10 * time.Second):
		t.Fatal("the gated write never committed")
	}
}

func (g *Gates) hold(op Op) {
	g.mu.Lock()
	gt := g.armed[op]
	delete(g.armed, op)
	g.mu.Unlock()
	if gt != nil {
		close(gt.Committed)
		<-gt.release
	}
}

// Wrap is the homeserver.Options.WrapStore of these gates.
func (g *Gates) Wrap(st homeserver.Store) homeserver.Store { return gatedStore{st, g} }

type gatedStore struct {
	homeserver.Store
	g *Gates
}

// WrapShared is Wrap for a store several processes share (PostgreSQL): the
// server still runs as one of several, and the next stream notification its
// listener receives can be held (OpStreamNotification: Committed closes when
// it arrives, and it is applied on Release).
func (g *Gates) WrapShared(st homeserver.Store) homeserver.Store {
	c, ok := st.(interface {
		store.Cluster
		store.RoomLocker
	})
	if !ok {
		return gatedStore{st, g}
	}
	return sharedGatedStore{gatedStore{st, g}, c}
}

type sharedGatedStore struct {
	gatedStore
	c interface {
		store.Cluster
		store.RoomLocker
	}
}

func (s sharedGatedStore) Publish(ctx context.Context, msgs []string) error {
	return s.c.Publish(ctx, msgs)
}

func (s sharedGatedStore) PublishSequenced(ctx context.Context, build func(serial int64) (string, error)) error {
	return s.c.PublishSequenced(ctx, build)
}

func (s sharedGatedStore) SharedSigningKey(ctx context.Context, key []byte) ([]byte, error) {
	return s.c.SharedSigningKey(ctx, key)
}

func (s sharedGatedStore) LockRoom(ctx context.Context, roomID string) (func(), error) {
	return s.c.LockRoom(ctx, roomID)
}

func (s sharedGatedStore) Listen(ctx context.Context, onConnect func(serial, streamPos int64), onMessage func(string), onStream func(from, to int64, marks string), onError func(error)) {
	s.c.Listen(ctx, onConnect, onMessage, func(from, to int64, marks string) {
		s.g.hold(OpStreamNotification)
		onStream(from, to, marks)
	}, onError)
}

func (s gatedStore) MaxStreamPos(ctx context.Context) (int64, error) {
	s.g.read(OpMaxStreamPos)
	return s.Store.MaxStreamPos(ctx)
}

func (s gatedStore) SendToDevice(ctx context.Context, sender, senderDevice, txnID string, msgs []store.ToDeviceSend, fed []store.FedEnqueue) ([]string, bool, error) {
	r, dup, err := s.Store.SendToDevice(ctx, sender, senderDevice, txnID, msgs, fed)
	s.g.hold(OpSendToDevice)
	return r, dup, err
}

func (s gatedStore) PutAccountData(ctx context.Context, userID, roomID, typ string, content json.RawMessage) (int64, error) {
	pos, err := s.Store.PutAccountData(ctx, userID, roomID, typ, content)
	s.g.hold(OpPutAccountData)
	return pos, err
}

func (s gatedStore) PutReceipt(ctx context.Context, r *store.Receipt) (int64, error) {
	pos, err := s.Store.PutReceipt(ctx, r)
	s.g.hold(OpPutReceipt)
	return pos, err
}

func (s gatedStore) PersistEvents(ctx context.Context, roomID string, events []store.NewEvent) ([]int64, error) {
	pos, err := s.Store.PersistEvents(ctx, roomID, events)
	s.g.hold(OpPersistEvents)
	return pos, err
}

func (s gatedStore) UploadKeys(ctx context.Context, u *store.KeyUpload) (map[string]int, bool, error) {
	counts, changed, err := s.Store.UploadKeys(ctx, u)
	s.g.hold(OpUploadKeys)
	return counts, changed, err
}

func (s gatedStore) UserMemberships(ctx context.Context, userID string) ([]store.Membership, error) {
	s.g.read(OpUserMemberships)
	return s.Store.UserMemberships(ctx, userID)
}

func (s gatedStore) CreateDevice(ctx context.Context, d *store.Device, tok store.NewToken) error {
	err := s.Store.CreateDevice(ctx, d, tok)
	s.g.hold(OpCreateDevice)
	return err
}
