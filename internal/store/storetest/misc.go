package storetest

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"conclave/internal/store"
)

func testAccountData(t *testing.T, s store.Store) {
	_, err := s.GetAccountData(ctx(), "@a:x", "", "m.t")
	wantErr(t, err, store.ErrNotFound)
	p1, err := s.PutAccountData(ctx(), "@a:x", "", "m.t", json.RawMessage(`{"a":1}`))
	must(t, err)
	p2, err := s.PutAccountData(ctx(), "@a:x", "!r:x", "m.t", json.RawMessage(`{"b":2}`))
	must(t, err)
	p3, err := s.PutAccountData(ctx(), "@a:x", "", "m.t", json.RawMessage(`{"a":3}`))
	must(t, err)
	if !(p1 < p2 && p2 < p3) || maxPos(t, s) != p3 {
		t.Fatalf("positions %d %d %d, max %d", p1, p2, p3, maxPos(t, s))
	}
	c, err := s.GetAccountData(ctx(), "@a:x", "", "m.t")
	must(t, err)
	equal(t, "content", string(c), `{"a":3}`)
	c, _ = s.GetAccountData(ctx(), "@a:x", "!r:x", "m.t")
	equal(t, "room content", string(c), `{"b":2}`)
	_, err = s.GetAccountData(ctx(), "@b:x", "", "m.t")
	wantErr(t, err, store.ErrNotFound)
	items, err := s.AccountDataSince(ctx(), "@a:x", 0)
	must(t, err)
	if len(items) != 2 || items[0].RoomID != "!r:x" || items[1].Pos != p3 || string(items[1].Content) != `{"a":3}` {
		t.Fatalf("items %+v", items)
	}
	items, _ = s.AccountDataSince(ctx(), "@a:x", p2)
	equal(t, "since", len(items), 1)
	items, _ = s.AccountDataSince(ctx(), "@a:x", p3)
	equal(t, "nothing new", len(items), 0)

	// Compare-and-swap: only from the content read.
	tag := func(old, content string) (int64, bool) {
		var o json.RawMessage
		if old != "" {
			o = json.RawMessage(old)
		}
		pos, ok, err := s.SwapAccountData(ctx(), "@a:x", "!r:x", "m.tag", o, json.RawMessage(content))
		must(t, err)
		return pos, ok
	}
	if _, ok := tag(`{"tags":{}}`, `{"tags":{"x":{}}}`); ok {
		t.Fatal("swapped from content that is not stored")
	}
	p4, ok := tag("", `{"tags":{"a":{}}}`)
	if !ok || p4 <= p3 {
		t.Fatalf("first swap: %v at %d", ok, p4)
	}
	if _, ok := tag("", `{"tags":{"b":{}}}`); ok {
		t.Fatal("swapped as if absent, though present")
	}
	p5, ok := tag(`{"tags":{"a":{}}}`, `{"tags":{"a":{},"b":{}}}`)
	if !ok || p5 <= p4 {
		t.Fatalf("second swap: %v at %d", ok, p5)
	}
	c, _ = s.GetAccountData(ctx(), "@a:x", "!r:x", "m.tag")
	equal(t, "swapped content", string(c), `{"tags":{"a":{},"b":{}}}`)
	items, _ = s.AccountDataSince(ctx(), "@a:x", p3)
	if len(items) != 1 || items[0].Pos != p5 {
		t.Fatalf("since a swap: %+v", items)
	}
	// Concurrent swaps from one read: exactly one wins.
	var wins int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, ok, err := s.SwapAccountData(ctx(), "@a:x", "!r:x", "m.tag", json.RawMessage(`{"tags":{"a":{},"b":{}}}`), json.RawMessage(fmt.Sprintf(`{"tags":{"w%d":{}}}`, i)))
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	equal(t, "concurrent winners", wins, 1)
}

func testReceipts(t *testing.T, s store.Store) {
	_, err := s.GetReceipt(ctx(), "!r:x", "@a:x", "m.read", "")
	wantErr(t, err, store.ErrNotFound)
	p1, err := s.PutReceipt(ctx(), &store.Receipt{RoomID: "!r:x", UserID: "@a:x", Type: "m.read", EventID: "$1", TS: 10})
	must(t, err)
	p2, err := s.PutReceipt(ctx(), &store.Receipt{RoomID: "!r:x", UserID: "@a:x", Type: "m.read", ThreadID: "$root", EventID: "$2", TS: 11})
	must(t, err)
	p3, err := s.PutReceipt(ctx(), &store.Receipt{RoomID: "!r:x", UserID: "@a:x", Type: "m.read", EventID: "$3", TS: 12})
	must(t, err)
	_, err = s.PutReceipt(ctx(), &store.Receipt{RoomID: "!o:x", UserID: "@a:x", Type: "m.read.private", EventID: "$4", TS: 13})
	must(t, err)
	if !(p1 < p2 && p2 < p3) {
		t.Fatalf("positions %d %d %d", p1, p2, p3)
	}
	r, err := s.GetReceipt(ctx(), "!r:x", "@a:x", "m.read", "")
	must(t, err)
	if r.EventID != "$3" || r.TS != 12 || r.Pos != p3 {
		t.Fatalf("receipt %+v", r)
	}
	rs, err := s.ReceiptsSince(ctx(), []string{"!r:x"}, 0)
	must(t, err)
	if len(rs) != 2 || rs[0].ThreadID != "$root" || rs[1].EventID != "$3" {
		t.Fatalf("receipts %+v", rs)
	}
	rs, _ = s.ReceiptsSince(ctx(), []string{"!r:x", "!o:x"}, p2)
	equal(t, "since", len(rs), 2)
	rs, _ = s.ReceiptsSince(ctx(), nil, 0)
	equal(t, "no rooms", len(rs), 0)
}

func testFilters(t *testing.T, s store.Store) {
	id0, err := s.PutFilter(ctx(), "@a:x", json.RawMessage(`{"f":0}`))
	must(t, err)
	id1, _ := s.PutFilter(ctx(), "@a:x", json.RawMessage(`{"f":1}`))
	idb, _ := s.PutFilter(ctx(), "@b:x", json.RawMessage(`{"f":"b"}`))
	if id0 == id1 {
		t.Fatal("filter IDs repeat")
	}
	f, err := s.GetFilter(ctx(), "@a:x", id1)
	must(t, err)
	equal(t, "filter", string(f), `{"f":1}`)
	f, _ = s.GetFilter(ctx(), "@b:x", idb)
	equal(t, "b filter", string(f), `{"f":"b"}`)
	for _, bad := range []string{"999", "abc", "", "-1", "1e3"} {
		_, err := s.GetFilter(ctx(), "@a:x", bad)
		wantErr(t, err, store.ErrNotFound)
	}
	if idb == id0 {
		// IDs may be per user; another user's filter must still be private.
		f, _ := s.GetFilter(ctx(), "@b:x", id0)
		equal(t, "per user", string(f), `{"f":"b"}`)
	}
	// Concurrent uploads get distinct IDs.
	var wg sync.WaitGroup
	var mu sync.Mutex
	ids := map[string]bool{}
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id, err := s.PutFilter(ctx(), "@c:x", json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			ids[id] = true
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	if len(ids) != 8 {
		t.Fatalf("%d distinct IDs for 8 concurrent uploads", len(ids))
	}
}

func testDirectory(t *testing.T, s store.Store) {
	for _, u := range []string{"@alice:x", "@bob:x", "@carol:x", "@dave:x", "@erin:x"} {
		newUser(t, s, u)
	}
	must(t, s.SetDisplayName(ctx(), "@bob:x", "Bobby Tables"))
	must(t, s.SetDisplayName(ctx(), "@carol:x", "100%_real"))
	r := newRoom(t, s, "!priv:x", "@alice:x")
	r.send(t, r.member("@bob:x", "join"))
	// A second shared room must not list bob twice.
	r2 := newRoom(t, s, "!priv2:x", "@alice:x")
	r2.send(t, r2.member("@bob:x", "join"))
	pub := newRoom(t, s, "!pub:x", "@carol:x")
	must(t, s.SetRoomPublic(ctx(), "!pub:x", true))
	_ = pub
	search := func(who, term string) []string {
		t.Helper()
		es, err := s.SearchUserDirectory(ctx(), who, term, 10)
		must(t, err)
		var out []string
		for _, e := range es {
			out = append(out, e.UserID)
		}
		return out
	}
	equal(t, "alice sees others, not herself", search("@alice:x", ":x"), []string{"@bob:x", "@carol:x"})
	equal(t, "by display name, any case", search("@alice:x", "TABLES"), []string{"@bob:x"})
	equal(t, "dave sees public only", search("@dave:x", ""), []string{"@carol:x"})
	equal(t, "LIKE metacharacters are literal", search("@alice:x", "%_"), []string{"@carol:x"})
	equal(t, "no match", search("@alice:x", "zzz"), []string(nil))
	es, _ := s.SearchUserDirectory(ctx(), "@alice:x", "bob", 10)
	if len(es) != 1 || es[0].DisplayName != "Bobby Tables" {
		t.Fatalf("entry %+v", es)
	}
	es, _ = s.SearchUserDirectory(ctx(), "@alice:x", "", 2)
	equal(t, "limit", len(es), 2)
	must(t, s.Deactivate(ctx(), "@bob:x"))
	equal(t, "deactivated hidden", search("@alice:x", "bob"), []string(nil))

	// Users of other servers (no users row): their profile is their latest
	// join event's.
	remote := func(user, content string) store.NewEvent {
		e := r.ev("m.room.member", sk(user), user, content)
		e.Membership = "join"
		return e
	}
	r.send(t, remote("@zed:other", `{"membership":"join","displayname":"Old Name"}`))
	r.send(t, remote("@zed:other", `{"membership":"join","displayname":"Zorro Zed","avatar_url":"mxc://other/z"}`))
	r.send(t, remote("@yan:other", `{"membership":"join","displayname":17}`))
	es, err := s.SearchUserDirectory(ctx(), "@alice:x", "zorro", 10)
	must(t, err)
	if len(es) != 1 || es[0].UserID != "@zed:other" || es[0].DisplayName != "Zorro Zed" || es[0].AvatarURL != "mxc://other/z" {
		t.Fatalf("remote user by display name: %+v", es)
	}
	equal(t, "an old name is no name", search("@alice:x", "old name"), []string(nil))
	equal(t, "remote users by ID", search("@alice:x", ":other"), []string{"@yan:other", "@zed:other"})
	equal(t, "not shared with dave", search("@dave:x", "zorro"), []string(nil))
}

func testServerNotices(t *testing.T, s store.Store) {
	_, err := s.NoticeRoom(ctx(), "@a:x")
	wantErr(t, err, store.ErrNotFound)
	must(t, s.SetNoticeRoom(ctx(), "@a:x", "!one:x"))
	must(t, s.SetNoticeRoom(ctx(), "@b:x", "!two:x"))
	must(t, s.SetNoticeRoom(ctx(), "@a:x", "!three:x"))
	r, err := s.NoticeRoom(ctx(), "@a:x")
	must(t, err)
	equal(t, "replaced", r, "!three:x")
	r, _ = s.NoticeRoom(ctx(), "@b:x")
	equal(t, "other user", r, "!two:x")
}
