package threepid_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"conclave/internal/emaildomains"
	"conclave/internal/store"
	"conclave/internal/store/sqlite"
	"conclave/internal/threepid"
)

// fakeRemote stands for the other servers of the circle.
type fakeRemote struct {
	bound   map[string]string // address → user ID, on the server asked
	invited map[string]bool
	down    bool
	lookups atomic.Int32 // Lookup runs on one goroutine per server
}

func (f *fakeRemote) Info(_ context.Context, server, address string) (string, bool, error) {
	if f.down {
		return "", false, errors.New("down")
	}
	return f.bound[address], f.invited[address], nil
}

func (f *fakeRemote) Lookup(_ context.Context, server, pepper string, hashes []string) (map[string]string, error) {
	f.lookups.Add(1)
	out := map[string]string{}
	for addr, u := range f.bound {
		h := threepid.LookupHash(addr, "email", pepper)
		for _, want := range hashes {
			if want == h {
				out[h] = u
			}
		}
	}
	// A server answering for someone else's users is not believed.
	out["forged"] = "@mallory:a.example"
	return out, nil
}

func (f *fakeRemote) Invite(context.Context, string, store.ThreepidInvite) error { return nil }

func (f *fakeRemote) Bound(context.Context, string, string, string) error { return nil }

func service(t *testing.T, remote *fakeRemote) *threepid.Service {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	m, err := emaildomains.Parse(strings.NewReader("old.fr a.example\nmoved.fr b.example\n* ext.example\n"))
	if err != nil {
		t.Fatal(err)
	}
	return &threepid.Service{ServerName: "a.example", Store: db, Domains: m, Remote: remote}
}

// An address bound here whose domain the map now gives another server:
// hs is where the account is, new_hs where the map says.
func TestInfoNewHS(t *testing.T) {
	remote := &fakeRemote{bound: map[string]string{"x@moved.fr": ""}, invited: map[string]bool{"y@moved.fr": true}}
	s := service(t, remote)
	ctx := context.Background()
	if err := s.Bind(ctx, "@x-moved.fr:a.example", "x@moved.fr"); err != nil {
		t.Fatal(err)
	}
	got, err := s.Info(ctx, "email", "X@moved.fr")
	if err != nil || got != (threepid.InfoResult{HS: "a.example", NewHS: "b.example"}) {
		t.Fatalf("bound here, mapped there: %+v %v", got, err)
	}
	got, _ = s.Info(ctx, "email", "y@moved.fr")
	if got != (threepid.InfoResult{HS: "b.example", Invited: true}) {
		t.Fatalf("invited there: %+v", got)
	}
	// Bound on the mapped server under another name.
	remote.bound["z@moved.fr"] = "@z:c.example"
	got, _ = s.Info(ctx, "email", "z@moved.fr")
	if got != (threepid.InfoResult{HS: "c.example", NewHS: "b.example"}) {
		t.Fatalf("bound elsewhere: %+v", got)
	}
	// The mapped server down: the map's answer.
	remote.down = true
	got, err = s.Info(ctx, "email", "w@moved.fr")
	if err != nil || got != (threepid.InfoResult{HS: "b.example"}) {
		t.Fatalf("mapped server down: %+v %v", got, err)
	}
}

func TestLookupBelievesOnlyEachServersOwnUsers(t *testing.T) {
	remote := &fakeRemote{bound: map[string]string{"p@moved.fr": "@p:b.example", "q@moved.fr": "@q:a.example"}}
	s := service(t, remote)
	ctx := context.Background()
	h := func(a string) string { return threepid.LookupHash(a, "email", threepid.Pepper) }
	got, err := s.Lookup(ctx, "sha256", threepid.Pepper, []string{h("p@moved.fr"), h("q@moved.fr"), "forged"})
	if err != nil {
		t.Fatal(err)
	}
	// b.example answers for p (its user); its claims about a.example's
	// user and the forged hash are dropped.
	if len(got) != 1 || got[h("p@moved.fr")] != "@p:b.example" {
		t.Fatalf("lookup: %v", got)
	}
	if n := remote.lookups.Load(); n != 2 { // b.example and ext.example, not a.example itself
		t.Errorf("%d servers asked, want 2", n)
	}
	if _, err := s.Lookup(ctx, "none", threepid.Pepper, nil); err == nil {
		t.Error("algorithm none accepted")
	}
	many := make([]string, threepid.MaxLookup+1)
	if _, err := s.Lookup(ctx, "sha256", threepid.Pepper, many); err == nil {
		t.Error("too many addresses accepted")
	}
}
