package presence

import (
	"context"
	"testing"
	"time"

	"conclave/internal/matrix"
)

func TestPresence(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := NewWithClock(func() time.Time { return now })
	var notified []string
	s.Notify = func(u string) { notified = append(notified, u) }
	start := s.Serial()

	if st := s.Get("@a:x"); st.Presence != Offline || st.LastActiveAgo != nil {
		t.Fatalf("unknown user: %+v", st)
	}
	msg := "lunch"
	if err := s.Set("@a:x", Online, &msg); err != nil {
		t.Fatal(err)
	}
	now = now.Add(30 * time.Second)
	st := s.Get("@a:x")
	if st.Presence != Online || st.StatusMsg != "lunch" || *st.LastActiveAgo != 30000 || !*st.CurrentlyActive {
		t.Fatalf("online: %+v", st)
	}
	now = now.Add(IdleAfter)
	if st = s.Get("@a:x"); st.Presence != Unavailable || *st.CurrentlyActive {
		t.Fatalf("idle: %+v", st)
	}
	// Activity brings an idle user back (a visible change: notified).
	s.Touch("@a:x")
	if st = s.Get("@a:x"); st.Presence != Online || len(notified) != 2 {
		t.Fatalf("touch: %+v %v", st, notified)
	}
	s.Touch("@a:x") // no visible change
	if len(notified) != 2 {
		t.Fatal("touch without change notified")
	}
	// A user who chose unavailable stays so when active.
	s.Set("@b:x", Unavailable, nil)
	s.Touch("@b:x")
	if s.Get("@b:x").Presence != Unavailable {
		t.Fatal("touch overrode unavailable")
	}

	evs, serial := s.Since([]string{"@b:x", "@a:x", "@a:x", "@c:x"}, start)
	if len(evs) != 2 || evs[0].Sender != "@a:x" || evs[1].Sender != "@b:x" || evs[0].Type != "m.presence" {
		t.Fatalf("since: %+v", evs)
	}
	if evs, _ := s.Since([]string{"@a:x", "@b:x"}, serial); len(evs) != 0 {
		t.Fatalf("nothing new: %+v", evs)
	}
	s.Set("@a:x", Offline, nil)
	if evs, _ := s.Since([]string{"@a:x", "@b:x"}, serial); len(evs) != 1 || evs[0].Content.Presence != Offline || evs[0].Content.StatusMsg != "lunch" {
		t.Fatalf("after offline: %+v", evs)
	}
	if evs, _ := s.Since([]string{"@a:x", "@b:x"}, s.Serial()+5); len(evs) != 2 {
		t.Fatalf("future serial: %+v", evs)
	}
}

func TestPresenceErrors(t *testing.T) {
	s := New()
	if me, ok := matrix.AsError(s.Set("@a:x", "busy", nil)); !ok || me.Code != matrix.ErrInvalidParam {
		t.Fatal("invalid state accepted")
	}
	long := string(make([]rune, MaxStatusMsgLen+1))
	if me, ok := matrix.AsError(s.Set("@a:x", Online, &long)); !ok || me.Code != matrix.ErrInvalidParam {
		t.Fatal("long status accepted")
	}
	if _, err := s.GetFor(context.Background(), "@a:x", "@b:x"); err == nil {
		t.Fatal("no Visible hook must refuse")
	}
	if _, err := s.GetFor(context.Background(), "@a:x", "@a:x"); err != nil {
		t.Fatal(err)
	}
}

// Another server's user's presence is recorded with its last activity and
// wakes syncs, but is not sent on (Sent is for this server's users' own
// changes: Set, and activity that changes the state).
func TestSetRemoteAndSent(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := NewWithClock(func() time.Time { return now })
	var notified, sent []string
	s.Notify = func(u string) { notified = append(notified, u) }
	s.Sent = func(u string) { sent = append(sent, u) }
	if err := s.SetRemote("@r:y", Online, "away from desk", now.Add(-2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	st := s.Get("@r:y")
	if st.Presence != Online || st.StatusMsg != "away from desk" || *st.LastActiveAgo != 120000 || *st.CurrentlyActive {
		t.Fatalf("remote: %+v", st)
	}
	if len(notified) != 1 || len(sent) != 0 {
		t.Fatalf("notified %v, sent %v", notified, sent)
	}
	if err := s.SetRemote("@r:y", "dancing", "", time.Time{}); err == nil {
		t.Fatal("an unknown presence state was taken")
	}
	if err := s.Set("@a:x", Unavailable, nil); err != nil {
		t.Fatal(err)
	}
	s.Touch("@b:x") // offline → online: a change
	s.Touch("@b:x") // none
	if len(sent) != 2 || sent[0] != "@a:x" || sent[1] != "@b:x" {
		t.Fatalf("sent %v", sent)
	}
}
