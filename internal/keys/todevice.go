package keys

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"sort"

	"conclave/internal/changes"

	"conclave/internal/matrix"
	"conclave/internal/store"
)

// SendToDevice stores a to-device message batch from (sender, senderDevice)
// for local devices; "*" as device ID means every device of the user. A
// repeated transaction ID from the same device is accepted and does nothing.
// Messages for unknown users or devices are dropped, as Synapse does;
// messages for users on other servers go to their servers in one
// m.direct_to_device EDU per server (after the local ones commit, and only
// for a transaction ID not seen before).
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
	remote := map[string]map[string]map[string]json.RawMessage{} // server → user → device → content
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
				if s.federated() {
					srv := matrix.ServerOf(u)
					if remote[srv] == nil {
						remote[srv] = map[string]map[string]json.RawMessage{}
					}
					if remote[srv][u] == nil {
						remote[srv][u] = map[string]json.RawMessage{}
					}
					remote[srv][u][d] = content
				}
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
	if !dup {
		return s.sendRemoteToDevice(ctx, sender, evType, remote)
	}
	return nil
}

// sendRemoteToDevice queues one m.direct_to_device EDU per server (spec:
// "Send-to-device messaging"), each with its own message_id.
func (s *Service) sendRemoteToDevice(ctx context.Context, sender, evType string, remote map[string]map[string]map[string]json.RawMessage) error {
	servers := make([]string, 0, len(remote))
	for srv := range remote {
		servers = append(servers, srv)
	}
	sort.Strings(servers)
	for _, srv := range servers {
		b, err := json.Marshal(map[string]any{"sender": sender, "type": evType, "message_id": randomID(), "messages": remote[srv]})
		if err != nil {
			return err
		}
		if err := s.Fed.Remote.EnqueueEDU(context.WithoutCancel(ctx), []string{srv}, "m.direct_to_device", b); err != nil {
			return err
		}
	}
	return nil
}

func randomID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// HandleDirectToDevice takes an m.direct_to_device EDU from origin and
// stores its messages for local devices. A message_id already received
// from the same sender is dropped (a retried transaction or EDU): it is
// recorded as the sender's transaction ID, with no device, which no local
// sender's transaction can collide with.
func (s *Service) HandleDirectToDevice(ctx context.Context, origin string, content json.RawMessage) {
	var e struct {
		Sender    string                                `json:"sender"`
		Type      string                                `json:"type"`
		MessageID string                                `json:"message_id"`
		Messages  map[string]map[string]json.RawMessage `json:"messages"`
	}
	if json.Unmarshal(content, &e) != nil || !matrix.ValidUserID(e.Sender) || matrix.ServerOf(e.Sender) != origin ||
		e.MessageID == "" || len(e.MessageID) > 255 || e.Type == "" || len(e.Type) > 255 {
		return
	}
	local := map[string]map[string]json.RawMessage{}
	for u, devs := range e.Messages {
		if s.isLocal(u) && matrix.ValidUserID(u) {
			local[u] = devs
		}
	}
	// A malformed message refuses the EDU (nothing stored); the sender's
	// server has its answer to the transaction already.
	_ = s.SendToDevice(ctx, e.Sender, "", e.Type, e.MessageID, local)
}
