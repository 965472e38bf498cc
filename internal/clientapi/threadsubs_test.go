package clientapi_test

import (
	"fmt"
	"net/url"
	"testing"

	"conclave/internal/homeserver/hstest"
)

// Thread subscriptions (MSC4306) and their sliding sync extension and
// paging endpoint (MSC4308), written from the MSCs and Synapse's behaviour.
func threadSubPath(roomID, eventID string) string {
	return fmt.Sprintf("/_matrix/client/unstable/io.element.msc4306/rooms/%s/thread/%s/subscription", url.PathEscape(roomID), url.PathEscape(eventID))
}

func threadReply(t *testing.T, s *hstest.Server, u *hstest.User, roomID, root, txn, body string) string {
	t.Helper()
	return s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", roomID, txn), u.Token, map[string]any{
		"msgtype": "m.text", "body": body, "m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}}).Str("event_id")
}

func TestThreadSubscriptions(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	room := createRoom(t, s, alice, map[string]any{"preset": "public_chat"})
	s.MustOK(t, "POST", hstest.Path("/join/%s", room), bob.Token, map[string]any{})
	root := send(t, s, bob, room, "r", "a thread")
	other := send(t, s, bob, room, "o", "not in the thread")
	reply := threadReply(t, s, bob, room, root, "t1", "@alice look")
	p := threadSubPath(room, root)

	if r := s.MustOK(t, "GET", "/_matrix/client/versions", "", nil); dig(r.JSON, "unstable_features", "org.matrix.msc4306") != true {
		t.Fatalf("versions: %s", r.Body)
	}
	expectErr(t, s.Do(t, "GET", p, alice.Token, nil), 404, "M_NOT_FOUND")
	// An automatic subscription names an event of the thread.
	expectErr(t, s.Do(t, "PUT", p, alice.Token, map[string]any{"automatic": other}), 400, "IO.ELEMENT.MSC4306.M_NOT_IN_THREAD")
	expectErr(t, s.Do(t, "PUT", p, alice.Token, map[string]any{"automatic": "$nope"}), 400, "IO.ELEMENT.MSC4306.M_NOT_IN_THREAD")
	expectErr(t, s.Do(t, "PUT", p, alice.Token, map[string]any{"automatic": true}), 400, "M_BAD_JSON")
	s.MustOK(t, "PUT", p, alice.Token, map[string]any{"automatic": reply})
	if r := s.MustOK(t, "GET", p, alice.Token, nil); r.JSON["automatic"] != true {
		t.Fatalf("automatic: %s", r.Body)
	}
	// Manual wins over automatic, and stays.
	s.MustOK(t, "PUT", p, alice.Token, map[string]any{})
	s.MustOK(t, "PUT", p, alice.Token, map[string]any{"automatic": reply})
	if r := s.MustOK(t, "GET", p, alice.Token, nil); r.JSON["automatic"] != false {
		t.Fatalf("manual: %s", r.Body)
	}
	// Unsubscribing twice is fine; afterwards an automatic subscription
	// caused by an event from before the unsubscription is refused, one
	// from after it is not.
	s.MustOK(t, "DELETE", p, alice.Token, nil)
	s.MustOK(t, "DELETE", p, alice.Token, nil)
	expectErr(t, s.Do(t, "GET", p, alice.Token, nil), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "PUT", p, alice.Token, map[string]any{"automatic": reply}), 409, "IO.ELEMENT.MSC4306.M_CONFLICTING_UNSUBSCRIPTION")
	expectErr(t, s.Do(t, "PUT", p, alice.Token, map[string]any{"automatic": root}), 409, "IO.ELEMENT.MSC4306.M_CONFLICTING_UNSUBSCRIPTION")
	later := threadReply(t, s, bob, room, root, "t2", "@alice again")
	s.MustOK(t, "PUT", p, alice.Token, map[string]any{"automatic": later})
	// Unknown threads, hidden ones and bad IDs.
	carol := s.CreateUser(t, "carol")
	expectErr(t, s.Do(t, "PUT", p, carol.Token, map[string]any{}), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "PUT", threadSubPath(room, "$unknown"), alice.Token, map[string]any{}), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "DELETE", threadSubPath(room, "$unknown"), alice.Token, nil), 404, "M_NOT_FOUND")
	expectErr(t, s.Do(t, "PUT", threadSubPath(room, "notanid"), alice.Token, map[string]any{}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "PUT", threadSubPath("notaroom", root), alice.Token, map[string]any{}), 400, "M_INVALID_PARAM")
	// The stable path is the same.
	if r := s.MustOK(t, "GET", fmt.Sprintf("/_matrix/client/v1/rooms/%s/thread/%s/subscription", url.PathEscape(room), url.PathEscape(root)), alice.Token, nil); r.JSON["automatic"] != true {
		t.Fatalf("stable GET: %s", r.Body)
	}
}

func threadSubsExt(r *hstest.Response, key string) map[string]any {
	m, _ := dig(r.JSON, "extensions", key).(map[string]any)
	return m
}

// TestSlidingSyncThreadSubscriptions: the extension reports the latest
// changes since the connection's position (all on a new connection), wakes
// a long-poll, answers under the name it was asked by, and leaves older
// changes beyond its limit to /thread_subscriptions through prev_batch.
func TestSlidingSyncThreadSubscriptions(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	room := createRoom(t, s, alice, map[string]any{"preset": "public_chat"})
	roots := make([]string, 4)
	for i := range roots {
		roots[i] = send(t, s, alice, room, fmt.Sprint("r", i), fmt.Sprint("thread ", i))
	}
	const unstable = "io.element.msc4308.thread_subscriptions"
	body := func(key string, limit int) map[string]any {
		return map[string]any{"extensions": map[string]any{key: map[string]any{"enabled": true, "limit": limit}}}
	}
	// Nothing yet: no extension answer.
	r0 := ssOK(t, s, alice, "", 0, body(unstable, 10))
	if threadSubsExt(r0, unstable) != nil {
		t.Fatalf("nothing to report: %s", r0.Body)
	}
	s.MustOK(t, "PUT", threadSubPath(room, roots[0]), alice.Token, map[string]any{})
	s.MustOK(t, "PUT", threadSubPath(room, roots[1]), alice.Token, map[string]any{})
	s.MustOK(t, "DELETE", threadSubPath(room, roots[1]), alice.Token, nil)
	r1 := ssOK(t, s, alice, r0.Str("pos"), 10000, body(unstable, 10))
	ext := threadSubsExt(r1, unstable)
	st0, _ := dig(ext, "subscribed", room, roots[0], "bump_stamp").(float64)
	st1, _ := dig(ext, "unsubscribed", room, roots[1], "bump_stamp").(float64)
	if ext == nil || dig(ext, "subscribed", room, roots[0], "automatic") != false || st0 == 0 || st1 <= st0 ||
		dig(ext, "subscribed", room, roots[1]) != nil || ext["prev_batch"] != nil {
		t.Fatalf("changes: %s", r1.Body)
	}
	// A long-poll is woken by a subscription and gets only it.
	done := make(chan *hstest.Response, 1)
	go func() { done <- ss(t, s, alice, r1.Str("pos"), 20000, body(unstable, 10)) }()
	waitFor(t, func() bool { return s.HS.Notifier.Waiting() > 0 })
	s.MustOK(t, "PUT", threadSubPath(room, roots[2]), alice.Token, map[string]any{})
	r2 := <-done
	ext = threadSubsExt(r2, unstable)
	if r2.Status != 200 || ext == nil || dig(ext, "subscribed", room, roots[2]) == nil || dig(ext, "subscribed", room, roots[0]) != nil || dig(ext, "unsubscribed") != nil {
		t.Fatalf("woken: %s", r2.Body)
	}
	// Three changes, a limit of 1: the latest, and prev_batch for the rest,
	// paged back with /thread_subscriptions down to the request's pos.
	for _, i := range []int{0, 2, 3} {
		s.MustOK(t, "DELETE", threadSubPath(room, roots[i]), alice.Token, nil)
	}
	s.MustOK(t, "PUT", threadSubPath(room, roots[3]), alice.Token, map[string]any{"automatic": roots[3]})
	r3 := ssOK(t, s, alice, r2.Str("pos"), 0, body("thread_subscriptions", 1))
	ext = threadSubsExt(r3, "thread_subscriptions")
	prev, _ := ext["prev_batch"].(string)
	if ext == nil || dig(ext, "subscribed", room, roots[3], "automatic") != true || prev == "" || threadSubsExt(r3, unstable) != nil {
		t.Fatalf("limited: %s", r3.Body)
	}
	seen := map[string]bool{}
	from := prev
	for page := 0; from != ""; page++ {
		if page > 5 {
			t.Fatal("paging does not end")
		}
		q := url.Values{"dir": {"b"}, "from": {from}, "to": {r2.Str("pos")}, "limit": {"1"}}
		pg := s.MustOK(t, "GET", "/_matrix/client/unstable/io.element.msc4308/thread_subscriptions?"+q.Encode(), alice.Token, nil)
		uns, _ := pg.JSON["unsubscribed"].(map[string]any)
		for id := range dig(uns, room).(map[string]any) {
			seen[id] = true
		}
		from = pg.Str("end")
	}
	// The three unsubscriptions (roots 0 and 2; root 3's is superseded by
	// its later subscription, which came with the response).
	if len(seen) != 2 || !seen[roots[0]] || !seen[roots[2]] {
		t.Fatalf("paged back %v", seen)
	}
	// The endpoint without from: everything, latest first in pages.
	all := s.MustOK(t, "GET", "/_matrix/client/v1/thread_subscriptions?dir=b", alice.Token, nil)
	if dig(all.JSON, "subscribed", room, roots[3]) == nil || dig(all.JSON, "unsubscribed", room, roots[1]) == nil || all.JSON["end"] != nil {
		t.Fatalf("all: %s", all.Body)
	}
	expectErr(t, s.Do(t, "GET", "/_matrix/client/v1/thread_subscriptions", alice.Token, nil), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "GET", "/_matrix/client/v1/thread_subscriptions?dir=b&limit=0", alice.Token, nil), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "GET", "/_matrix/client/v1/thread_subscriptions?dir=b&from=x", alice.Token, nil), 400, "M_INVALID_PARAM")
	expectErr(t, ss(t, s, alice, "", 0, body(unstable, 0)), 400, "M_INVALID_PARAM")
}
