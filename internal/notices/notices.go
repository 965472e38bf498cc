// Package notices owns server notices: messages from the server's operators
// to one user — maintenance, terms, a security warning — delivered in a room
// the server keeps for that user, whose other member is a system user no
// one can log in as. Operators send them with Synapse's admin API
// (POST/PUT /_synapse/admin/v1/send_server_notice), which clientapi serves.
//
// The user is invited to the room and cannot reject the invite (403
// M_CANNOT_LEAVE_SERVER_NOTICE_ROOM, as Synapse answers); once joined they
// may leave, and the next notice invites them back to the same room. The
// room carries the m.server_notice tag (Client-Server API, "Server
// Notices") so clients show it apart.
package notices

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"conclave/internal/accountdata"
	"conclave/internal/matrix"
	"conclave/internal/room"
	"conclave/internal/store"
)

// Tag is the room tag of server notice rooms (Client-Server API, "Server
// Notices").
const Tag = "m.server_notice"

// ErrCannotLeave is the errcode of a rejected invite to a notice room.
const ErrCannotLeave = "M_CANNOT_LEAVE_SERVER_NOTICE_ROOM"

// Store is what notices keeps and reads.
type Store interface {
	store.ServerNotices
	GetUser(ctx context.Context, userID string) (*store.User, error)
	CreateUser(ctx context.Context, u *store.User) error
}

// Service sends server notices.
type Service struct {
	Rooms       *room.Service
	Store       Store
	AccountData *accountdata.Service
	// SystemUser sends the notices (@notices:server by default).
	SystemUser string
	// RoomName names the notice rooms.
	RoomName string

	// mu makes a user's notice room once per process (notices are rare;
	// two processes sending a user's very first notice at the same moment
	// could make two rooms, of which the later is kept).
	mu sync.Mutex
}

// EnsureSystemUser creates the system user, without a password, if it does
// not exist. A user of that name that can log in is not taken over: the
// operator must pick another localpart.
func (s *Service) EnsureSystemUser(ctx context.Context) error {
	u, err := s.Store.GetUser(ctx, s.SystemUser)
	switch {
	case err == nil && u.PasswordHash != "":
		return fmt.Errorf("notices: %s is an account people log in to; choose another server notices localpart", s.SystemUser)
	case err == nil:
		return nil
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	err = s.Store.CreateUser(ctx, &store.User{UserID: s.SystemUser})
	if errors.Is(err, store.ErrConflict) {
		return nil // another process made it
	}
	return err
}

// Notice is one notice to send.
type Notice struct {
	UserID string
	// Type is the event type (m.room.message unless given); StateKey makes
	// it a state event.
	Type     string
	StateKey *string
	Content  json.RawMessage
	// TxnID makes a repeated request answer the first event (PUT …/{txnId}).
	TxnID string
}

// Send delivers a notice and returns its event ID.
func (s *Service) Send(ctx context.Context, n Notice) (string, error) {
	if !matrix.ValidUserID(n.UserID) || matrix.ServerOf(n.UserID) != matrix.ServerOf(s.SystemUser) {
		return "", matrix.InvalidParam("Server notices can only be sent to users of this server")
	}
	if n.UserID == s.SystemUser {
		return "", matrix.InvalidParam("The system user does not receive server notices")
	}
	u, err := s.Store.GetUser(ctx, n.UserID)
	if errors.Is(err, store.ErrNotFound) {
		return "", matrix.NotFound("Unknown user %s", n.UserID)
	}
	if err != nil {
		return "", err
	}
	if u.Deactivated {
		return "", matrix.InvalidParam("User %s is deactivated", n.UserID)
	}
	roomID, err := s.roomFor(ctx, n.UserID)
	if err != nil {
		return "", err
	}
	typ := n.Type
	if typ == "" {
		typ = "m.room.message"
	}
	return s.Rooms.Send(ctx, &room.SendRequest{RoomID: roomID, Sender: s.SystemUser, TxnID: n.TxnID, Type: typ, StateKey: n.StateKey, Content: n.Content})
}

// IsNoticeRoom tells whether roomID is userID's server notice room.
func (s *Service) IsNoticeRoom(ctx context.Context, userID, roomID string) bool {
	r, err := s.Store.NoticeRoom(ctx, userID)
	return err == nil && r == roomID
}

// roomFor returns the user's notice room with the user invited or joined:
// made on the first notice, the user invited again after they left.
func (s *Service) roomFor(ctx context.Context, userID string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	roomID, err := s.Store.NoticeRoom(ctx, userID)
	if err == nil {
		m, err := s.Rooms.Membership(ctx, roomID, s.SystemUser)
		if err != nil || m != "join" {
			roomID = "" // the room is gone for the system user: a new one
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	if roomID == "" {
		name := s.RoomName
		roomID, err = s.Rooms.CreateRoom(ctx, &room.CreateRequest{
			Creator: s.SystemUser, Preset: "private_chat", Name: &name, ServerNotice: true,
			// Only the server speaks there.
			PowerLevelOverride: map[string]json.RawMessage{"events_default": json.RawMessage("100"), "invite": json.RawMessage("100")},
		})
		if err != nil {
			return "", err
		}
		if err := s.Store.SetNoticeRoom(ctx, userID, roomID); err != nil {
			return "", err
		}
	}
	m, err := s.Rooms.Membership(ctx, roomID, userID)
	if err != nil {
		return "", err
	}
	if m != "join" && m != "invite" {
		if _, err := s.Rooms.SetMembership(ctx, &room.MembershipRequest{RoomID: roomID, Sender: s.SystemUser, Target: userID, Membership: "invite"}); err != nil {
			return "", err
		}
	}
	if err := s.AccountData.SetTag(ctx, userID, userID, roomID, Tag, json.RawMessage(`{}`)); err != nil {
		return "", err
	}
	return roomID, nil
}

// CannotLeave is the error for a user rejecting their notice room's invite.
func CannotLeave() error {
	return matrix.Errorf(http.StatusForbidden, ErrCannotLeave, "You cannot reject this invite: it is the server notices room")
}
