package keys

import (
	"conclave/internal/changes"
	"context"
	"encoding/json"
	"sort"

	"conclave/internal/matrix"
	"conclave/internal/store"
)

// SendToDevice stores a to-device message batch from (sender, senderDevice)
// for local devices; "*" as device ID means every device of the user. A
// repeated transaction ID from the same device is accepted and does nothing.
// Messages for unknown users or devices are dropped, as Synapse does; users
// on other servers are skipped until federation exists.
func (s *Service) SendToDevice(ctx context.Context, sender, senderDevice, evType, txnID string, messages map[string]map[string]json.RawMessage) error {
	if evType == "" || len(evType) > 255 {
		return matrix.InvalidParam("Invalid event type")
	}
	if len(txnID) > 255 {
		return matrix.InvalidParam("Transaction ID is too long")
	}
	n := 0
	users := make([]string, 0, len(messages))
	for u, devs := range messages {
		if !matrix.ValidUserID(u) {
			return matrix.InvalidParam("%q is not a valid user ID", u)
		}
		n += len(devs)
		users = append(users, u)
	}
	if n > MaxToDeviceTargets {
		return matrix.InvalidParam("At most %d devices can be messaged at once", MaxToDeviceTargets)
	}
	sort.Strings(users)
	var msgs []store.ToDeviceSend
	for _, u := range users {
		devs := messages[u]
		ids := make([]string, 0, len(devs))
		for d := range devs {
			ids = append(ids, d)
		}
		sort.Strings(ids)
		for _, d := range ids {
			content := devs[d]
			if len(content) == 0 || content[0] != '{' {
				return matrix.BadJSON("messages.%s.%s must be an object", u, d)
			}
			if !s.isLocal(u) {
				continue
			}
			j, err := json.Marshal(struct {
				Sender  string          `json:"sender"`
				Type    string          `json:"type"`
				Content json.RawMessage `json:"content"`
			}{sender, evType, content})
			if err != nil {
				return matrix.BadJSON("messages.%s.%s: %v", u, d, err)
			}
			msgs = append(msgs, store.ToDeviceSend{UserID: u, DeviceID: d, JSON: j})
		}
	}
	// Marked before the commit: a /sync that sees the messages committed
	// also sees them in flight or recorded (changes.Tracker).
	var keys []changes.Key
	for _, m := range msgs {
		if len(keys) == 0 || keys[len(keys)-1].Subject != m.UserID {
			keys = append(keys, changes.Key{Kind: changes.ToDevice, Subject: m.UserID})
		}
	}
	w := s.Changes.Begin(keys...)
	recipients, dup, err := s.store.SendToDevice(w.Context(ctx), sender, senderDevice, txnID, msgs)
	w.Done(0)
	if err != nil {
		return err
	}
	if !dup && s.NotifyToDevice != nil && len(recipients) > 0 {
		s.NotifyToDevice(recipients...)
	}
	return nil
}
