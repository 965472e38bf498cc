// Package keyring owns the servers' signing keys: other servers' keys,
// fetched from their /_matrix/key/v2/server (through a Fetcher), validated,
// kept in a bounded memory cache in front of the store with valid_until_ts
// and old_verify_keys honoured; this server's own current and old keys. It
// verifies JSON, request and event signatures with them and gives the
// notary (/_matrix/key/v2/query) the responses it hands on. No HTTP here:
// federationapi serves the endpoints, fedclient fetches.
//
// When a server cannot give its keys itself (down, failing, or not
// listing the key asked for), the trusted key servers (notaries) are asked
// in turn (notaryquery.go); their answers count only when both the server
// and the notary signed them.
//
// A hostile server cannot make us hammer anyone: a server's keys are
// fetched at most once at a time (concurrent callers share the fetch) and
// at most once per MinRefetch, longer after failures, and the notaries are
// asked about it only within that same attempt; a server outside the allow
// list is never contacted.
package keyring

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"conclave/internal/event"
	"conclave/internal/lru"
	"conclave/internal/store"
)

// Fetcher gets a server's own key response, the raw JSON body of GET
// /_matrix/key/v2/server on that server (internal/fedclient implements it
// over the outbound client: discovery, TLS, body limits).
type Fetcher interface {
	ServerKeys(ctx context.Context, serverName string) ([]byte, error)
}

var (
	// ErrNotAllowed: the server is outside the federation allow list; it
	// was not contacted.
	ErrNotAllowed = errors.New("keyring: server is not in the federation allow list")
	// ErrNoKey: no key that is valid at the time asked for could be found
	// (in memory, in the store, or from the server within the fetch limits).
	ErrNoKey = errors.New("keyring: no valid signing key")
	// ErrBadSignature: a signature by a known valid key does not verify.
	ErrBadSignature = errors.New("keyring: bad signature")
)

// KeyValidityCap: "Servers MUST use the lesser of this field and 7 days into
// the future when determining if a key is valid" (Server-Server API, keys
// definition, valid_until_ts). The 7 days count from the fetch.
const KeyValidityCap = 7 * 24 * time.Hour

// MaxKeyResponse bounds a key response we accept from a server.
const MaxKeyResponse = 1 << 20

// Config is what a Keyring needs.
type Config struct {
	ServerName string
	Key        *event.SigningKey // this server's current signing key
	Store      store.ServerKeys
	// Fetcher gets keys from other servers; nil: only what is stored.
	Fetcher Fetcher
	// TrustedKeyServers (trusted_key_servers) are asked, in this order,
	// for a server's keys when the server itself cannot give them; only
	// through a Fetcher that is also a NotaryFetcher. Empty: none.
	TrustedKeyServers []string
	// Allowed, when set, is the closed circle: other servers for which it
	// is false are never contacted and their keys never used.
	Allowed func(serverName string) bool
	Now     func() time.Time // nil: time.Now
	// MinRefetch: at most one fetch per server in this time (default one
	// minute). After a failed fetch the wait doubles, up to MaxBackoff
	// (default 10 minutes).
	MinRefetch, MaxBackoff time.Duration
	// FetchTimeout bounds one fetch (default 30 s); it runs on for the
	// callers sharing it even if the one that started it gives up.
	FetchTimeout time.Duration
	// CacheSize bounds the servers kept in memory (default 10,000).
	CacheSize int
	// Log gets a warning for each failed fetch of a server's keys and each
	// notary that could not vouch for them (at most one round per server
	// and fetch limit); nil: nothing is logged.
	Log *slog.Logger
}

// Keyring is safe for concurrent use.
type Keyring struct {
	cfg     Config
	servers *lru.Cache[string, *serverEntry]

	mu       sync.Mutex
	inflight map[string]*call

	ownOld map[string]keyInfo // this server's old keys, by key ID
}

// keyInfo is one key and how long it may be used.
type keyInfo struct {
	pub        ed25519.PublicKey
	validUntil int64 // verify_keys: usable for times ≤ this (capped)
	expired    int64 // old_verify_keys: usable for times ≤ this; 0 = current
}

// validAt: "Keys used beyond this timestamp [valid_until_ts] MUST be
// considered invalid"; old keys "known to have expired prior to the event's
// origin_server_ts are ignored" (Server-Server API, "Validating hashes and
// signatures on received events"). A time of 0 asks for any key: room
// versions 1–4 ignore valid_until_ts.
func (k keyInfo) validAt(ts int64) bool {
	if k.expired > 0 {
		return ts <= k.expired
	}
	return ts <= k.validUntil
}

// serverEntry is what memory knows of a server; replaced, never changed.
type serverEntry struct {
	keys      map[string]keyInfo
	nextFetch time.Time // no fetch before this
	failures  int       // consecutive failed fetches
}

type call struct {
	done chan struct{}
	err  error
	// notaries: this refresh may ask the notaries, and so wait on the
	// refresh of a notary's own keys (see refresh).
	notaries bool
}

// need is what a refresh is for: want tells whether an entry satisfies it
// (nil: a refresh for its own sake, the notary endpoints'; the notaries are
// not asked then: a notary hands on what servers say themselves). keyID
// and atTS are what the notaries are asked for. nested: the lookup of a
// notary's own key, to check its answer; the notaries are not asked.
type need struct {
	want   func(*serverEntry) bool
	keyID  string
	atTS   int64
	nested bool
}

// notaries reports whether a refresh for n may ask the notaries.
func (k *Keyring) notaries(n need) bool {
	return !n.nested && n.want != nil && len(k.cfg.TrustedKeyServers) > 0
}

// New returns a keyring and loads this server's old keys from the store.
func New(ctx context.Context, cfg Config) (*Keyring, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MinRefetch <= 0 {
		cfg.MinRefetch = time.Minute
	}
	if cfg.MaxBackoff < cfg.MinRefetch {
		cfg.MaxBackoff = max(10*time.Minute, cfg.MinRefetch)
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = 30 * time.Second
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 10_000
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	k := &Keyring{cfg: cfg, servers: lru.New[string, *serverEntry](cfg.CacheSize), inflight: map[string]*call{}, ownOld: map[string]keyInfo{}}
	stored, err := cfg.Store.ServerKeys(ctx, cfg.ServerName)
	if err != nil {
		return nil, fmt.Errorf("own old signing keys: %w", err)
	}
	for _, sk := range stored {
		ki, err := keyInfoOf(sk)
		if err != nil || sk.ExpiredTS == 0 || sk.KeyID == cfg.Key.ID {
			continue
		}
		k.ownOld[sk.KeyID] = ki
	}
	return k, nil
}

func keyInfoOf(sk store.ServerKey) (keyInfo, error) {
	pub, err := decodeKey(sk.PublicKey)
	return keyInfo{pub: pub, validUntil: sk.ValidUntilTS, expired: sk.ExpiredTS}, err
}

func decodeKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, errors.New("not an ed25519 public key in base64")
	}
	return b, nil
}

// OwnOldKeys are this server's retired keys, for the old_verify_keys of
// /_matrix/key/v2/server.
func (k *Keyring) OwnOldKeys() []store.ServerKey {
	out := make([]store.ServerKey, 0, len(k.ownOld))
	for id, ki := range k.ownOld {
		out = append(out, store.ServerKey{ServerName: k.cfg.ServerName, KeyID: id, PublicKey: base64.RawStdEncoding.EncodeToString(ki.pub), ExpiredTS: ki.expired})
	}
	slices.SortFunc(out, func(a, b store.ServerKey) int { return strings.Compare(a.KeyID, b.KeyID) })
	return out
}

// Allowed reports whether server may be contacted and trusted: the allow
// list, when there is one (this server is always allowed).
func (k *Keyring) Allowed(server string) bool {
	return server == k.cfg.ServerName || k.cfg.Allowed == nil || k.cfg.Allowed(server)
}

// VerifyKey returns server's key keyID if it is valid at atTS (ms; 0 for any
// time). Memory, then the store, then the server itself and, if it cannot
// give it, the trusted key servers (within the server's fetch limits).
// Errors: ErrNotAllowed, ErrNoKey, or the context's.
func (k *Keyring) VerifyKey(ctx context.Context, server, keyID string, atTS int64) (ed25519.PublicKey, error) {
	return k.verifyKey(ctx, server, keyID, atTS, false)
}

// verifyKey is VerifyKey; nested: the key looked up is a notary's own,
// needed to check its answer (see need).
func (k *Keyring) verifyKey(ctx context.Context, server, keyID string, atTS int64, nested bool) (ed25519.PublicKey, error) {
	if server == k.cfg.ServerName {
		if keyID == k.cfg.Key.ID {
			return k.cfg.Key.PublicKey(), nil
		}
		if ki, ok := k.ownOld[keyID]; ok && ki.validAt(atTS) {
			return ki.pub, nil
		}
		return nil, fmt.Errorf("%w: %s of this server at %d", ErrNoKey, keyID, atTS)
	}
	if !k.Allowed(server) {
		return nil, ErrNotAllowed
	}
	e, err := k.entry(ctx, server)
	if err != nil {
		return nil, err
	}
	if ki, ok := e.keys[keyID]; ok && ki.validAt(atTS) {
		return ki.pub, nil
	}
	want := func(e *serverEntry) bool {
		ki, ok := e.keys[keyID]
		return ok && ki.validAt(atTS)
	}
	if err := k.refresh(ctx, server, need{want: want, keyID: keyID, atTS: atTS, nested: nested}); err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if e, ok := k.servers.Get(server); ok {
		if ki, ok := e.keys[keyID]; ok && ki.validAt(atTS) {
			return ki.pub, nil
		}
	}
	return nil, fmt.Errorf("%w: %s of %s at %d", ErrNoKey, keyID, server, atTS)
}

// entry returns what memory knows of server, loading it from the store on
// a miss (an entry without keys is kept too: the store is not asked again
// for a server nobody has fetched). An entry another caller put meanwhile
// wins over the one loaded here: it may come from a fetch, and carry the
// fetch limit that replacing it would lift.
func (k *Keyring) entry(ctx context.Context, server string) (*serverEntry, error) {
	if e, ok := k.servers.Get(server); ok {
		return e, nil
	}
	e, err := k.load(ctx, server, nil)
	if err != nil {
		return nil, err
	}
	k.servers.Update(server, func(old *serverEntry, ok bool) (*serverEntry, bool) {
		if ok {
			e = old
		}
		return e, true
	})
	return e, nil
}

// load reads server's keys from the store into a new entry carrying over
// prev's fetch limits.
func (k *Keyring) load(ctx context.Context, server string, prev *serverEntry) (*serverEntry, error) {
	stored, err := k.cfg.Store.ServerKeys(ctx, server)
	if err != nil {
		return nil, err
	}
	e := &serverEntry{keys: make(map[string]keyInfo, len(stored))}
	if prev != nil {
		e.nextFetch, e.failures = prev.nextFetch, prev.failures
	}
	for _, sk := range stored {
		if ki, err := keyInfoOf(sk); err == nil {
			e.keys[sk.KeyID] = ki
		}
	}
	return e, nil
}

// errRecent: the server was fetched too recently to be fetched again.
var errRecent = errors.New("keyring: keys fetched recently")

// errBusy: a notary's keys are being refreshed by a refresh that may itself
// wait on this one; not waited for.
var errBusy = errors.New("keyring: keys being fetched")

// refresh brings server's keys up to date: the store first (another
// process may have fetched them), then, unless n.want is then satisfied,
// the server itself, if its fetch limit allows, then the notaries.
// Concurrent callers share one refresh. The fetch runs detached from ctx
// (bounded by FetchTimeout, as is the asking of the notaries), so a caller
// that gives up does not fail the others.
//
// A refresh that asks the notaries waits on the refresh of a notary's
// keys, which never asks notaries; so that no two refreshes wait on each
// other (B's asking notary A about B while A's asks notary B about A), the
// lookup of a notary's key does not wait on a refresh that asks notaries:
// that notary is skipped this time.
func (k *Keyring) refresh(ctx context.Context, server string, n need) error {
	notaries := k.notaries(n)
	k.mu.Lock()
	if c, ok := k.inflight[server]; ok {
		k.mu.Unlock()
		if c.notaries && n.nested {
			return errBusy
		}
		select {
		case <-c.done:
			return c.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	c := &call{done: make(chan struct{}), notaries: notaries}
	k.inflight[server] = c
	k.mu.Unlock()
	go func() {
		timeout := k.cfg.FetchTimeout
		if notaries {
			timeout *= 2 // the server's own, then the notaries' turn
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer cancel()
		c.err = k.doRefresh(fctx, server, n)
		k.mu.Lock()
		delete(k.inflight, server)
		k.mu.Unlock()
		close(c.done)
	}()
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (k *Keyring) doRefresh(ctx context.Context, server string, n need) error {
	want := n.want
	prev, _ := k.servers.Get(server)
	now := k.cfg.Now()
	// Within the limit not even the store is read again: a flood of
	// unknown key IDs costs one map lookup each. (Another process's fetch
	// is seen once the limit has passed.)
	if prev != nil && now.Before(prev.nextFetch) {
		return errRecent
	}
	e, err := k.load(ctx, server, prev)
	if err != nil {
		return err
	}
	k.servers.Put(server, e)
	if want != nil && want(e) {
		return nil
	}
	if now.Before(e.nextFetch) {
		return errRecent
	}
	// The limit counts from the start of the attempt.
	started := &serverEntry{keys: e.keys, nextFetch: now.Add(k.cfg.MinRefetch), failures: e.failures}
	k.servers.Put(server, started)
	if k.cfg.Fetcher == nil {
		return ErrNoKey
	}
	dctx, cancel := context.WithTimeout(ctx, k.cfg.FetchTimeout)
	keys, resp, err := k.fetch(dctx, server, now)
	cancel()
	if err != nil {
		failed := *started
		failed.failures++
		failed.nextFetch = now.Add(min(k.cfg.MinRefetch<<min(failed.failures-1, 16), k.cfg.MaxBackoff))
		k.servers.Put(server, &failed)
		k.cfg.Log.Warn("fetching a server's signing keys failed", "server", server, "failures", failed.failures, "retry_after", failed.nextFetch.Sub(now).Round(time.Second).String(), "err", err)
		// The server stays backed off (the notaries' answer does not
		// say it is up again); what they give is used meanwhile.
		if k.notaries(n) && k.askNotaries(ctx, server, n, now, &failed) {
			return nil
		}
		return err
	}
	if err := k.cfg.Store.StoreServerKeys(ctx, server, keys, resp); err != nil {
		return err
	}
	done, err := k.load(ctx, server, started)
	if err != nil {
		return err
	}
	done.failures = 0
	k.servers.Put(server, done)
	if k.notaries(n) && !want(done) {
		// Up, but without the key asked for (one it dropped from
		// old_verify_keys, or a response a notary kept from before).
		k.askNotaries(ctx, server, n, now, done)
	}
	return nil
}

// fetch gets and validates server's key response.
func (k *Keyring) fetch(ctx context.Context, server string, now time.Time) ([]store.ServerKey, *store.ServerKeyResponse, error) {
	body, err := k.cfg.Fetcher.ServerKeys(ctx, server)
	if err != nil {
		return nil, nil, fmt.Errorf("keys of %s: %w", server, err)
	}
	keys, until, err := ParseKeyResponse(body, server, now)
	if err != nil {
		return nil, nil, err
	}
	return keys, &store.ServerKeyResponse{ServerName: server, ValidUntilTS: until, FetchedTS: now.UnixMilli(), JSON: body}, nil
}

// keyResponse is the shape of /_matrix/key/v2/server (Server-Server API,
// "Publishing Keys").
type keyResponse struct {
	ServerName   string `json:"server_name"`
	ValidUntilTS *int64 `json:"valid_until_ts"`
	VerifyKeys   map[string]struct {
		Key string `json:"key"`
	} `json:"verify_keys"`
	OldVerifyKeys map[string]struct {
		Key       string `json:"key"`
		ExpiredTS int64  `json:"expired_ts"`
	} `json:"old_verify_keys"`
	Signatures map[string]map[string]string `json:"signatures"`
}

// ParseKeyResponse validates server's own key response fetched at now and
// returns its keys as stored (valid_until_ts capped at now + 7 days) and the
// response's valid_until_ts. It must name server, carry a valid_until_ts,
// publish at least one ed25519 key, and be signed by every key it publishes
// (and by nothing else of server's): a response for another server, or one
// its own keys do not vouch for, is refused.
func ParseKeyResponse(body []byte, server string, now time.Time) ([]store.ServerKey, int64, error) {
	bad := func(format string, args ...any) ([]store.ServerKey, int64, error) {
		return nil, 0, fmt.Errorf("key response of %s: "+format, append([]any{server}, args...)...)
	}
	if len(body) > MaxKeyResponse {
		return bad("larger than %d bytes", MaxKeyResponse)
	}
	var r keyResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return bad("%v", err)
	}
	if r.ServerName != server {
		return bad("server_name is %q", r.ServerName)
	}
	if r.ValidUntilTS == nil {
		return bad("no valid_until_ts")
	}
	fetched := now.UnixMilli()
	until := min(*r.ValidUntilTS, now.Add(KeyValidityCap).UnixMilli())
	var keys []store.ServerKey
	verify := map[string]ed25519.PublicKey{}
	for id, v := range r.VerifyKeys {
		if !strings.HasPrefix(id, "ed25519:") {
			continue // other algorithms are not understood; ignored
		}
		pub, err := decodeKey(v.Key)
		if err != nil || !event.ValidKeyID(id) {
			return bad("verify key %q: not an ed25519 key", id)
		}
		verify[id] = pub
		keys = append(keys, store.ServerKey{ServerName: server, KeyID: id, PublicKey: v.Key, ValidUntilTS: until, FetchedTS: fetched})
	}
	if len(verify) == 0 {
		return bad("no ed25519 verify key")
	}
	sigs := r.Signatures[server]
	for id, pub := range verify {
		if _, ok := sigs[id]; !ok {
			return bad("not signed by its key %s", id)
		}
		if err := event.VerifyJSON(body, server, id, pub); err != nil {
			return bad("signature by %s: %v", id, err)
		}
	}
	for id := range sigs {
		if _, ok := verify[id]; !ok && strings.HasPrefix(id, "ed25519:") {
			return bad("signed by %s, which it does not publish", id)
		}
	}
	for id, v := range r.OldVerifyKeys {
		if _, current := verify[id]; current || !strings.HasPrefix(id, "ed25519:") {
			continue
		}
		if _, err := decodeKey(v.Key); err != nil || !event.ValidKeyID(id) || v.ExpiredTS <= 0 {
			return bad("old verify key %q: not an ed25519 key with expired_ts", id)
		}
		keys = append(keys, store.ServerKey{ServerName: server, KeyID: id, PublicKey: v.Key, ExpiredTS: v.ExpiredTS, FetchedTS: fetched})
	}
	slices.SortFunc(keys, func(a, b store.ServerKey) int { return strings.Compare(a.KeyID, b.KeyID) })
	return keys, *r.ValidUntilTS, nil
}
