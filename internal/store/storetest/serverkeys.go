package storetest

import (
	"errors"
	"testing"

	"conclave/internal/store"
)

func testServerKeys(t *testing.T, s store.Store) {
	if keys, err := s.ServerKeys(ctx(), "hs2"); err != nil || keys == nil || len(keys) != 0 {
		t.Fatalf("no keys: %v %v", keys, err)
	}
	_, err := s.ServerKeyResponse(ctx(), "hs2")
	wantErr(t, err, store.ErrNotFound)

	a := store.ServerKey{ServerName: "hs2", KeyID: "ed25519:a", PublicKey: "AAA", ValidUntilTS: 500, FetchedTS: 100}
	b := store.ServerKey{ServerName: "hs2", KeyID: "ed25519:B", PublicKey: "BBB", ExpiredTS: 90, FetchedTS: 100}
	resp := &store.ServerKeyResponse{ServerName: "hs2", ValidUntilTS: 900, FetchedTS: 100, JSON: []byte(`{"server_name":"hs2"}`)}
	must(t, s.StoreServerKeys(ctx(), "hs2", []store.ServerKey{a, b}, resp))
	must(t, s.StoreServerKeys(ctx(), "hs3", []store.ServerKey{{ServerName: "hs3", KeyID: "ed25519:a", PublicKey: "CCC", ValidUntilTS: 1, FetchedTS: 1}}, nil))
	equal(t, "keys", mustKeys(t, s, "hs2"), []store.ServerKey{b, a}) // "ed25519:B" < "ed25519:a" by code point
	got, err := s.ServerKeyResponse(ctx(), "hs2")
	must(t, err)
	if got.ValidUntilTS != 900 || got.FetchedTS != 100 || string(got.JSON) != string(resp.JSON) || got.ServerName != "hs2" {
		t.Fatalf("response %+v", got)
	}
	if _, err := s.ServerKeyResponse(ctx(), "hs3"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("hs3 stored without a response: %v", err)
	}

	// A later fetch replaces what it lists and keeps the rest; an older
	// fetch that commits afterwards changes nothing.
	a2 := a
	a2.ValidUntilTS, a2.ExpiredTS, a2.FetchedTS = 0, 700, 200
	resp2 := &store.ServerKeyResponse{ServerName: "hs2", ValidUntilTS: 1000, FetchedTS: 200, JSON: []byte(`{"v":2}`)}
	must(t, s.StoreServerKeys(ctx(), "hs2", []store.ServerKey{a2}, resp2))
	stale := a
	stale.FetchedTS = 150
	must(t, s.StoreServerKeys(ctx(), "hs2", []store.ServerKey{stale}, &store.ServerKeyResponse{ServerName: "hs2", ValidUntilTS: 5, FetchedTS: 150, JSON: []byte(`{"v":1}`)}))
	equal(t, "keys after refetch", mustKeys(t, s, "hs2"), []store.ServerKey{b, a2})
	got, _ = s.ServerKeyResponse(ctx(), "hs2")
	if string(got.JSON) != `{"v":2}` || got.ValidUntilTS != 1000 {
		t.Fatalf("response after a stale store %+v", got)
	}
	equal(t, "other server", len(mustKeys(t, s, "hs3")), 1)
}

func mustKeys(t *testing.T, s store.Store, server string) []store.ServerKey {
	t.Helper()
	keys, err := s.ServerKeys(ctx(), server)
	must(t, err)
	return keys
}
