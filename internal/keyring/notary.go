package keyring

import (
	"context"
	"errors"

	"conclave/internal/event"
	"conclave/internal/store"
)

// NotaryResponse returns server's own key response, as it signed it and
// countersigned by this server, for the notary endpoints (Server-Server
// API, "Querying Keys Through Another Server"). The stored response serves
// while it is valid until minValidUntil (ms; "The returned keys SHOULD be
// valid until at least this timestamp") and younger than half its lifetime
// ("Intermediate notary servers should cache a response for half of its
// lifetime"); otherwise the server is fetched again, within the fetch
// limits, and if that fails the last response is served anyway ("notary
// servers should continue to return the last response they received from
// the server so that the signatures of old events can still be checked").
// nil, nil: nothing known. ErrNotAllowed: server is outside the allow list
// (and was not contacted). This server's own keys are the caller's.
func (k *Keyring) NotaryResponse(ctx context.Context, server string, minValidUntil int64) ([]byte, error) {
	if !k.Allowed(server) {
		return nil, ErrNotAllowed
	}
	resp, err := k.cfg.Store.ServerKeyResponse(ctx, server)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	now := k.cfg.Now().UnixMilli()
	fresh := func(r *store.ServerKeyResponse) bool {
		if r == nil || r.ValidUntilTS < minValidUntil {
			return false
		}
		// The lifetime counts for at most KeyValidityCap, like the keys.
		end := min(r.ValidUntilTS, r.FetchedTS+KeyValidityCap.Milliseconds())
		return now < r.FetchedTS+(end-r.FetchedTS)/2
	}
	if !fresh(resp) {
		if err := k.refresh(ctx, server, need{}); err != nil && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if r, err := k.cfg.Store.ServerKeyResponse(ctx, server); err == nil {
			resp = r
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	if resp == nil {
		return nil, nil
	}
	signed, err := event.SignJSON(resp.JSON, k.cfg.ServerName, k.cfg.Key)
	if err != nil {
		// A response outside strict canonical JSON (floats, huge
		// integers) cannot be countersigned so that everyone verifies
		// it alike: it is not handed on.
		return nil, nil
	}
	return signed, nil
}
