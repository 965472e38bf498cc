package profile

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"conclave/internal/accountdata"
	"conclave/internal/matrix"
	"conclave/internal/store"
	"conclave/internal/store/sqlite"
)

func openDB(t *testing.T) *sqlite.DB {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// The hooks the lead wires are called with the right values, and not on failure.
func TestHooks(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	db.CreateUser(ctx, &store.User{UserID: "@a:hs", CreatedTS: 1})
	s := New(db, "hs")
	var got []store.Profile
	s.OnChange = func(_ context.Context, userID string, p store.Profile) {
		if userID != p.UserID {
			t.Errorf("user %s, profile %+v", userID, p)
		}
		got = append(got, p)
	}
	if err := s.SetDisplayName(ctx, "@a:hs", "@a:hs", "A"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetAvatarURL(ctx, "@a:hs", "@a:hs", "mxc://hs/x"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetDisplayName(ctx, "@b:hs", "@a:hs", "B"); err == nil {
		t.Fatal("other user allowed")
	}
	if len(got) != 2 || got[1] != (store.Profile{UserID: "@a:hs", DisplayName: "A", AvatarURL: "mxc://hs/x"}) {
		t.Fatalf("OnChange: %+v", got)
	}
	// Search: big limits are capped; the searcher never finds themselves.
	if r, err := s.Search(ctx, "@a:hs", "", 1000); err != nil || len(r.Results) != 0 || r.Limited {
		t.Fatalf("search: %+v %v", r, err)
	}

	ad := accountdata.New(db)
	var woke []string
	ad.Notify = func(u ...string) { woke = append(woke, u...) }
	if err := ad.Put(ctx, "@a:hs", "@a:hs", "", "m.x", json.RawMessage(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := ad.Put(ctx, "@a:hs", "@a:hs", "", "m.push_rules", json.RawMessage(`{}`)); err == nil {
		t.Fatal("m.push_rules accepted")
	}
	big := json.RawMessage(`{"a":"` + string(make([]byte, accountdata.MaxContentBytes)) + `"}`)
	if me, ok := matrix.AsError(ad.PutInternal(ctx, "@a:hs", "", "m.x", big)); !ok || me.Code != matrix.ErrTooLarge {
		t.Fatal("oversized internal put accepted")
	}
	if len(woke) != 1 || woke[0] != "@a:hs" {
		t.Fatalf("Notify: %v", woke)
	}
	items, err := ad.Since(ctx, "@a:hs", 0)
	if err != nil || len(items) != 1 || items[0].Type != "m.x" {
		t.Fatalf("since: %+v %v", items, err)
	}
}
