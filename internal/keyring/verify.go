package keyring

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"conclave/internal/authrules"
	"conclave/internal/event"
	"conclave/internal/matrix"
)

// signaturesOf returns the ed25519 key IDs that signed obj for server,
// sorted.
func signaturesOf(obj []byte, server string) ([]string, error) {
	var o struct {
		Signatures map[string]map[string]json.RawMessage `json:"signatures"`
	}
	if err := json.Unmarshal(obj, &o); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	var ids []string
	for id := range o.Signatures[server] {
		if strings.HasPrefix(id, "ed25519:") {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// verifyWith checks server's signatures on obj with check, the way Synapse
// does (synapse/crypto/keyring.py, process_request) and MSC4029 proposes:
// signatures by keys that are unknown or not valid at atTS are skipped, every
// other one must verify, and at least one must. A known key that does not
// verify fails at once: a server does not sign with a key it published and
// get it wrong.
// nested: server is a notary whose answer is checked (see need).
func (k *Keyring) verifyWith(ctx context.Context, server string, ids []string, atTS int64, nested bool, check func(keyID string, pub ed25519.PublicKey) error) error {
	verified := 0
	for _, id := range ids {
		pub, err := k.verifyKey(ctx, server, id, atTS, nested)
		if errors.Is(err, ErrNoKey) {
			continue
		}
		if err != nil {
			return err
		}
		if err := check(id, pub); err != nil {
			return fmt.Errorf("%w: %v", ErrBadSignature, err)
		}
		verified++
	}
	if verified == 0 {
		if len(ids) == 0 {
			return fmt.Errorf("%w: not signed by %s", ErrBadSignature, server)
		}
		return fmt.Errorf("%w: none of %s's keys %v is known and valid at %d", ErrNoKey, server, ids, atTS)
	}
	return nil
}

// VerifyJSON checks server's signatures on the JSON object obj (appendix
// "Checking for a Signature") with keys valid at atTS (ms; 0 for any key).
// Errors wrap ErrNotAllowed, ErrNoKey or ErrBadSignature.
func (k *Keyring) VerifyJSON(ctx context.Context, server string, obj []byte, atTS int64) error {
	ids, err := signaturesOf(obj, server)
	if err != nil {
		return err
	}
	return k.VerifySigned(ctx, server, obj, ids, atTS)
}

// VerifySigned is VerifyJSON for a caller that knows which key IDs signed
// obj for server (request authentication builds obj from the headers), so
// obj is not parsed to find them.
func (k *Keyring) VerifySigned(ctx context.Context, server string, obj []byte, keyIDs []string, atTS int64) error {
	ids := make([]string, 0, len(keyIDs))
	for _, id := range keyIDs {
		if strings.HasPrefix(id, "ed25519:") {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return k.verifyWith(ctx, server, ids, atTS, false, func(id string, pub ed25519.PublicKey) error {
		return event.VerifyJSON(obj, server, id, pub)
	})
}

// EventSignedBy checks server's signature on pdu (made over the redacted
// event, so a redacted copy verifies too), with keys valid at the event's
// origin_server_ts when its room version enforces key validity (v5+), any
// key otherwise (valid_until_ts "MUST be ignored in room versions 1, 2, 3,
// and 4").
func (k *Keyring) EventSignedBy(ctx context.Context, pdu *event.PDU, server string) error {
	var at int64
	if pdu.Version.EnforceKeyValidity {
		at = max(pdu.OriginServerTS, 1) // 0 would ask for any key
	}
	ids, err := signaturesOf(pdu.Raw, server)
	if err != nil {
		return err
	}
	return k.verifyWith(ctx, server, ids, at, false, func(id string, pub ed25519.PublicKey) error {
		return event.VerifyEventSignature(pdu, server, id, pub)
	})
}

// RequiredSigners are the servers whose signatures an event must carry
// (Server-Server API, "Validating hashes and signatures on received events"):
// the sender's server, except for an invite made through a third-party
// invite (the sending server may be another; the auth rules check the
// token's signature instead). Room versions 1 and 2 add the event ID's
// server (their event IDs name the server that made the event: another
// server may not mint IDs in its name; Synapse checks the same). For a
// restricted join
// (v8+) the authorising user's server must have signed too (auth rules:
// "If the event is not validly signed by the homeserver of the user ID
// denoted by the key, reject"): it is checked here, where keys can be
// fetched, so that the rule finds the key in memory.
func RequiredSigners(pdu *event.PDU) []string {
	var content struct {
		Membership       string          `json:"membership"`
		ThirdPartyInvite json.RawMessage `json:"third_party_invite"`
		AuthorisedVia    string          `json:"join_authorised_via_users_server"`
	}
	if pdu.Type == "m.room.member" {
		json.Unmarshal(pdu.Content, &content) // a malformed content is the auth rules' business
	}
	var out []string
	if !(content.Membership == "invite" && len(content.ThirdPartyInvite) > 0 && string(content.ThirdPartyInvite) != "null") {
		out = append(out, matrix.ServerOf(pdu.Sender))
	}
	if pdu.Version.EventIDFormat == 1 {
		if s := event.EventIDServer(pdu.EventID); !slices.Contains(out, s) {
			out = append(out, s) // "" (a malformed ID) fails VerifyEvent
		}
	}
	if pdu.Version.RestrictedJoins && content.Membership == "join" && content.AuthorisedVia != "" {
		if s := matrix.ServerOf(content.AuthorisedVia); s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// VerifyEvent checks every signature an event must carry (RequiredSigners).
// It does not check the content hash: a mismatch there means "use the
// redacted copy", not "drop" (event.CheckContentHash).
func (k *Keyring) VerifyEvent(ctx context.Context, pdu *event.PDU) error {
	for _, s := range RequiredSigners(pdu) {
		if s == "" {
			return fmt.Errorf("%w: sender %q or event ID %q has no server name", ErrBadSignature, pdu.Sender, pdu.EventID)
		}
		if err := k.EventSignedBy(ctx, pdu, s); err != nil {
			return err
		}
	}
	return nil
}

// AuthVerifier adapts the keyring to the auth rules' signature checks for
// the duration of ctx.
func (k *Keyring) AuthVerifier(ctx context.Context) authrules.Verifier {
	return authVerifier{k, ctx}
}

type authVerifier struct {
	k   *Keyring
	ctx context.Context
}

func (v authVerifier) EventSignedBy(ev *event.PDU, serverName string) bool {
	return v.k.EventSignedBy(v.ctx, ev, serverName) == nil
}

// ThirdPartyInviteSigned: any signature of signed that verifies under any of
// publicKeys (Client-Server API, third-party invites: the identity server's
// keys, named by the m.room.third_party_invite event, not by server).
func (v authVerifier) ThirdPartyInviteSigned(signed json.RawMessage, publicKeys []string) bool {
	var o struct {
		Signatures map[string]map[string]json.RawMessage `json:"signatures"`
	}
	if json.Unmarshal(signed, &o) != nil {
		return false
	}
	for server, sigs := range o.Signatures {
		for id := range sigs {
			for _, pk := range publicKeys {
				pub, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(pk, "="))
				if err == nil && event.VerifyJSON(signed, server, id, pub) == nil {
					return true
				}
			}
		}
	}
	return false
}
