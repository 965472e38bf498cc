package fedtest

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"conclave/internal/homeserver"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/store"
)

// diesAfterPersist is a store whose next PersistEvents, when armed, commits
// and then fails: what the room service sees when the process dies (or the
// database connection drops) right after the commit of an event. Whatever
// the service would do next for that write never happens.
type diesAfterPersist struct {
	homeserver.Store
	armed *atomic.Bool
}

func (s diesAfterPersist) PersistEvents(ctx context.Context, roomID string, events []store.NewEvent) ([]int64, error) {
	pos, err := s.Store.PersistEvents(ctx, roomID, events)
	if err == nil && s.armed.CompareAndSwap(true, false) {
		return nil, errors.New("fedtest: died after the commit")
	}
	return pos, err
}

// startDyingAfterPersist starts two federating servers, the first of which
// dies after the commit of its next PersistEvents once armed.
func startDyingAfterPersist(t *testing.T) (a, b *hstest.Server, armed *atomic.Bool) {
	armed = new(atomic.Bool)
	hs := hstest.StartFederationWith(t, 2, nil, func(i int) homeserver.Options {
		if i != 0 {
			return homeserver.Options{}
		}
		return homeserver.Options{WrapStore: func(st homeserver.Store) homeserver.Store { return diesAfterPersist{st, armed} }}
	})
	return hs[0], hs[1], armed
}

// A message to a room shared with another server is not lost when the
// sending server dies right after committing it: the client's retry is a
// duplicate (its transaction ID was recorded) and writes nothing, and in a
// quiet room no later event makes the other server fetch it
// (/get_missing_events), so the event must have been queued for the other
// server in its own commit. Once the client retries on the same server
// (the duplicate wakes the sender), once after a restart (the sender scans
// its queues at start). Each is checked before anything else is sent to
// the room, so it cannot arrive as a missing event of a later one.
func TestRoomEventToOtherServerSurvivesDeathAfterCommit(t *testing.T) {
	a, b, armed := startDyingAfterPersist(t)
	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
	roomID := createPublicRoom(t, a, alice)
	joinVia(t, b, bob, roomID, a.ServerName)
	waitJoined(t, a, alice, roomID, bob.UserID)
	send := func(s *hstest.Server, txn, body string) *hstest.Response {
		t.Helper()
		return s.Do(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", roomID, txn), alice.Token,
			map[string]any{"msgtype": "m.text", "body": body})
	}

	armed.Store(true)
	if r := send(a, "t1", "first"); r.Status == http.StatusOK {
		t.Fatalf("the failed write was acknowledged: %s", r.Body)
	}
	r := send(a, "t1", "first") // the retry: a duplicate
	if r.Status != http.StatusOK {
		t.Fatalf("retry: %d %s", r.Status, r.Body)
	}
	waitBody(t, b, bob, roomID, "first")

	armed.Store(true)
	if r := send(a, "t2", "second"); r.Status == http.StatusOK {
		t.Fatalf("the failed write was acknowledged: %s", r.Body)
	}
	a = a.Restart(t)
	waitBody(t, b, bob, roomID, "second")
	if r := send(a, "t2", "second"); r.Status != http.StatusOK {
		t.Fatalf("retry after the restart: %d %s", r.Status, r.Body)
	}
	// The retries wrote nothing: one event per message on b.
	bodies, _, _ := pageBack(t, b, bob, roomID, 50)
	n := map[string]int{}
	for _, x := range bodies {
		n[x]++
	}
	if n["first"] != 1 || n["second"] != 1 {
		t.Fatalf("bob's server has %v", bodies)
	}
}

// A local join to a room shared with another server, whose write committed
// and died before the federation sender was woken, reaches the other server
// when the client retries: the retry finds the user joined and changes
// nothing, but wakes the sender (else the join waited for its 30 s rescan).
func TestRetriedJoinWakesTheSender(t *testing.T) {
	a, b, armed := startDyingAfterPersist(t)
	alice, dave, bob := a.Register(t, "alice"), a.Register(t, "dave"), b.Register(t, "bob")
	roomID := createPublicRoom(t, a, alice)
	joinVia(t, b, bob, roomID, a.ServerName)
	waitJoined(t, a, alice, roomID, bob.UserID)

	armed.Store(true)
	join := func() *hstest.Response {
		return a.Do(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID), dave.Token, map[string]any{})
	}
	if r := join(); r.Status == http.StatusOK {
		t.Fatalf("the failed write was acknowledged: %s", r.Body)
	}
	if r := join(); r.Status != http.StatusOK {
		t.Fatalf("retry: %d %s", r.Status, r.Body)
	}
	waitJoined(t, b, bob, roomID, dave.UserID)
}

// diesAfterGraphWrite is diesAfterPersist for the writes of received events
// (PersistGraphEvent: a send_join's event).
type diesAfterGraphWrite struct {
	homeserver.Store
	armed *atomic.Bool
}

func (s diesAfterGraphWrite) PersistGraphEvent(ctx context.Context, w *store.GraphWrite) (int64, int64, error) {
	pos, group, err := s.Store.PersistGraphEvent(ctx, w)
	if err == nil && s.armed.CompareAndSwap(true, false) {
		return 0, 0, errors.New("fedtest: died after the commit")
	}
	return pos, group, err
}

// A join this server accepted through send_join and relays to the other
// servers in the room is not lost when it dies right after committing the
// join: the restarted server sends it (it was queued in the commit), though
// the joining server saw its send_join fail and nothing else happens in the
// room.
func TestRelayedJoinSurvivesDeathAfterCommit(t *testing.T) {
	var armed atomic.Bool
	hs := hstest.StartFederationWith(t, 3, nil, func(i int) homeserver.Options {
		if i != 0 {
			return homeserver.Options{}
		}
		return homeserver.Options{WrapStore: func(st homeserver.Store) homeserver.Store { return diesAfterGraphWrite{st, &armed} }}
	})
	a, b, c := hs[0], hs[1], hs[2]
	alice, bob, carol := a.Register(t, "alice"), b.Register(t, "bob"), c.Register(t, "carol")
	roomID := createPublicRoom(t, a, alice)
	joinVia(t, b, bob, roomID, a.ServerName)
	waitJoined(t, a, alice, roomID, bob.UserID)

	armed.Store(true)
	r := c.Do(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), carol.Token, map[string]any{})
	if r.Status == http.StatusOK {
		t.Fatalf("the join through a failed write was acknowledged: %s", r.Body)
	}
	if armed.Load() {
		t.Fatal("the send_join never reached the store")
	}
	a.Restart(t)
	waitJoined(t, b, bob, roomID, carol.UserID)
}

// The same death as a real SIGKILL, on PostgreSQL: another session holds
// fed_queue_pdus (the queues of PDUs per destination) locked — reading it
// goes on; writing it waits — so the process stops at its write of the
// message into bob's server's queue (after the event's commit in a server
// that queued it separately, inside that commit here) and is killed there.
// The client's retry on the restarted server must reach bob, once.
func TestRoomEventToOtherServerSurvivesSIGKILL(t *testing.T) {
	k := startKillable(t, true)
	b := k.b
	a := k.start()
	alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
	roomID := createPublicRoom(t, a, alice)
	joinVia(t, b, bob, roomID, a.ServerName)
	waitJoined(t, a, alice, roomID, bob.UserID)
	path := hstest.Path("/rooms/%s/send/m.room.message/%s", roomID, "t1")
	body := `{"msgtype":"m.text","body":"last words"}`

	k.killWhileQueueing(t, a, "fed_queue_pdus", path, alice.Token, body)

	a = k.start()
	a.MustOK(t, "PUT", path, alice.Token, body)
	waitBody(t, b, bob, roomID, "last words")
	bodies, _, _ := pageBack(t, b, bob, roomID, 50)
	if n := strings.Count(strings.Join(bodies, "\n"), "last words"); n != 1 {
		t.Fatalf("bob's server has %v", bodies)
	}
}
