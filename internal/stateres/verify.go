package stateres

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"strings"

	"conclave/internal/event"
)

// defaultVerifier answers the signature questions of the authorisation rules
// when the Loader does not (see the package comment).
//
// EventSignedBy is true: whether an event carries a server's signature is a
// property of the event alone, checked when it was received ("Checks
// performed on receipt of a PDU"), and resolution only sees accepted events.
//
// ThirdPartyInviteSigned depends on the state (the public keys of the
// m.room.third_party_invite event the state holds), so it is checked here:
// any signature of the signed object verifying under any of the keys.
type defaultVerifier struct{}

func (defaultVerifier) EventSignedBy(*event.PDU, string) bool { return true }

func (defaultVerifier) ThirdPartyInviteSigned(signed json.RawMessage, publicKeys []string) bool {
	var obj struct {
		Signatures map[string]map[string]string `json:"signatures"`
	}
	if json.Unmarshal(signed, &obj) != nil {
		return false
	}
	for _, pk := range publicKeys {
		raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(pk, "="))
		if err != nil {
			// Public keys may be URL-safe base64 too (the spec's invite
			// examples use it).
			raw, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(pk, "="))
		}
		if err != nil || len(raw) != ed25519.PublicKeySize {
			continue
		}
		for server, keys := range obj.Signatures {
			for keyID := range keys {
				if event.VerifyJSON(signed, server, keyID, ed25519.PublicKey(raw)) == nil {
					return true
				}
			}
		}
	}
	return false
}
