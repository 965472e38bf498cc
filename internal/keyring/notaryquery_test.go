package keyring_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"conclave/internal/event"
	"conclave/internal/keyring"
)

// notaryFetcher is the env's fetcher plus POST /_matrix/key/v2/query:
// answer builds a notary's answer (nil: the notary is unreachable); every
// question is logged as "notary:server:keyID".
type notaryFetcher struct {
	*fetcher
	mu     sync.Mutex
	asked  []string
	answer func(notary, server, keyID string) []byte
}

func (f *notaryFetcher) NotaryKeys(ctx context.Context, notary, server, keyID string, minValidUntil int64) ([]byte, error) {
	f.mu.Lock()
	f.asked = append(f.asked, notary+":"+server+":"+keyID)
	answer := f.answer
	f.mu.Unlock()
	var body []byte
	if answer != nil {
		body = answer(notary, server, keyID)
	}
	if body == nil {
		return nil, fmt.Errorf("no route to %s", notary)
	}
	return body, nil
}

func (f *notaryFetcher) questions() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.asked...)
}

// notaryEnv: hs1 (us) with trusted_key_servers [hs3]; hs2 is the origin,
// hs3 the notary, both up; hs4 another server.
func notaryEnv(t *testing.T) (*env, *notaryFetcher, *keyring.Keyring) {
	e := newEnv(t, "hs2", "hs3", "hs4")
	nf := &notaryFetcher{fetcher: e.fetch}
	k := e.keyring(t, func(c *keyring.Config) {
		c.Fetcher = nf
		c.TrustedKeyServers = []string{"hs3"}
	})
	return e, nf, k
}

// countersigned returns {"server_keys": [resp signed by signer for
// notary]} (signer nil: resp as it is).
func countersigned(t *testing.T, resp []byte, notary string, signer *event.SigningKey) []byte {
	if signer != nil {
		var err error
		if resp, err = event.SignJSON(resp, notary, signer); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := json.Marshal(map[string]any{"server_keys": []json.RawMessage{resp}})
	return b
}

func down(r *remote) { r.set(func() { r.status = 503 }) }

// The origin is down and was never fetched: the notary's answer, signed by
// the origin and countersigned by the notary, gives its key; it is stored
// like a direct fetch's, and within the fetch limit neither the origin nor
// the notary is asked again.
func TestNotaryAnswerUsedWhenOriginDown(t *testing.T) {
	e, nf, k := notaryEnv(t)
	r2, r3 := e.remotes["hs2"], e.remotes["hs3"]
	down(r2)
	nf.answer = func(notary, server, keyID string) []byte {
		return countersigned(t, r2.signedKeys("hs2", map[string]*event.SigningKey{r2.key.ID: r2.key}, r2.key), "hs3", r3.key)
	}
	now := e.clk.now().UnixMilli()
	pub, err := k.VerifyKey(ctx, "hs2", r2.key.ID, now)
	if err != nil || !pub.Equal(r2.key.PublicKey()) {
		t.Fatalf("%v %v", pub, err)
	}
	if q := nf.questions(); len(q) != 1 || q[0] != "hs3:hs2:"+r2.key.ID {
		t.Fatalf("questions %q", q)
	}
	if r2.hits.Load() != 1 || r3.hits.Load() != 1 {
		t.Fatalf("fetches: origin %d, notary %d; want 1 each", r2.hits.Load(), r3.hits.Load())
	}
	// Stored as a direct fetch's: another keyring on the store has it.
	stored, _ := e.db.ServerKeys(ctx, "hs2")
	if len(stored) != 1 || stored[0].KeyID != r2.key.ID || stored[0].ValidUntilTS != r2.validUntil.UnixMilli() {
		t.Fatalf("stored %+v", stored)
	}
	resp, err := e.db.ServerKeyResponse(ctx, "hs2")
	if err != nil || event.VerifyJSON(resp.JSON, "hs2", r2.key.ID, r2.key.PublicKey()) != nil {
		t.Fatalf("stored response %v", err)
	}
	if _, err := e.keyring(t).VerifyKey(ctx, "hs2", r2.key.ID, now); err != nil {
		t.Fatal(err)
	}
	// A flood of unknown key IDs within the limit asks no one.
	for i := range 20 {
		if _, err := k.VerifyKey(ctx, "hs2", fmt.Sprintf("ed25519:bogus%d", i), now); !errors.Is(err, keyring.ErrNoKey) {
			t.Fatal(err)
		}
	}
	if n := len(nf.questions()); n != 1 || r2.hits.Load() != 1 {
		t.Fatalf("%d notary questions, %d origin fetches within the limit; want 1, 1", n, r2.hits.Load())
	}
	// After it: one more attempt, the origin then the notary, once.
	e.clk.add(2 * time.Minute)
	for i := range 5 {
		k.VerifyKey(ctx, "hs2", fmt.Sprintf("ed25519:bogus%d", i), now)
	}
	if n := len(nf.questions()); n != 2 || r2.hits.Load() != 2 {
		t.Fatalf("%d notary questions, %d origin fetches after the limit; want 2, 2", n, r2.hits.Load())
	}
}

// Answers that are not both the origin's word and the notary's are
// refused: nothing is stored and the key stays unknown.
func TestNotaryAnswersRefused(t *testing.T) {
	for name, build := range map[string]func(r2, r3, r4 *remote) []byte{
		"not countersigned": func(r2, r3, r4 *remote) []byte {
			return countersigned(t, r2.signedKeys("hs2", map[string]*event.SigningKey{r2.key.ID: r2.key}, r2.key), "hs3", nil)
		},
		"countersigned with a key not the notary's": func(r2, r3, r4 *remote) []byte {
			forged, _ := event.GenerateSigningKey()
			forged.ID = r3.key.ID
			return countersigned(t, r2.signedKeys("hs2", map[string]*event.SigningKey{r2.key.ID: r2.key}, r2.key), "hs3", forged)
		},
		"countersigned by another server": func(r2, r3, r4 *remote) []byte {
			return countersigned(t, r2.signedKeys("hs2", map[string]*event.SigningKey{r2.key.ID: r2.key}, r2.key), "hs4", r4.key)
		},
		"not signed by the origin": func(r2, r3, r4 *remote) []byte {
			return countersigned(t, r2.signedKeys("hs2", map[string]*event.SigningKey{r2.key.ID: r2.key}, nil), "hs3", r3.key)
		},
		"signed for the origin by a key it does not publish": func(r2, r3, r4 *remote) []byte {
			made, _ := event.GenerateSigningKey()
			made.ID = r2.key.ID
			return countersigned(t, r2.signedKeys("hs2", map[string]*event.SigningKey{r2.key.ID: made}, r2.key), "hs3", r3.key)
		},
		"another server's response": func(r2, r3, r4 *remote) []byte {
			r4.key.ID = r2.key.ID
			return countersigned(t, r4.signedKeys("hs4", map[string]*event.SigningKey{r2.key.ID: r4.key}, r4.key), "hs3", r3.key)
		},
		"server_name of another": func(r2, r3, r4 *remote) []byte {
			return countersigned(t, r2.signedKeys("hs4", map[string]*event.SigningKey{r2.key.ID: r2.key}, r2.key), "hs3", r3.key)
		},
		"not JSON": func(r2, r3, r4 *remote) []byte { return []byte(`{"server_keys": [`) },
	} {
		t.Run(name, func(t *testing.T) {
			e, nf, k := notaryEnv(t)
			r2, r3, r4 := e.remotes["hs2"], e.remotes["hs3"], e.remotes["hs4"]
			down(r2)
			body := build(r2, r3, r4)
			nf.answer = func(notary, server, keyID string) []byte { return body }
			if _, err := k.VerifyKey(ctx, "hs2", r2.key.ID, e.clk.now().UnixMilli()); !errors.Is(err, keyring.ErrNoKey) {
				t.Fatalf("got %v, want ErrNoKey", err)
			}
			if len(nf.questions()) != 1 {
				t.Fatalf("questions %q", nf.questions())
			}
			if stored, _ := e.db.ServerKeys(ctx, "hs2"); len(stored) != 0 {
				t.Fatalf("stored %+v", stored)
			}
			if _, err := e.db.ServerKeyResponse(ctx, "hs2"); err == nil {
				t.Fatal("a response was stored")
			}
		})
	}
}

// A notary whose own keys cannot be had (down itself) is not believed,
// and the next notary is asked.
func TestNotaryDownNextAsked(t *testing.T) {
	e := newEnv(t, "hs2", "hs3", "hs4")
	nf := &notaryFetcher{fetcher: e.fetch}
	k := e.keyring(t, func(c *keyring.Config) {
		c.Fetcher = nf
		c.TrustedKeyServers = []string{"hs1", "hs2", "hs3", "hs4"}
	})
	r2, r3 := e.remotes["hs2"], e.remotes["hs3"]
	down(r2)
	down(r3) // answers the query, but its own keys cannot be fetched
	nf.answer = func(notary, server, keyID string) []byte {
		r := e.remotes[server]
		return countersigned(t, r.signedKeys(server, map[string]*event.SigningKey{r.key.ID: r.key}, r.key), notary, e.remotes[notary].key)
	}
	if _, err := k.VerifyKey(ctx, "hs2", r2.key.ID, e.clk.now().UnixMilli()); err != nil {
		t.Fatal(err)
	}
	// Neither this server nor the origin is asked as a notary.
	if q := nf.questions(); len(q) != 2 || q[0] != "hs3:hs2:"+r2.key.ID || q[1] != "hs4:hs2:"+r2.key.ID {
		t.Fatalf("questions %q", q)
	}
	// A notary is never asked about itself: hs3 is down, and the first
	// other notary (hs2, whose keys hs4 gave) is asked about it (once its fetch limit, from the failed fetch of
	// its keys as a notary, has passed).
	e.clk.add(2 * time.Minute)
	if _, err := k.VerifyKey(ctx, "hs3", r3.key.ID, e.clk.now().UnixMilli()); err != nil {
		t.Fatal(err)
	}
	if q := nf.questions(); len(q) != 3 || q[2] != "hs2:hs3:"+r3.key.ID {
		t.Fatalf("questions %q", q)
	}
}

// The origin is up but no longer lists a key it signed old events with
// (dropped from old_verify_keys): the notary's copy of an earlier response
// gives it; the current key stays as the origin gave it.
func TestNotaryGivesKeyOriginDropped(t *testing.T) {
	e, nf, k := notaryEnv(t)
	r2, r3 := e.remotes["hs2"], e.remotes["hs3"]
	oldKey, _ := event.GenerateSigningKey()
	oldKey.ID = "ed25519:old"
	earlier := r2.signedKeys("hs2", map[string]*event.SigningKey{oldKey.ID: oldKey}, oldKey)
	nf.answer = func(notary, server, keyID string) []byte { return countersigned(t, earlier, "hs3", r3.key) }
	at := e.clk.now().Add(-time.Hour).UnixMilli()
	if pub, err := k.VerifyKey(ctx, "hs2", oldKey.ID, at); err != nil || !pub.Equal(oldKey.PublicKey()) {
		t.Fatalf("%v %v", pub, err)
	}
	if r2.hits.Load() != 1 || len(nf.questions()) != 1 {
		t.Fatalf("origin fetches %d, questions %q", r2.hits.Load(), nf.questions())
	}
	if _, err := k.VerifyKey(ctx, "hs2", r2.key.ID, e.clk.now().UnixMilli()); err != nil {
		t.Fatal(err)
	}
	// The stored response stays the origin's own (valid as long as the
	// notary's copy, so not replaced).
	resp, err := e.db.ServerKeyResponse(ctx, "hs2")
	if err != nil || event.VerifyJSON(resp.JSON, "hs2", r2.key.ID, r2.key.PublicKey()) != nil {
		t.Fatalf("stored response %v", err)
	}
}

// Without trusted key servers, or with a Fetcher that cannot ask them,
// nobody is asked: the key of a server that is down stays unknown.
func TestNoNotaryConfigured(t *testing.T) {
	e := newEnv(t, "hs2", "hs3")
	nf := &notaryFetcher{fetcher: e.fetch}
	r2, r3 := e.remotes["hs2"], e.remotes["hs3"]
	down(r2)
	nf.answer = func(notary, server, keyID string) []byte {
		return countersigned(t, r2.signedKeys("hs2", map[string]*event.SigningKey{r2.key.ID: r2.key}, r2.key), "hs3", r3.key)
	}
	k := e.keyring(t, func(c *keyring.Config) { c.Fetcher = nf })
	if _, err := k.VerifyKey(ctx, "hs2", r2.key.ID, 0); !errors.Is(err, keyring.ErrNoKey) || len(nf.questions()) != 0 {
		t.Fatalf("%v, questions %q", err, nf.questions())
	}
	k = e.keyring(t, func(c *keyring.Config) { c.TrustedKeyServers = []string{"hs3"} })
	e.clk.add(time.Hour)
	if _, err := k.VerifyKey(ctx, "hs2", r2.key.ID, 0); !errors.Is(err, keyring.ErrNoKey) || len(nf.questions()) != 0 {
		t.Fatalf("%v, questions %q", err, nf.questions())
	}
}

// Two notaries that are down both ask each other about the other at the
// same time: the lookup of a notary's own key does not wait on a refresh
// that is asking notaries, so neither waits on the other (they would
// until the fetch timeout, an hour here).
func TestNotariesDoNotWaitOnEachOther(t *testing.T) {
	e := newEnv(t, "hs3", "hs4")
	nf := &notaryFetcher{fetcher: e.fetch}
	k := e.keyring(t, func(c *keyring.Config) {
		c.Fetcher = nf
		c.TrustedKeyServers = []string{"hs3", "hs4"}
		c.FetchTimeout = time.Hour
	})
	r3, r4 := e.remotes["hs3"], e.remotes["hs4"]
	down(r3)
	down(r4)
	// Neither notary answers before both have been asked.
	var asked sync.WaitGroup
	asked.Add(2)
	nf.answer = func(notary, server, keyID string) []byte {
		asked.Done()
		asked.Wait()
		r := e.remotes[server]
		return countersigned(t, r.signedKeys(server, map[string]*event.SigningKey{r.key.ID: r.key}, r.key), notary, e.remotes[notary].key)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	errs := make(chan error, 2)
	for _, r := range []*remote{r3, r4} {
		go func() {
			_, err := k.VerifyKey(cctx, r.name, r.key.ID, 0)
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; !errors.Is(err, keyring.ErrNoKey) {
			t.Fatalf("got %v, want ErrNoKey (the notary's own key unknown)", err)
		}
	}
}

// lockedBuffer is a log destination safe for the keyring's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Why a server's keys could not be had is logged for the operator: the
// failed fetch, and each notary that could not vouch for them, with its
// reason.
func TestKeyFailuresLogged(t *testing.T) {
	e := newEnv(t, "hs2", "hs3", "hs4")
	nf := &notaryFetcher{fetcher: e.fetch}
	var logged lockedBuffer
	k := e.keyring(t, func(c *keyring.Config) {
		c.Fetcher = nf
		c.TrustedKeyServers = []string{"hs3", "hs4"}
		c.Log = slog.New(slog.NewTextHandler(&logged, nil))
	})
	r2, r4 := e.remotes["hs2"], e.remotes["hs4"]
	down(r2)
	nf.answer = func(notary, server, keyID string) []byte {
		if notary == "hs3" {
			return nil // unreachable
		}
		// Not signed by the origin: hs4 cannot vouch for it.
		return countersigned(t, r2.signedKeys("hs2", map[string]*event.SigningKey{r2.key.ID: r2.key}, nil), "hs4", r4.key)
	}
	if _, err := k.VerifyKey(ctx, "hs2", r2.key.ID, e.clk.now().UnixMilli()); !errors.Is(err, keyring.ErrNoKey) {
		t.Fatalf("got %v, want ErrNoKey", err)
	}
	lines := strings.Split(strings.TrimSpace(logged.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 log lines, got:\n%s", logged.String())
	}
	for i, want := range [][]string{
		{"level=WARN", "fetching a server's signing keys failed", "server=hs2", "failures=1"},
		{"level=WARN", "could not vouch", "notary=hs3", "server=hs2", "no route to hs3"},
		{"level=WARN", "could not vouch", "notary=hs4", "server=hs2", "err="},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("line %d lacks %q: %s", i+1, w, lines[i])
			}
		}
	}
}
