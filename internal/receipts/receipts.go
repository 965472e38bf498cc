// Package receipts handles read receipts and read markers (spec:
// Client-Server API, "Receipts" and "Fully read markers"), and builds the
// m.receipt ephemeral events /sync sends.
package receipts

import (
	"conclave/internal/changes"
	"context"
	"encoding/json"
	"errors"
	"time"

	"conclave/internal/accountdata"
	"conclave/internal/matrix"
	"conclave/internal/store"
)

// Receipt types.
const (
	TypeRead        = "m.read"
	TypeReadPrivate = "m.read.private"
	TypeFullyRead   = "m.fully_read"
	// ThreadMain is the thread_id of receipts on the main timeline.
	ThreadMain = "main"
)

// Store is what the service needs.
type Store interface {
	PutReceipt(ctx context.Context, r *store.Receipt) (int64, error)
	GetReceipt(ctx context.Context, roomID, userID, typ, threadID string) (*store.Receipt, error)
	ReceiptsSince(ctx context.Context, roomIDs []string, pos int64) ([]store.Receipt, error)
	GetEvent(ctx context.Context, eventID string) (*store.StoredEvent, error)
	GetAccountData(ctx context.Context, userID, roomID, typ string) (json.RawMessage, error)
}

// Service is the receipts service.
type Service struct {
	store       Store
	accountData *accountdata.Service
	now         func() time.Time

	// IsJoined reports whether userID is joined to roomID. Required.
	IsJoined func(ctx context.Context, roomID, userID string) (bool, error)
	// NotifyRoom, if set, is called after a public receipt changed in roomID:
	// every member's /sync must wake.
	NotifyRoom func(roomID string)
	// Sent, if set, is told of every public receipt stored (federation
	// sends this server's users' to the other servers in the room).
	Sent func(ctx context.Context, roomID, userID, eventID, threadID string, ts int64)
	// NotifyUser, if set, is called after a private receipt of userID
	// changed: only the owner sees it. (m.fully_read goes through the account
	// data service's Notify.)
	NotifyUser func(userID string)
	// Changes, if set, has every receipt write marked before it commits.
	Changes *changes.Tracker
}

// New returns the service; fully read markers are stored as room account
// data through ad.
func New(st Store, ad *accountdata.Service) *Service {
	return &Service{store: st, accountData: ad, now: time.Now}
}

// ValidThreadID reports whether id may be a receipt's thread_id: "main" or
// an event ID (spec: "Threaded read receipts").
func ValidThreadID(id string) bool { return id == ThreadMain || matrix.ValidEventID(id) }

// Post handles POST /rooms/{roomId}/receipt/{receiptType}/{eventId}.
// threadID is "" for an unthreaded receipt.
func (s *Service) Post(ctx context.Context, userID, roomID, typ, eventID, threadID string) error {
	switch typ {
	case TypeRead, TypeReadPrivate, TypeFullyRead:
	default:
		return matrix.InvalidParam("Receipt type must be one of m.read, m.read.private, m.fully_read")
	}
	if threadID != "" {
		if typ == TypeFullyRead {
			return matrix.InvalidParam("thread_id is not allowed with m.fully_read")
		}
		if !ValidThreadID(threadID) {
			return matrix.InvalidParam(`thread_id must be "main" or an event ID`)
		}
	}
	ev, err := s.check(ctx, userID, roomID, eventID)
	if err != nil {
		return err
	}
	if typ == TypeFullyRead {
		return s.setFullyRead(ctx, userID, roomID, ev)
	}
	return s.putReceipt(ctx, userID, roomID, typ, threadID, ev, 0)
}

// SetReadMarkers handles POST /rooms/{roomId}/read_markers; empty IDs are
// left alone. Every given ID is checked before anything is stored.
func (s *Service) SetReadMarkers(ctx context.Context, userID, roomID, fullyRead, read, readPrivate string) error {
	if !matrix.ValidRoomID(roomID) {
		return matrix.InvalidParam("Invalid room ID")
	}
	type mark struct {
		typ, id string
		ev      *store.StoredEvent
	}
	marks := []*mark{{typ: TypeFullyRead, id: fullyRead}, {typ: TypeRead, id: read}, {typ: TypeReadPrivate, id: readPrivate}}
	for _, m := range marks {
		if m.id == "" {
			continue
		}
		ev, err := s.check(ctx, userID, roomID, m.id)
		if err != nil {
			return err
		}
		m.ev = ev
	}
	for _, m := range marks {
		if m.ev == nil {
			continue
		}
		var err error
		if m.typ == TypeFullyRead {
			err = s.setFullyRead(ctx, userID, roomID, m.ev)
		} else {
			err = s.putReceipt(ctx, userID, roomID, m.typ, "", m.ev, 0)
		}
		if err != nil {
			return err
		}
	}
	if fullyRead == "" && read == "" && readPrivate == "" {
		// Nothing to do, but the caller must still be in the room.
		_, err := s.joined(ctx, userID, roomID)
		return err
	}
	return nil
}

func (s *Service) joined(ctx context.Context, userID, roomID string) (bool, error) {
	if s.IsJoined == nil {
		return false, matrix.Forbidden("Receipts are not available")
	}
	ok, err := s.IsJoined(ctx, roomID, userID)
	if err != nil {
		return false, err
	}
	if !ok {
		return false, matrix.Forbidden("You are not joined to this room")
	}
	return true, nil
}

// check validates the IDs, membership and that the event is in the room.
func (s *Service) check(ctx context.Context, userID, roomID, eventID string) (*store.StoredEvent, error) {
	if !matrix.ValidRoomID(roomID) {
		return nil, matrix.InvalidParam("Invalid room ID")
	}
	if !matrix.ValidEventID(eventID) {
		return nil, matrix.InvalidParam("Invalid event ID")
	}
	if _, err := s.joined(ctx, userID, roomID); err != nil {
		return nil, err
	}
	ev, err := s.store.GetEvent(ctx, eventID)
	if errors.Is(err, store.ErrNotFound) || err == nil && ev.RoomID != roomID {
		return nil, matrix.NotFound("Event not found in this room")
	}
	return ev, err
}

// putReceipt stores a receipt unless it would move the user's receipt for
// that thread backwards (as Synapse: an older receipt is accepted and ignored).
func (s *Service) putReceipt(ctx context.Context, userID, roomID, typ, threadID string, ev *store.StoredEvent, ts int64) error {
	old, err := s.store.GetReceipt(ctx, roomID, userID, typ, threadID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if old != nil {
		if old.EventID == ev.EventID {
			return nil
		}
		if prev, err := s.store.GetEvent(ctx, old.EventID); err == nil && prev.Pos > ev.Pos {
			return nil
		}
	}
	if ts == 0 {
		ts = s.now().UnixMilli()
	}
	w := s.Changes.Begin(changes.Key{Kind: changes.Receipts, Subject: roomID})
	pos, err := s.store.PutReceipt(w.Context(ctx), &store.Receipt{RoomID: roomID, UserID: userID, Type: typ, ThreadID: threadID, EventID: ev.EventID, TS: ts})
	w.Done(pos)
	if err != nil {
		return err
	}
	if typ == TypeReadPrivate {
		if s.NotifyUser != nil {
			s.NotifyUser(userID)
		}
	} else {
		if s.NotifyRoom != nil {
			s.NotifyRoom(roomID)
		}
		if s.Sent != nil {
			s.Sent(ctx, roomID, userID, ev.EventID, threadID, ts)
		}
	}
	return nil
}

// Remote stores a public read receipt another server sent for its user
// (the user must be joined to the room and the event known here).
func (s *Service) Remote(ctx context.Context, roomID, userID, eventID, threadID string, ts int64) error {
	if threadID != "" && !ValidThreadID(threadID) {
		return matrix.InvalidParam("bad thread_id")
	}
	ev, err := s.check(ctx, userID, roomID, eventID)
	if err != nil {
		return err
	}
	return s.putReceipt(ctx, userID, roomID, TypeRead, threadID, ev, ts)
}

// setFullyRead moves the m.fully_read room account data forward to ev.
func (s *Service) setFullyRead(ctx context.Context, userID, roomID string, ev *store.StoredEvent) error {
	raw, err := s.store.GetAccountData(ctx, userID, roomID, TypeFullyRead)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err == nil {
		var old struct {
			EventID string `json:"event_id"`
		}
		if json.Unmarshal(raw, &old) == nil && old.EventID != "" {
			if old.EventID == ev.EventID {
				return nil
			}
			if prev, err := s.store.GetEvent(ctx, old.EventID); err == nil && prev.Pos > ev.Pos {
				return nil
			}
		}
	}
	content, _ := json.Marshal(map[string]string{"event_id": ev.EventID})
	return s.accountData.PutInternal(ctx, userID, roomID, TypeFullyRead, content)
}

// Since returns the receipts in roomIDs changed after pos, for /sync. Pass
// the rows to EventContent per room.
func (s *Service) Since(ctx context.Context, roomIDs []string, pos int64) ([]store.Receipt, error) {
	return s.store.ReceiptsSince(ctx, roomIDs, pos)
}

// ReceiptInfo is one user's receipt in the m.receipt event content.
type ReceiptInfo struct {
	TS       int64  `json:"ts"`
	ThreadID string `json:"thread_id,omitempty"`
}

// Content is the content of an m.receipt event:
// event ID -> receipt type -> user ID -> receipt.
type Content map[string]map[string]map[string]ReceiptInfo

// ByRoom groups receipt rows into m.receipt event contents per room, as
// viewer may see them: other users' m.read.private receipts are left out
// (spec: "Private read receipts"). Rooms with nothing visible are absent.
// Rows later in the slice win (ReceiptsSince returns them in stream order).
func ByRoom(rows []store.Receipt, viewer string) map[string]Content {
	out := map[string]Content{}
	for _, r := range rows {
		if r.Type == TypeReadPrivate && r.UserID != viewer {
			continue
		}
		c := out[r.RoomID]
		if c == nil {
			c = Content{}
			out[r.RoomID] = c
		}
		byType := c[r.EventID]
		if byType == nil {
			byType = map[string]map[string]ReceiptInfo{}
			c[r.EventID] = byType
		}
		byUser := byType[r.Type]
		if byUser == nil {
			byUser = map[string]ReceiptInfo{}
			byType[r.Type] = byUser
		}
		if prev, ok := byUser[r.UserID]; ok && prev.ThreadID == "" && r.ThreadID != "" {
			// One entry per user, type and event: an unthreaded receipt
			// wins over a threaded one for the same event, whatever their
			// order (MSC4102; Complement's TestThreadReceiptsInSyncMSC4102).
			continue
		}
		byUser[r.UserID] = ReceiptInfo{TS: r.TS, ThreadID: r.ThreadID}
	}
	return out
}

// Event wraps a content as the m.receipt ephemeral event.
func Event(c Content) map[string]any {
	return map[string]any{"type": "m.receipt", "content": c}
}
