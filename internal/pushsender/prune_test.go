package pushsender_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"conclave/internal/homeserver/hstest"
	"conclave/internal/pushsender"
)

// TestPruneOldNotifications: a month on, notifications read by everyone
// they concern are gone from GET /notifications and unread ones stay (with
// their counts); a year on, every one is gone.
func TestPruneOldNotifications(t *testing.T) {
	s := hstest.Start(t)
	v3 := "/_matrix/client/v3"
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	carol := s.CreateUser(t, "carol")
	roomID := s.MustOK(t, "POST", v3+"/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	for _, u := range []*hstest.User{bob, carol} {
		s.MustOK(t, "POST", hstest.Path("/join/%s", roomID), u.Token, map[string]any{})
	}
	var ids []string
	for i := range 3 {
		ids = append(ids, s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", roomID, fmt.Sprint("p", i)), alice.Token,
			map[string]any{"msgtype": "m.text", "body": fmt.Sprint("message ", i)}).Str("event_id"))
	}
	listed := func(u *hstest.User) int {
		t.Helper()
		var body struct {
			N []json.RawMessage `json:"notifications"`
		}
		json.Unmarshal(s.MustOK(t, "GET", v3+"/notifications", u.Token, nil).Body, &body)
		return len(body.N)
	}
	prune := func(after time.Duration) int64 {
		t.Helper()
		snd := pushsender.New(s.HS.Store, pushsender.Options{Now: func() time.Time { return time.Now().Add(after) }})
		n, err := snd.Prune(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	read := func(u *hstest.User, eventID string) {
		s.MustOK(t, "POST", hstest.Path("/rooms/%s/receipt/m.read/%s", roomID, eventID), u.Token, map[string]any{})
	}
	month, year := 31*24*time.Hour, 366*24*time.Hour

	read(bob, ids[1])
	if n := prune(time.Hour); n != 0 {
		t.Fatalf("pruned %d young notifications", n)
	}
	// Carol has read nothing: the messages' notifications stay for both.
	prune(month)
	if b, c := listed(bob), listed(carol); b != 3 || c != 3 {
		t.Fatalf("after bob read: bob %d, carol %d listed; want 3, 3", b, c)
	}
	read(carol, ids[1])
	if n := prune(month); n == 0 {
		t.Fatal("nothing pruned once everyone read")
	}
	if b, c := listed(bob), listed(carol); b != 1 || c != 1 {
		t.Fatalf("after both read: bob %d, carol %d listed; want 1, 1", b, c)
	}
	prune(year)
	if b, c := listed(bob), listed(carol); b != 0 || c != 0 {
		t.Fatalf("a year on: bob %d, carol %d listed", b, c)
	}
}
