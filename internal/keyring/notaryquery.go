package keyring

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"conclave/internal/event"
	"conclave/internal/store"
)

// NotaryFetcher asks a notary (a trusted key server) for another server's
// keys: POST /_matrix/key/v2/query on notary with {"server_keys": {server:
// {keyID: {"minimum_valid_until_ts": minValidUntil}}}} (Server-Server API,
// "Querying Keys Through Another Server"), returning the raw answer
// ({"server_keys": [key responses]}), bounded. A Fetcher that is also a
// NotaryFetcher lets the keyring use Config.TrustedKeyServers.
type NotaryFetcher interface {
	NotaryKeys(ctx context.Context, notary, server, keyID string, minValidUntil int64) ([]byte, error)
}

// maxNotaryAnswers bounds the key responses looked at in one notary's
// answer (it may return several for the server asked about: "The notary
// server may return multiple keys regardless of the Key IDs given").
const maxNotaryAnswers = 8

// askNotaries asks the trusted key servers in turn for server's keys, for
// n, until one gives a response that satisfies n.want; what is accepted is
// stored as a direct fetch's response is. limits carries the server's fetch
// limits into the new entry. Called only from doRefresh, within the
// server's fetch limit: one round of notary queries per attempt.
func (k *Keyring) askNotaries(ctx context.Context, server string, n need, now time.Time, limits *serverEntry) bool {
	nf, ok := k.cfg.Fetcher.(NotaryFetcher)
	if !ok {
		return false
	}
	// "minimum_valid_until_ts: The returned keys SHOULD be valid until at
	// least this timestamp": the event's time, or now for any key.
	minValid := n.atTS
	if minValid <= 0 {
		minValid = now.UnixMilli()
	}
	for _, notary := range k.cfg.TrustedKeyServers {
		// A notary is never asked about itself (its word on its own
		// keys is what the direct fetch is), nor about this server.
		if notary == server || notary == k.cfg.ServerName || !k.Allowed(notary) || ctx.Err() != nil {
			continue
		}
		if k.askNotary(ctx, nf, notary, server, n, minValid, now, limits) {
			return true
		}
	}
	return false
}

// askNotary is one notary's turn in askNotaries; a notary that gives
// nothing usable is logged with the reason.
func (k *Keyring) askNotary(ctx context.Context, nf NotaryFetcher, notary, server string, n need, minValid int64, now time.Time, limits *serverEntry) bool {
	fail := func(err error) bool {
		k.cfg.Log.Warn("a trusted key server could not vouch for a server's signing keys", "notary", notary, "server", server, "key_id", n.keyID, "err", err)
		return false
	}
	body, err := nf.NotaryKeys(ctx, notary, server, n.keyID, minValid)
	if err != nil {
		return fail(err)
	}
	var answer struct {
		ServerKeys []json.RawMessage `json:"server_keys"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return fail(fmt.Errorf("answer is not a key query response: %w", err))
	}
	err = errors.New("no key response in the answer")
	for i, raw := range answer.ServerKeys {
		if i == maxNotaryAnswers {
			break
		}
		keys, until, cerr := k.checkNotaryAnswer(ctx, notary, server, raw, now)
		if cerr != nil {
			err = cerr
			continue
		}
		if err = k.storeNotaryKeys(ctx, server, keys, until, raw, now, limits); err != nil {
			continue
		}
		e, lerr := k.load(ctx, server, limits)
		if lerr != nil {
			err = lerr
			continue
		}
		k.servers.Put(server, e)
		if n.want(e) {
			return true
		}
		err = errors.New("its answer lacks the key asked for")
	}
	return fail(err)
}

// checkNotaryAnswer validates one key response that notary handed on for
// server, as ParseKeyResponse does a direct fetch's (it must name server
// and be signed by every key it publishes: the notary cannot make keys up),
// and checks that notary countersigned it with a key of its own, known
// through this keyring (fetched from the notary itself, never through
// another notary) and valid now: an answer the notary did not sign is not
// its word. Errors wrap ErrBadSignature or ErrNoKey for the notary's
// signature.
func (k *Keyring) checkNotaryAnswer(ctx context.Context, notary, server string, raw []byte, now time.Time) ([]store.ServerKey, int64, error) {
	keys, until, err := ParseKeyResponse(raw, server, now)
	if err != nil {
		return nil, 0, err
	}
	if notary == server || notary == k.cfg.ServerName {
		return nil, 0, fmt.Errorf("key response of %s from notary %s: a notary is not asked about itself or us", server, notary)
	}
	ids, err := signaturesOf(raw, notary)
	if err != nil {
		return nil, 0, err
	}
	err = k.verifyWith(ctx, notary, ids, now.UnixMilli(), true, func(id string, pub ed25519.PublicKey) error {
		return event.VerifyJSON(raw, notary, id, pub)
	})
	if err != nil {
		return nil, 0, fmt.Errorf("key response of %s from notary %s: %w", server, notary, err)
	}
	return keys, until, nil
}

// storeNotaryKeys stores what a notary handed on, without undoing what is
// better known: a key already known (from the server itself or an earlier
// answer) that is usable as long or longer is kept as it is, as is a known
// key ID with another public key; the response replaces the stored one only
// if it is valid for longer (a notary's copy may be older than ours).
func (k *Keyring) storeNotaryKeys(ctx context.Context, server string, keys []store.ServerKey, until int64, raw []byte, now time.Time, known *serverEntry) error {
	usable := func(validUntil, expired int64) int64 {
		if expired > 0 {
			return expired
		}
		return validUntil
	}
	var add []store.ServerKey
	for _, sk := range keys {
		if old, ok := known.keys[sk.KeyID]; ok {
			pub, err := decodeKey(sk.PublicKey)
			if err != nil || !pub.Equal(old.pub) || usable(old.validUntil, old.expired) >= usable(sk.ValidUntilTS, sk.ExpiredTS) {
				continue
			}
		}
		add = append(add, sk)
	}
	var resp *store.ServerKeyResponse
	stored, err := k.cfg.Store.ServerKeyResponse(ctx, server)
	switch {
	case errors.Is(err, store.ErrNotFound) || (err == nil && stored.ValidUntilTS < until):
		resp = &store.ServerKeyResponse{ServerName: server, ValidUntilTS: until, FetchedTS: now.UnixMilli(), JSON: raw}
	case err != nil:
		return err
	}
	if len(add) == 0 && resp == nil {
		return nil
	}
	return k.cfg.Store.StoreServerKeys(ctx, server, add, resp)
}
