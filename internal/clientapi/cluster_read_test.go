package clientapi_test

import (
	"context"
	"net/http"
	"os"
	"testing"

	"conclave/internal/config"
	"conclave/internal/homeserver"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/store/storetest/pgtest"
)

// Two servers on one PostgreSQL database. A topic change acknowledged
// through A is what B serves right after, even while B's copy of the room's
// state has not heard of it yet: B's stream notification of the change is
// held, and the read through B must wait for it (room.Service.Fresh)
// instead of serving the old topic.
func TestReadsSeeWritesAcknowledgedByAnotherProcess(t *testing.T) {
	if os.Getenv(hstest.EnvDatabase) != "postgres" {
		t.Skipf("needs %s=postgres (the PostgreSQL pass of make test)", hstest.EnvDatabase)
	}
	dsn := pgtest.NewDatabase(t)
	shared := func(c *config.Config) { c.Database = dsn }
	a := hstest.Start(t, shared)
	g := hstest.NewGates()
	b := hstest.StartWith(t, homeserver.Options{WrapStore: g.WrapShared}, shared)
	alice := a.Register(t, "alice")
	roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	topic := hstest.Path("/rooms/%s/state/m.room.topic/", roomID)
	a.MustOK(t, "PUT", topic, alice.Token, map[string]any{"topic": "one"})
	if got := b.MustOK(t, "GET", topic, alice.Token, nil).Str("topic"); got != "one" {
		t.Fatalf("B serves topic %q", got) // (B's state of the room is now loaded)
	}

	// B has heard everything so far: the next notification it receives is
	// the one of the change below.
	pos, err := b.HS.Store.MaxStreamPos(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b.HS.Changes.WaitHeard(pos)
	gate := g.Arm(t, hstest.OpStreamNotification)
	a.MustOK(t, "PUT", topic, alice.Token, map[string]any{"topic": "two"})
	gate.WaitCommitted(t) // B has received the change's notification and holds it
	reading := g.Reading(hstest.OpMaxStreamPos)
	done := make(chan *hstest.Response, 1)
	go func() { done <- b.Do(t, "GET", topic, alice.Token, nil) }()
	var r *hstest.Response
	select {
	case r = <-done:
	case <-reading: // B looks how far the database is, and waits to hear it
		gate.Release()
		r = <-done
	}
	if r.Status != http.StatusOK || r.Str("topic") != "two" {
		t.Fatalf("B served %d %s after A acknowledged topic two", r.Status, r.Body)
	}
}
