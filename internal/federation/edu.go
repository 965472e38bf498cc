package federation

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"conclave/internal/matrix"
)

// EDUs: typing, read receipts and presence, both ways (Server-Server API,
// "Typing Notifications", "Receipts", "Presence"). An EDU about a user is
// taken only from that user's server, for a room the user is joined to here
// (presence: for a user sharing a room with a user of this server).

// RemoteTypingTimeout is how long a typing notification from another
// server lasts unless renewed (the EDU carries no timeout; Synapse uses the
// same minute).
const RemoteTypingTimeout = 60 * time.Second

// EDUSinks are where received EDUs go.
type EDUSinks struct {
	Typing  func(ctx context.Context, roomID, userID string, typing bool, timeout time.Duration) error
	Receipt func(ctx context.Context, roomID, userID, eventID, threadID string, ts int64) error
	// Presence takes another server's user's presence; it checks the user
	// shares a room with a user of this server.
	Presence func(ctx context.Context, p Presence) error
	// E2EE takes m.device_list_update, m.signing_key_update and
	// m.direct_to_device (e2ee.go); nil: ignored. An error: the EDU could
	// not be kept (to-device messages, which must not be lost), and the
	// transaction fails.
	E2EE func(ctx context.Context, origin, eduType string, content json.RawMessage) error
}

// Presence is one user's presence as the m.presence EDU carries it.
type Presence struct {
	UserID          string `json:"user_id"`
	Presence        string `json:"presence"`
	StatusMsg       string `json:"status_msg,omitempty"`
	LastActiveAgo   int64  `json:"last_active_ago"`
	CurrentlyActive bool   `json:"currently_active"`
}

// maxPresencePush bounds the users one m.presence EDU may carry.
const maxPresencePush = 1000

// HandleEDU takes one EDU of a transaction from origin (an EDUHandler).
// Typing, receipts and presence are best effort; only the E2EE sink fails
// an EDU.
func (s *Service) HandleEDU(ctx context.Context, origin, eduType string, content json.RawMessage) error {
	switch eduType {
	case "m.device_list_update", "m.signing_key_update", "m.direct_to_device":
		if s.Sinks.E2EE != nil {
			return s.Sinks.E2EE(ctx, origin, eduType, content)
		}
	case "m.typing":
		var c struct {
			RoomID string `json:"room_id"`
			UserID string `json:"user_id"`
			Typing bool   `json:"typing"`
		}
		if json.Unmarshal(content, &c) != nil || matrix.ServerOf(c.UserID) != origin || s.Sinks.Typing == nil || !s.Rooms.ServerAllowed(ctx, c.RoomID, origin) {
			return nil
		}
		if err := s.Sinks.Typing(ctx, c.RoomID, c.UserID, c.Typing, RemoteTypingTimeout); err != nil {
			s.Log.Debug("federation: typing EDU refused", "origin", origin, "room", c.RoomID, "err", err)
		}
	case "m.presence":
		var c struct {
			Push []json.RawMessage `json:"push"`
		}
		if json.Unmarshal(content, &c) != nil || s.Sinks.Presence == nil {
			return nil
		}
		for i, raw := range c.Push {
			if i == maxPresencePush {
				return nil // bounded work per EDU
			}
			var p Presence
			if json.Unmarshal(raw, &p) != nil || matrix.ServerOf(p.UserID) != origin || p.LastActiveAgo < 0 {
				continue
			}
			if err := s.Sinks.Presence(ctx, p); err != nil {
				s.Log.Debug("federation: presence EDU refused", "origin", origin, "user", p.UserID, "err", err)
			}
		}
	case "m.receipt":
		// {room ID: {receipt type: {user ID: {event_ids, data: {ts, thread_id}}}}}
		var c map[string]map[string]map[string]struct {
			EventIDs []string `json:"event_ids"`
			Data     struct {
				TS       int64  `json:"ts"`
				ThreadID string `json:"thread_id"`
			} `json:"data"`
		}
		if json.Unmarshal(content, &c) != nil || s.Sinks.Receipt == nil {
			return nil
		}
		n := 0
		for roomID, byType := range c {
			if !s.Rooms.ServerAllowed(ctx, roomID, origin) {
				continue
			}
			for typ, byUser := range byType {
				if typ != "m.read" {
					continue // only public read receipts travel
				}
				for userID, r := range byUser {
					if matrix.ServerOf(userID) != origin || len(r.EventIDs) == 0 {
						continue
					}
					if n++; n > 1000 {
						return nil // bounded work per EDU
					}
					if err := s.Sinks.Receipt(ctx, roomID, userID, r.EventIDs[0], r.Data.ThreadID, r.Data.TS); err != nil {
						s.Log.Debug("federation: receipt EDU refused", "origin", origin, "room", roomID, "err", err)
					}
				}
			}
		}
	}
	return nil
}

// SendTyping tells the other servers in the room that a user of this server
// started or stopped typing.
func (s *Service) SendTyping(ctx context.Context, roomID, userID string, typing bool) {
	content, _ := json.Marshal(map[string]any{"room_id": roomID, "user_id": userID, "typing": typing})
	s.sendEDU(ctx, roomID, "m.typing", content)
}

// SendReceipt tells the other servers in the room of a user's public read
// receipt.
func (s *Service) SendReceipt(ctx context.Context, roomID, userID, eventID, threadID string, ts int64) {
	data := map[string]any{"ts": ts}
	if threadID != "" {
		data["thread_id"] = threadID
	}
	content, _ := json.Marshal(map[string]any{roomID: map[string]any{"m.read": map[string]any{userID: map[string]any{"event_ids": []string{eventID}, "data": data}}}})
	s.sendEDU(ctx, roomID, "m.receipt", content)
}

// SendPresence tells servers (those sharing a room with the user) of a user
// of this server's presence: one user per EDU, so the queue keeps only the
// newest for each (fedsender's coalescing).
func (s *Service) SendPresence(ctx context.Context, servers []string, p Presence) {
	if s.Outbox == nil {
		return
	}
	var dests []string
	for _, srv := range servers {
		if srv != s.ServerName && srv != "" && !slices.Contains(dests, srv) {
			dests = append(dests, srv)
		}
	}
	if len(dests) == 0 {
		return
	}
	content, _ := json.Marshal(map[string]any{"push": []Presence{p}})
	if err := s.Outbox.EnqueueEDU(context.WithoutCancel(ctx), dests, "m.presence", content); err != nil {
		s.Log.Error("federation: queueing an EDU", "type", "m.presence", "user", p.UserID, "err", err)
	}
}

func (s *Service) sendEDU(ctx context.Context, roomID, eduType string, content []byte) {
	if s.Outbox == nil {
		return
	}
	servers, err := s.Rooms.ServersInRoom(ctx, roomID)
	if err != nil {
		return
	}
	dests := servers[:0:0]
	for _, srv := range servers {
		if srv != s.ServerName {
			dests = append(dests, srv)
		}
	}
	if len(dests) == 0 {
		return
	}
	if err := s.Outbox.EnqueueEDU(context.WithoutCancel(ctx), dests, eduType, content); err != nil {
		s.Log.Error("federation: queueing an EDU", "type", eduType, "room", roomID, "err", err)
	}
}
