package room

import (
	"encoding/json"

	"conclave/internal/event"
)

// localVerifier checks the signatures the authorisation rules ask about
// for events this server builds. It knows only this server's key: an event
// "signed by" another server cannot be checked without federation, so it is
// refused. An invite by third-party identifier is checked against the keys
// of its m.room.third_party_invite (event.ThirdPartyInviteSigned).
type localVerifier struct {
	serverName string
	key        *event.SigningKey
}

func (v localVerifier) EventSignedBy(ev *event.PDU, serverName string) bool {
	if serverName != v.serverName || v.key == nil {
		return false
	}
	return event.VerifyEventSignature(ev, serverName, v.key.ID, v.key.PublicKey()) == nil
}

func (v localVerifier) ThirdPartyInviteSigned(signed json.RawMessage, publicKeys []string) bool {
	return event.ThirdPartyInviteSigned(signed, publicKeys)
}
