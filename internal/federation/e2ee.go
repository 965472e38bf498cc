package federation

import (
	"context"
	"encoding/json"
	"errors"

	"conclave/internal/store"
)

// End-to-end encryption across servers: the calls internal/keys makes of
// other servers (device lists, key queries and claims) and the EDUs it
// sends (m.device_list_update, m.signing_key_update, m.direct_to_device),
// queued in the durable outbox like every EDU. The received ones go to
// Sinks.E2EE.

// KeysRemote is keys.Remote over this service.
type KeysRemote struct{ S *Service }

var errNoFederation = errors.New("federation: no federation client")

// EnqueueEDU queues an EDU for servers.
func (k KeysRemote) EnqueueEDU(ctx context.Context, dests []string, eduType string, content []byte) error {
	if k.S.Outbox == nil || len(dests) == 0 {
		return nil
	}
	return k.S.Outbox.EnqueueEDU(ctx, dests, eduType, content)
}

// EDUEntry is an EDU for servers as a queue entry for the store write that
// commits it (ok false: federation is off, or no server but this one).
func (k KeysRemote) EDUEntry(dests []string, eduType string, content []byte) (store.FedEnqueue, bool, error) {
	if k.S.Outbox == nil || len(dests) == 0 {
		return store.FedEnqueue{}, false, nil
	}
	return k.S.Outbox.EDUEntry(dests, eduType, content)
}

// Committed starts delivery of the entries a store write committed.
func (k KeysRemote) Committed(dests []string) {
	if k.S.Outbox != nil && len(dests) > 0 {
		k.S.Outbox.Committed(dests)
	}
}

// UserDevices asks a server for one of its users' device list.
func (k KeysRemote) UserDevices(ctx context.Context, server, userID string) (json.RawMessage, error) {
	if k.S.Client == nil {
		return nil, errNoFederation
	}
	return k.S.Client.UserDevices(ctx, server, userID)
}

// QueryKeys asks a server for its users' keys.
func (k KeysRemote) QueryKeys(ctx context.Context, server string, deviceKeys map[string][]string) (json.RawMessage, error) {
	if k.S.Client == nil {
		return nil, errNoFederation
	}
	return k.S.Client.QueryKeys(ctx, server, deviceKeys)
}

// ClaimKeys claims one-time keys of a server's users' devices.
func (k KeysRemote) ClaimKeys(ctx context.Context, server string, oneTimeKeys map[string]map[string]string) (json.RawMessage, error) {
	if k.S.Client == nil {
		return nil, errNoFederation
	}
	return k.S.Client.ClaimKeys(ctx, server, oneTimeKeys)
}
