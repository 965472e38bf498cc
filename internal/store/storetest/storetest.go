// Package storetest is the conformance suite for store.Store: one set of
// tests of the contract every backend must keep (atomicity, ErrNotFound and
// ErrConflict, stream position order, idempotency, claim-once keys…). Each
// backend runs it from its own test file:
//
//	storetest.Run(t, func(t *testing.T) store.Store { … a fresh, empty store … })
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"testing"

	"conclave/internal/store"
)

// Opener returns a fresh, empty store for one test; it registers its own cleanup.
type Opener func(t *testing.T) store.Store

// Run runs every conformance test, each on its own fresh store.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Users", testUsers},
		{"DevicesAndTokens", testDevicesAndTokens},
		{"RefreshTokens", testRefreshTokens},
		{"Deactivate", testDeactivate},
		{"Profiles", testProfiles},
		{"CreateRoomAtomic", testCreateRoomAtomic},
		{"PersistEvents", testPersistEvents},
		{"PersistEventsAtomic", testPersistEventsAtomic},
		{"PersistEventsFed", testPersistEventsFed},
		{"WritesOutliveTheirCaller", testWritesOutliveTheirCaller},
		{"GraphWriteFed", testGraphWriteFed},
		{"StateAfterEveryEvent", testStateAfterEveryEvent},
		{"GraphWrites", testGraphWrites},
		{"GraphStateChains", testGraphStateChains},
		{"GraphJoinedRoom", testGraphJoinedRoom},
		{"GraphBatch", testGraphBatch},
		{"Backfill", testBackfill},
		{"RemoteMemberships", testRemoteMemberships},
		{"RoomChanged", testRoomChanged},
		{"ConcurrentRoomWriters", testConcurrentRoomWriters},
		{"ManyRoomWritersIsolated", testManyRoomWritersIsolated},
		{"RoomEventsQuery", testRoomEventsQuery},
		{"SyncQueries", testSyncQueries},
		{"Memberships", testMemberships},
		{"Aliases", testAliases},
		{"RoomsRead", testRoomsRead},
		{"AccountData", testAccountData},
		{"Receipts", testReceipts},
		{"Filters", testFilters},
		{"Directory", testDirectory},
		{"UploadKeys", testUploadKeys},
		{"ClaimKeys", testClaimKeys},
		{"ClaimKeysConcurrent", testClaimKeysConcurrent},
		{"CrossSigning", testCrossSigning},
		{"DeviceListOutbound", testDeviceListOutbound},
		{"RemoteDeviceLists", testRemoteDeviceLists},
		{"DeviceListChanges", testDeviceListChanges},
		{"ToDevice", testToDevice},
		{"ToDeviceFedQueue", testToDeviceFedQueue},
		{"DeleteDeviceCleanup", testDeleteDeviceCleanup},
		{"DehydratedDevice", testDehydratedDevice},
		{"Backups", testBackups},
		{"Media", testMedia},
		{"RemoteMedia", testRemoteMedia},
		{"StreamOrder", testStreamOrder},
		{"ServerKeys", testServerKeys},
		{"FedQueue", testFedQueue},
		{"Notifications", testNotifications},
		{"CommonNotifications", testCommonNotifications},
		{"PruneNotifications", testPruneNotifications},
		{"PruneNotificationsThreads", testPruneNotificationsThreads},
		{"PushQueue", testPushQueue},
		{"FedQueueAtomic", testFedQueueAtomic},
		{"FedQueuePrune", testFedQueuePrune},
		{"FedQueueConcurrent", testFedQueueConcurrent},
		{"FedTxns", testFedTxns},
		{"ServerNotices", testServerNotices},
		{"SlidingSync", testSlidingSync},
		{"ThreadSubscriptions", testThreadSubscriptions},
		{"SlidingStamps", testSlidingStamps},
		{"Retention", testRetention},
		{"LatestEventPositions", testLatestEventPositions},
		{"ThreepidSessions", testThreepidSessions},
		{"Threepids", testThreepids},
		{"SSO", testSSO},
		{"AccountValidity", testAccountValidity},
		{"IdentityTokens", testIdentityTokens},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

func ctx() context.Context { return context.Background() }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want %v", err, want)
	}
}

func maxPos(t *testing.T, s store.Store) int64 {
	t.Helper()
	p, err := s.MaxStreamPos(ctx())
	must(t, err)
	return p
}

func sk(s string) *string { return &s }

// room helps build a linear room: each event cites the previous one.
type room struct {
	s     store.Store
	id    string
	head  []string
	depth int64
	n     int
	ts    int64
}

// newRoom creates a room whose creator joins it.
func newRoom(t *testing.T, s store.Store, id, creator string) *room {
	t.Helper()
	r := &room{s: s, id: id, ts: 1000}
	create := r.ev("m.room.create", sk(""), creator, `{"creator":"`+creator+`"}`)
	join := r.member(creator, "join")
	join.PrevEvents = []string{create.EventID}
	join.Depth = 2
	_, err := s.CreateRoom(ctx(), &store.Room{RoomID: id, Version: "10", Creator: creator, CreatedTS: 1}, []store.NewEvent{create, join})
	must(t, err)
	r.head = []string{join.EventID}
	r.depth = 2
	return r
}

// ev builds the next event (not persisted); it cites r.head.
func (r *room) ev(typ string, stateKey *string, sender, content string) store.NewEvent {
	r.n++
	r.ts++
	id := fmt.Sprintf("$%s-%d", r.id[1:], r.n)
	js := fmt.Sprintf(`{"type":%q,"sender":%q,"content":%s}`, typ, sender, content)
	return store.NewEvent{EventID: id, RoomID: r.id, Type: typ, StateKey: stateKey, Sender: sender, Depth: r.depth + 1,
		OriginServerTS: r.ts, JSON: []byte(js), PrevEvents: slices.Clone(r.head)}
}

func (r *room) member(user, membership string) store.NewEvent {
	e := r.ev("m.room.member", sk(user), user, `{"membership":"`+membership+`"}`)
	e.Membership = membership
	return e
}

// send persists events built by ev (in order) and advances the head.
func (r *room) send(t *testing.T, evs ...store.NewEvent) []int64 {
	t.Helper()
	for i := range evs {
		evs[i].Depth = r.depth + 1 + int64(i)
		if i > 0 {
			evs[i].PrevEvents = []string{evs[i-1].EventID}
		}
	}
	pos, err := r.s.PersistEvents(ctx(), r.id, evs)
	must(t, err)
	if len(pos) != len(evs) {
		t.Fatalf("PersistEvents returned %d positions for %d events", len(pos), len(evs))
	}
	r.head = []string{evs[len(evs)-1].EventID}
	r.depth += int64(len(evs))
	return pos
}

func (r *room) msg(t *testing.T, sender, body string) (string, int64) {
	t.Helper()
	e := r.ev("m.room.message", nil, sender, `{"msgtype":"m.text","body":`+jsonString(body)+`}`)
	pos := r.send(t, e)
	return e.EventID, pos[0]
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func eventIDs(evs []store.StoredEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.EventID
	}
	return out
}

func sorted(ss []string) []string {
	ss = slices.Clone(ss)
	sort.Strings(ss)
	return ss
}

func equal(t *testing.T, what string, got, want any) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	// An empty list may come back as nil or as an empty slice.
	if string(g) == "null" {
		g = []byte("[]")
	}
	if string(w) == "null" {
		w = []byte("[]")
	}
	if string(g) != string(w) {
		t.Fatalf("%s: got %s, want %s", what, g, w)
	}
}
