package keyring_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"conclave/internal/event"
	"conclave/internal/keyring"
	"conclave/internal/store"
	"conclave/internal/store/sqlite"
)

// remote is a fake homeserver over HTTPS that serves only
// /_matrix/key/v2/server, counting the requests.
type remote struct {
	name string
	key  *event.SigningKey
	srv  *httptest.Server
	hits atomic.Int64

	mu sync.Mutex
	// respond builds the body; nil: the server's own correctly signed keys
	// valid until validUntil, with old as old_verify_keys.
	respond    func() []byte
	status     int
	validUntil time.Time
	old        map[string]any
}

func newRemote(t *testing.T, name string, clk *clock) *remote {
	key, err := event.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	r := &remote{name: name, key: key, status: 200, validUntil: clk.now().Add(24 * time.Hour), old: map[string]any{}}
	r.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/_matrix/key/v2/server" {
			http.NotFound(w, req)
			return
		}
		r.hits.Add(1)
		r.mu.Lock()
		status, respond := r.status, r.respond
		r.mu.Unlock()
		if status != 200 {
			w.WriteHeader(status)
			return
		}
		var body []byte
		if respond != nil {
			body = respond()
		} else {
			body = r.signedKeys(r.name, map[string]*event.SigningKey{r.key.ID: r.key}, r.key)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// signedKeys is a key response naming serverName, publishing keys, signed
// by signer (nil: unsigned).
func (r *remote) signedKeys(serverName string, keys map[string]*event.SigningKey, signer *event.SigningKey) []byte {
	r.mu.Lock()
	vk := map[string]any{}
	for id, k := range keys {
		vk[id] = map[string]string{"key": k.PublicKeyBase64()}
	}
	b, _ := json.Marshal(map[string]any{"server_name": serverName, "valid_until_ts": r.validUntil.UnixMilli(), "verify_keys": vk, "old_verify_keys": r.old})
	r.mu.Unlock()
	if signer == nil {
		return b
	}
	signed, err := event.SignJSON(b, serverName, signer)
	if err != nil {
		panic(err)
	}
	return signed
}

func (r *remote) set(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f()
}

// fetcher gets /_matrix/key/v2/server over HTTPS from the remotes by name.
type fetcher struct {
	c       *http.Client
	remotes map[string]*remote
}

func (f *fetcher) ServerKeys(ctx context.Context, server string) ([]byte, error) {
	r, ok := f.remotes[server]
	if !ok {
		return nil, fmt.Errorf("no route to %s", server)
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", r.srv.URL+"/_matrix/key/v2/server", nil)
	res, err := f.c.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		return nil, fmt.Errorf("status %d", res.StatusCode)
	}
	return io.ReadAll(io.LimitReader(res.Body, keyring.MaxKeyResponse+1))
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	clk     *clock
	db      store.Store
	own     *event.SigningKey
	fetch   *fetcher
	remotes map[string]*remote
}

func newEnv(t *testing.T, names ...string) *env {
	clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	db, err := sqlite.Open(context.Background(), t.TempDir()+"/conclave.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	own, _ := event.GenerateSigningKey()
	e := &env{clk: clk, db: db, own: own, remotes: map[string]*remote{}}
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	t.Cleanup(tr.CloseIdleConnections)
	e.fetch = &fetcher{c: &http.Client{Transport: tr, Timeout: 10 * time.Second}, remotes: e.remotes}
	for _, n := range names {
		e.remotes[n] = newRemote(t, n, clk)
	}
	return e
}

func (e *env) keyring(t *testing.T, mod ...func(*keyring.Config)) *keyring.Keyring {
	cfg := keyring.Config{ServerName: "hs1", Key: e.own, Store: e.db, Fetcher: e.fetch, Now: e.clk.now}
	for _, m := range mod {
		m(&cfg)
	}
	k, err := keyring.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var ctx = context.Background()

func TestFetchedOnceThenMemoryThenStore(t *testing.T) {
	e := newEnv(t, "hs2")
	r := e.remotes["hs2"]
	k := e.keyring(t)
	now := e.clk.now().UnixMilli()
	pub, err := k.VerifyKey(ctx, "hs2", r.key.ID, now)
	if err != nil || !pub.Equal(r.key.PublicKey()) {
		t.Fatalf("%v %v", pub, err)
	}
	for range 10 {
		if _, err := k.VerifyKey(ctx, "hs2", r.key.ID, now); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.hits.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
	// Another process (a new keyring on the same store) finds it stored.
	if _, err := e.keyring(t).VerifyKey(ctx, "hs2", r.key.ID, now); err != nil {
		t.Fatal(err)
	}
	if n := r.hits.Load(); n != 1 {
		t.Fatalf("%d fetches after a restart, want 1", n)
	}
	stored, _ := e.db.ServerKeys(ctx, "hs2")
	if len(stored) != 1 || stored[0].ValidUntilTS != r.validUntil.UnixMilli() || stored[0].FetchedTS != now {
		t.Fatalf("stored %+v", stored)
	}
	resp, err := e.db.ServerKeyResponse(ctx, "hs2")
	if err != nil || event.VerifyJSON(resp.JSON, "hs2", r.key.ID, r.key.PublicKey()) != nil {
		t.Fatalf("stored response %v", err)
	}
}

// The remote's valid_until_ts counts for at most 7 days after the fetch; an
// expired key is fetched again (at most once a minute).
func TestValidUntilCappedAndExpiredKeyRefetched(t *testing.T) {
	e := newEnv(t, "hs2")
	r := e.remotes["hs2"]
	r.set(func() { r.validUntil = e.clk.now().Add(365 * 24 * time.Hour) })
	k := e.keyring(t)
	t0 := e.clk.now()
	if _, err := k.VerifyKey(ctx, "hs2", r.key.ID, t0.UnixMilli()); err != nil {
		t.Fatal(err)
	}
	stored, _ := e.db.ServerKeys(ctx, "hs2")
	if want := t0.Add(keyring.KeyValidityCap).UnixMilli(); stored[0].ValidUntilTS != want {
		t.Fatalf("valid_until_ts stored %d, want %d (7 days)", stored[0].ValidUntilTS, want)
	}
	// An event dated within the 7 days verifies without a fetch; beyond it,
	// the key is fetched again.
	if _, err := k.VerifyKey(ctx, "hs2", r.key.ID, t0.Add(6*24*time.Hour).UnixMilli()); err != nil || r.hits.Load() != 1 {
		t.Fatalf("within 7 days: %v, %d fetches", err, r.hits.Load())
	}
	late := t0.Add(8 * 24 * time.Hour).UnixMilli()
	if _, err := k.VerifyKey(ctx, "hs2", r.key.ID, late); !errors.Is(err, keyring.ErrNoKey) || r.hits.Load() != 1 {
		t.Fatalf("8 days ahead within the refetch minute: %v, %d fetches", err, r.hits.Load())
	}
	// A week later, a request signed now needs the key valid now: expired,
	// so it is fetched again and valid for another 7 days.
	e.clk.add(8 * 24 * time.Hour)
	if _, err := k.VerifyKey(ctx, "hs2", r.key.ID, e.clk.now().UnixMilli()); err != nil || r.hits.Load() != 2 {
		t.Fatalf("after expiry: %v, %d fetches", err, r.hits.Load())
	}
	// Room versions 1–4 ignore valid_until_ts: time 0 takes any key.
	if _, err := k.VerifyKey(ctx, "hs2", r.key.ID, 0); err != nil || r.hits.Load() != 2 {
		t.Fatalf("any time: %v", err)
	}
}

func TestOldVerifyKeysValidUntilExpired(t *testing.T) {
	e := newEnv(t, "hs2")
	r := e.remotes["hs2"]
	oldKey, _ := event.GenerateSigningKey()
	expired := e.clk.now().Add(-time.Hour).UnixMilli()
	r.set(func() {
		r.old = map[string]any{oldKey.ID: map[string]any{"key": oldKey.PublicKeyBase64(), "expired_ts": expired}}
	})
	k := e.keyring(t)
	if pub, err := k.VerifyKey(ctx, "hs2", oldKey.ID, expired-1000); err != nil || !pub.Equal(oldKey.PublicKey()) {
		t.Fatalf("old key before expiry: %v", err)
	}
	if _, err := k.VerifyKey(ctx, "hs2", oldKey.ID, expired); err != nil {
		t.Fatalf("old key at expired_ts: %v", err)
	}
	// After expired_ts it is not valid (a request signed now with it fails).
	if _, err := k.VerifyKey(ctx, "hs2", oldKey.ID, e.clk.now().UnixMilli()); !errors.Is(err, keyring.ErrNoKey) {
		t.Fatalf("old key now: %v", err)
	}
	if n := r.hits.Load(); n != 1 {
		t.Fatalf("%d fetches", n)
	}
}

func TestHostileKeyResponsesRefused(t *testing.T) {
	e := newEnv(t, "hs2")
	r := e.remotes["hs2"]
	other, _ := event.GenerateSigningKey()
	second, _ := event.GenerateSigningKey()
	cases := map[string]func() []byte{
		// Signed under both names, so only server_name tells.
		"another server's name": func() []byte {
			b, _ := event.SignJSON(r.signedKeys("hs3", map[string]*event.SigningKey{r.key.ID: r.key}, r.key), "hs2", r.key)
			return b
		},
		"unsigned": func() []byte { return r.signedKeys("hs2", map[string]*event.SigningKey{r.key.ID: r.key}, nil) },
		"signed by a key it does not publish": func() []byte {
			return r.signedKeys("hs2", map[string]*event.SigningKey{r.key.ID: r.key}, &event.SigningKey{ID: r.key.ID, Private: other.Private})
		},
		"one published key did not sign": func() []byte {
			return r.signedKeys("hs2", map[string]*event.SigningKey{r.key.ID: r.key, "ed25519:second": second}, r.key)
		},
		"not JSON": func() []byte { return []byte("<html>") },
		"no valid_until_ts": func() []byte {
			b, _ := event.SignJSON([]byte(`{"server_name":"hs2","verify_keys":{"`+r.key.ID+`":{"key":"`+r.key.PublicKeyBase64()+`"}}}`), "hs2", r.key)
			return b
		},
		"bad key": func() []byte {
			b, _ := event.SignJSON([]byte(`{"server_name":"hs2","valid_until_ts":1,"verify_keys":{"ed25519:x":{"key":"AAAA"}}}`), "hs2", r.key)
			return b
		},
	}
	for name, respond := range cases {
		t.Run(name, func(t *testing.T) {
			r.set(func() { r.respond = respond })
			k := e.keyring(t)
			before := r.hits.Load()
			_, err := k.VerifyKey(ctx, "hs2", r.key.ID, e.clk.now().UnixMilli())
			if !errors.Is(err, keyring.ErrNoKey) || r.hits.Load() != before+1 {
				t.Fatalf("%v after %d fetches", err, r.hits.Load()-before)
			}
			if keys, _ := e.db.ServerKeys(ctx, "hs2"); len(keys) != 0 {
				t.Fatalf("stored %+v", keys)
			}
			if _, err := e.db.ServerKeyResponse(ctx, "hs2"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("response stored: %v", err)
			}
		})
	}
}

// A flood of requests naming unknown keys makes at most one fetch per
// server per minute, whatever the concurrency; failures back off.
func TestFloodOfUnknownKeysFetchesOncePerMinute(t *testing.T) {
	e := newEnv(t, "hs2")
	r := e.remotes["hs2"]
	k := e.keyring(t)
	flood := func(n int) {
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := k.VerifyKey(ctx, "hs2", fmt.Sprintf("ed25519:bogus%d", i), e.clk.now().UnixMilli()); !errors.Is(err, keyring.ErrNoKey) {
					t.Errorf("bogus key: %v", err)
				}
			}()
		}
		wg.Wait()
	}
	flood(200)
	if n := r.hits.Load(); n != 1 {
		t.Fatalf("%d fetches for 200 concurrent unknown keys, want 1", n)
	}
	e.clk.add(59 * time.Second)
	flood(50)
	if n := r.hits.Load(); n != 1 {
		t.Fatalf("%d fetches within the minute", n)
	}
	// The real key, fetched with the first, is still known meanwhile.
	if _, err := k.VerifyKey(ctx, "hs2", r.key.ID, e.clk.now().UnixMilli()); err != nil {
		t.Fatal(err)
	}
	e.clk.add(time.Second)
	flood(50)
	if n := r.hits.Load(); n != 2 {
		t.Fatalf("%d fetches after a minute, want 2", n)
	}

	// Failures: one minute, then two, then four…
	r.set(func() { r.status = 500 })
	e.clk.add(time.Minute)
	flood(10)
	if n := r.hits.Load(); n != 3 {
		t.Fatalf("%d fetches", n)
	}
	e.clk.add(time.Minute)
	flood(10)
	if n := r.hits.Load(); n != 4 {
		t.Fatalf("%d fetches one minute after the first failure, want 4", n)
	}
	e.clk.add(time.Minute)
	flood(10)
	if n := r.hits.Load(); n != 4 {
		t.Fatalf("%d fetches one minute after the second failure (back-off 2 minutes), want 4", n)
	}
	e.clk.add(time.Minute)
	flood(10)
	if n := r.hits.Load(); n != 5 {
		t.Fatalf("%d fetches two minutes after the second failure, want 5", n)
	}
}

func TestNotAllowedServerNeverContacted(t *testing.T) {
	e := newEnv(t, "hs2", "hs3")
	k := e.keyring(t, func(c *keyring.Config) { c.Allowed = func(s string) bool { return s == "hs3" } })
	r2, r3 := e.remotes["hs2"], e.remotes["hs3"]
	if _, err := k.VerifyKey(ctx, "hs2", r2.key.ID, 0); !errors.Is(err, keyring.ErrNotAllowed) {
		t.Fatal(err)
	}
	if _, err := k.NotaryResponse(ctx, "hs2", 0); !errors.Is(err, keyring.ErrNotAllowed) {
		t.Fatal(err)
	}
	if _, err := k.VerifyKey(ctx, "hs3", r3.key.ID, 0); err != nil {
		t.Fatal(err)
	}
	if !k.Allowed("hs1") || k.Allowed("hs2") {
		t.Fatal("Allowed")
	}
	if r2.hits.Load() != 0 || r3.hits.Load() != 1 {
		t.Fatalf("fetches hs2 %d hs3 %d", r2.hits.Load(), r3.hits.Load())
	}
}

func buildEvent(t *testing.T, rv string, sender string, content string, ts int64, server string, key *event.SigningKey) *event.PDU {
	t.Helper()
	v, _ := event.GetRoomVersion(rv)
	sk := sender
	p := &event.Proto{Type: "m.room.member", StateKey: &sk, Sender: sender, RoomID: "!r:hs1", Content: json.RawMessage(content),
		PrevEvents: []string{"$p"}, AuthEvents: []string{"$a"}, Depth: 3, OriginServerTS: ts}
	pdu, err := p.Build(v, server, key)
	if err != nil {
		t.Fatal(err)
	}
	return pdu
}

func TestVerifyEvent(t *testing.T) {
	e := newEnv(t, "hs2", "hs3")
	r2, r3 := e.remotes["hs2"], e.remotes["hs3"]
	k := e.keyring(t)
	now := e.clk.now().UnixMilli()
	ev := buildEvent(t, "10", "@bob:hs2", `{"membership":"join"}`, now, "hs2", r2.key)
	if err := k.VerifyEvent(ctx, ev); err != nil {
		t.Fatal(err)
	}
	// Signed with a key hs2 does not publish: refused.
	forged := buildEvent(t, "10", "@bob:hs2", `{"membership":"join"}`, now, "hs2", &event.SigningKey{ID: "ed25519:forged", Private: r3.key.Private})
	if err := k.VerifyEvent(ctx, forged); !errors.Is(err, keyring.ErrNoKey) {
		t.Fatalf("event signed by an unknown key: %v", err)
	}
	// Signed with hs2's key name but another private key: a bad signature.
	bad := buildEvent(t, "10", "@bob:hs2", `{"membership":"join"}`, now, "hs2", &event.SigningKey{ID: r2.key.ID, Private: r3.key.Private})
	if err := k.VerifyEvent(ctx, bad); !errors.Is(err, keyring.ErrBadSignature) {
		t.Fatalf("bad signature: %v", err)
	}
	// Room v5+: the key must be valid at origin_server_ts (24 h here);
	// v4 ignores valid_until_ts.
	later := e.clk.now().Add(48 * time.Hour).UnixMilli()
	if err := k.VerifyEvent(ctx, buildEvent(t, "5", "@bob:hs2", `{"membership":"join"}`, later, "hs2", r2.key)); !errors.Is(err, keyring.ErrNoKey) {
		t.Fatalf("v5 event after valid_until_ts: %v", err)
	}
	if err := k.VerifyEvent(ctx, buildEvent(t, "4", "@bob:hs2", `{"membership":"join"}`, later, "hs2", r2.key)); err != nil {
		t.Fatalf("v4 event after valid_until_ts: %v", err)
	}
	// A restricted join (v8+) must be signed by the authorising server too.
	join := buildEvent(t, "10", "@bob:hs2", `{"membership":"join","join_authorised_via_users_server":"@carol:hs3"}`, now, "hs2", r2.key)
	if got := keyring.RequiredSigners(join); strings.Join(got, ",") != "hs2,hs3" {
		t.Fatalf("required signers %v", got)
	}
	if err := k.VerifyEvent(ctx, join); err == nil {
		t.Fatal("restricted join without the authorising server's signature accepted")
	}
	countersigned, err := join.WithSignature("hs3", r3.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.VerifyEvent(ctx, countersigned); err != nil {
		t.Fatal(err)
	}
	if !k.AuthVerifier(ctx).EventSignedBy(countersigned, "hs3") {
		t.Fatal("AuthVerifier")
	}
	// v7 has no restricted joins: the sender's server only.
	if got := keyring.RequiredSigners(buildEvent(t, "7", "@bob:hs2", `{"membership":"join","join_authorised_via_users_server":"@carol:hs3"}`, now, "hs2", r2.key)); strings.Join(got, ",") != "hs2" {
		t.Fatalf("v7 required signers %v", got)
	}
}

// This server's old keys (after rotate-key) verify events dated before
// their expiry, from memory.
func TestOwnOldKeys(t *testing.T) {
	e := newEnv(t)
	old, _ := event.GenerateSigningKey()
	expired := e.clk.now().UnixMilli()
	if err := e.db.StoreServerKeys(ctx, "hs1", []store.ServerKey{{ServerName: "hs1", KeyID: old.ID, PublicKey: old.PublicKeyBase64(), ExpiredTS: expired, FetchedTS: expired}}, nil); err != nil {
		t.Fatal(err)
	}
	k := e.keyring(t, func(c *keyring.Config) { c.Fetcher = nil })
	if got := k.OwnOldKeys(); len(got) != 1 || got[0].KeyID != old.ID || got[0].ExpiredTS != expired {
		t.Fatalf("own old keys %+v", got)
	}
	ev := buildEvent(t, "10", "@a:hs1", `{"membership":"join"}`, expired-10, "hs1", old)
	if err := k.VerifyEvent(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if err := k.VerifyEvent(ctx, buildEvent(t, "10", "@a:hs1", `{"membership":"join"}`, expired+10, "hs1", old)); err == nil {
		t.Fatal("event dated after the rotation signed with the old key accepted")
	}
	if err := k.VerifyEvent(ctx, buildEvent(t, "10", "@a:hs1", `{"membership":"join"}`, expired+10, "hs1", e.own)); err != nil {
		t.Fatal(err)
	}
}

// The notary serves the stored response for half its lifetime (at most 7
// days counted), then fetches again; while the server is down it serves
// the last response it has; always countersigned.
func TestNotaryResponseCaching(t *testing.T) {
	e := newEnv(t, "hs2")
	r := e.remotes["hs2"]
	r.set(func() { r.validUntil = e.clk.now().Add(400 * 24 * time.Hour) })
	k := e.keyring(t)
	get := func() []byte {
		t.Helper()
		b, err := k.NotaryResponse(ctx, "hs2", e.clk.now().UnixMilli())
		if err != nil || b == nil {
			t.Fatalf("%s %v", b, err)
		}
		if event.VerifyJSON(b, "hs2", r.key.ID, r.key.PublicKey()) != nil || event.VerifyJSON(b, "hs1", e.own.ID, e.own.PublicKey()) != nil {
			t.Fatalf("not signed by hs2 and countersigned by hs1: %s", b)
		}
		return b
	}
	get()
	e.clk.add(3 * 24 * time.Hour)
	get()
	if n := r.hits.Load(); n != 1 {
		t.Fatalf("%d fetches within half of the (capped) lifetime", n)
	}
	e.clk.add(12 * time.Hour) // 3.5 days: half of the 7 counted
	get()
	if n := r.hits.Load(); n != 2 {
		t.Fatalf("%d fetches after half the lifetime, want 2", n)
	}
	r.set(func() { r.status = 503 })
	e.clk.add(4 * 24 * time.Hour)
	get()
	if n := r.hits.Load(); n != 3 {
		t.Fatalf("%d fetches", n)
	}
	if b, err := k.NotaryResponse(ctx, "hs9", 0); b != nil || err != nil {
		t.Fatalf("unknown server: %s %v", b, err)
	}
}

// A caller whose first read of a server's keys from the store is slow must
// not put that stale entry over the one a concurrent fetch left: it would
// lift the fetch limit, and the next unknown key ID would fetch again (a
// flake of TestFloodOfUnknownKeysFetchesOncePerMinute under load).
func TestSlowFirstLoadKeepsTheFetchLimit(t *testing.T) {
	e := newEnv(t, "hs2")
	r := e.remotes["hs2"]
	slow := &slowFirstRead{keys: e.db, entered: make(chan struct{}), release: make(chan struct{})}
	k := e.keyring(t, func(c *keyring.Config) { c.Store = slow })
	now := e.clk.now().UnixMilli()
	first := make(chan error, 1)
	go func() {
		_, err := k.VerifyKey(ctx, "hs2", "ed25519:bogus1", now)
		first <- err
	}()
	<-slow.entered // the first caller's load from the store is held
	if _, err := k.VerifyKey(ctx, "hs2", "ed25519:bogus2", now); !errors.Is(err, keyring.ErrNoKey) {
		t.Fatalf("bogus2: %v", err)
	}
	if n := r.hits.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
	close(slow.release)
	if err := <-first; !errors.Is(err, keyring.ErrNoKey) {
		t.Fatalf("bogus1: %v", err)
	}
	if n := r.hits.Load(); n != 1 {
		t.Fatalf("%d fetches after the slow caller went on, want 1 (within the minute)", n)
	}
}

// slowFirstRead holds the first ServerKeys read of hs2's keys until
// released.
type slowFirstRead struct {
	keys    store.ServerKeys
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (s *slowFirstRead) ServerKeys(ctx context.Context, server string) ([]store.ServerKey, error) {
	held := false
	if server == "hs2" {
		s.once.Do(func() { held = true })
	}
	if held {
		close(s.entered)
		<-s.release
	}
	return s.keys.ServerKeys(ctx, server)
}

func (s *slowFirstRead) StoreServerKeys(ctx context.Context, server string, keys []store.ServerKey, resp *store.ServerKeyResponse) error {
	return s.keys.StoreServerKeys(ctx, server, keys, resp)
}

func (s *slowFirstRead) ServerKeyResponse(ctx context.Context, server string) (*store.ServerKeyResponse, error) {
	return s.keys.ServerKeyResponse(ctx, server)
}
