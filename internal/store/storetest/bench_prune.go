package storetest

import (
	"fmt"
	"testing"

	"conclave/internal/store"
)

// benchPruneBacklog measures one pruning pass (PruneNotifications, as the
// push sender runs it hourly) over a backlog it cannot prune: a room of
// members local users, events old notifications each notifying everyone
// (one common row per event), read by every member but one, who never
// reads. Every pass finds nothing to delete; what it costs is the price of
// keeping such a backlog, paid every hour, and on SQLite with the writer
// held.
func benchPruneBacklog(b *testing.B, open BenchOpener, members, events int) {
	s := open(b)
	r := benchRoom(b, s, "!prune:x")
	users := make([]string, members)
	joins := make([]store.NewEvent, 0, members)
	for i := range users {
		users[i] = fmt.Sprintf("@m%04d:x", i)
		if err := s.CreateUser(ctx(), &store.User{UserID: users[i], CreatedTS: 1}); err != nil {
			b.Fatal(err)
		}
		joins = append(joins, r.member(users[i], "join"))
	}
	benchSend(b, r, joins)
	notify := []byte(`["notify"]`)
	const batch = 500
	var last string
	for sent := 0; sent < events; sent += batch {
		evs := make([]store.NewEvent, 0, batch)
		for range min(batch, events-sent) {
			e := r.ev("m.room.message", nil, "@a:x", `{"msgtype":"m.text","body":"old news"}`)
			e.PushCommon = &store.PushAction{ThreadID: "main", Actions: notify}
			evs = append(evs, e)
		}
		benchSend(b, r, evs)
		last = evs[len(evs)-1].EventID
	}
	// Everyone read everything, but the last member, who never reads.
	for _, u := range users[:members-1] {
		if _, err := s.PutReceipt(ctx(), &store.Receipt{RoomID: r.id, UserID: u, Type: "m.read", EventID: last, TS: 1}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		n, err := s.PruneNotifications(ctx(), 1<<50, 0, 1000)
		if err != nil {
			b.Fatal(err)
		}
		if n != 0 {
			b.Fatalf("pruned %d unread notifications", n)
		}
	}
	b.ReportMetric(float64(events*b.N)/b.Elapsed().Seconds(), "rows/s")
}

// benchSend appends evs to r in one PersistEvents call.
func benchSend(b *testing.B, r *room, evs []store.NewEvent) {
	b.Helper()
	for i := range evs {
		evs[i].Depth = r.depth + 1 + int64(i)
		evs[i].PrevEvents = []string{r.head[0]}
		if i > 0 {
			evs[i].PrevEvents = []string{evs[i-1].EventID}
		}
	}
	if _, err := r.s.PersistEvents(ctx(), r.id, evs); err != nil {
		b.Fatal(err)
	}
	r.head = []string{evs[len(evs)-1].EventID}
	r.depth += int64(len(evs))
}
