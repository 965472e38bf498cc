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
	// A read, for Reading.
	OpUserMemberships Op = "UserMemberships"
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

func (s gatedStore) SendToDevice(ctx context.Context, sender, senderDevice, txnID string, msgs []store.ToDeviceSend) ([]string, bool, error) {
	r, dup, err := s.Store.SendToDevice(ctx, sender, senderDevice, txnID, msgs)
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
