package event

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"strings"
)

// ThirdPartyInviteSigned reports whether any signature of signed (the
// content.third_party_invite.signed object of an invite) verifies under any
// of publicKeys (unpadded base64 ed25519 keys, standard or URL-safe, from
// the m.room.third_party_invite event): the authorisation rules' last test
// of an invite by third-party identifier.
func ThirdPartyInviteSigned(signed json.RawMessage, publicKeys []string) bool {
	var obj struct {
		Signatures map[string]map[string]string `json:"signatures"`
	}
	if json.Unmarshal(signed, &obj) != nil {
		return false
	}
	for _, pk := range publicKeys {
		raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(pk, "="))
		if err != nil {
			raw, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(pk, "="))
		}
		if err != nil || len(raw) != ed25519.PublicKeySize {
			continue
		}
		for server, keys := range obj.Signatures {
			for keyID := range keys {
				if VerifyJSON(signed, server, keyID, ed25519.PublicKey(raw)) == nil {
					return true
				}
			}
		}
	}
	return false
}
