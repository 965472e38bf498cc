package keys

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"sort"
	"strings"

	"conclave/internal/changes"

	"conclave/internal/matrix"
	"conclave/internal/store"
)

// SendToDevice stores a to-device message batch from (sender, senderDevice)
// for local devices; "*" as device ID means every device of the user. A
// repeated transaction ID from the same device is accepted and does nothing.
// Messages for unknown users or devices are dropped, as Synapse does;
// messages for users on other servers go to their servers in one
// m.direct_to_device EDU per server, queued in the transaction that stores
// the local ones and records the transaction ID: a retry after a crash (or
// an error) finds both committed or neither, so nothing a client sent is
// lost, and nothing is sent twice.
func (s *Service) SendToDevice(ctx context.Context, sender, senderDevice, evType, txnID string, messages map[string]map[string]json.RawMessage) error {
	if evType == "" || len(evType) > 255 {
		return matrix.InvalidParam("Invalid event type")
	}
	if len(txnID) > 255 {
		return matrix.InvalidParam("Transaction ID is too long")
	}
	// A NUL cannot be stored (PostgreSQL text): refused here, not failed
	// in the store (a 500, and, for a message_id from another server, a
	// transaction that would fail at every retry).
	if strings.IndexByte(txnID, 0) >= 0 {
		return matrix.InvalidParam("Transaction ID is not valid")
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
			if strings.IndexByte(d, 0) >= 0 {
				continue // no such device: dropped like any unknown one
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
	fed, servers, err := s.remoteToDevice(sender, evType, remote)
	if err != nil {
		return err
	}
	w := s.Changes.Begin(keys...)
	recipients, dup, err := s.store.SendToDevice(w.Context(ctx), sender, senderDevice, txnID, msgs, fed)
	w.Done(0)
	if err != nil {
		return err
	}
	if dup {
		// A retry: the first attempt may have committed and then failed
		// before waking anyone (its answer lost), so the recipients are
		// woken again; a needless wake costs one look at their queue.
		recipients = recipients[:0]
		for _, k := range keys {
			recipients = append(recipients, k.Subject)
		}
	}
	if s.NotifyToDevice != nil && len(recipients) > 0 {
		s.NotifyToDevice(recipients...)
	}
	// Woken on a duplicate too: the first attempt may have committed and
	// then failed before waking the sender (it would otherwise wait for
	// its next scan of the queues).
	if len(servers) > 0 {
		s.Fed.Remote.Committed(servers)
	}
	return nil
}

// remoteToDevice builds one m.direct_to_device EDU per server (spec:
// Server-Server API, "Send-to-device messaging"), each with its own random
// message_id, as queue entries for the store write, and lists the servers.
func (s *Service) remoteToDevice(sender, evType string, remote map[string]map[string]map[string]json.RawMessage) ([]store.FedEnqueue, []string, error) {
	servers := make([]string, 0, len(remote))
	for srv := range remote {
		servers = append(servers, srv)
	}
	sort.Strings(servers)
	var fed []store.FedEnqueue
	var queued []string
	for _, srv := range servers {
		b, err := json.Marshal(map[string]any{"sender": sender, "type": evType, "message_id": randomID(), "messages": remote[srv]})
		if err != nil {
			return nil, nil, err
		}
		e, ok, err := s.Fed.Remote.EDUEntry([]string{srv}, "m.direct_to_device", b)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			fed = append(fed, e)
			queued = append(queued, srv)
		}
	}
	return fed, queued, nil
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
// sender's transaction can collide with. A malformed EDU is dropped; an
// error means the messages could not be stored (nothing was): the
// transaction must fail, so that its sender sends it again.
func (s *Service) HandleDirectToDevice(ctx context.Context, origin string, content json.RawMessage) error {
	var e struct {
		Sender    string                                `json:"sender"`
		Type      string                                `json:"type"`
		MessageID string                                `json:"message_id"`
		Messages  map[string]map[string]json.RawMessage `json:"messages"`
	}
	if json.Unmarshal(content, &e) != nil || !matrix.ValidUserID(e.Sender) || matrix.ServerOf(e.Sender) != origin ||
		e.MessageID == "" || len(e.MessageID) > 255 || e.Type == "" || len(e.Type) > 255 {
		return nil
	}
	local := map[string]map[string]json.RawMessage{}
	for u, devs := range e.Messages {
		if s.isLocal(u) && matrix.ValidUserID(u) {
			local[u] = devs
		}
	}
	// A malformed message refuses the EDU (nothing stored): sending it
	// again would change nothing.
	err := s.SendToDevice(ctx, e.Sender, "", e.Type, e.MessageID, local)
	var merr *matrix.Error
	if errors.As(err, &merr) {
		return nil
	}
	return err
}
