package push

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"

	"conclave/internal/matrix"
	"conclave/internal/store"
)

// NotificationStore is what GET /notifications reads.
type NotificationStore interface {
	store.Notifications
	GetEvents(ctx context.Context, eventIDs []string) ([]store.StoredEvent, error)
}

// Bounds of GET /notifications (Synapse's default page is 50).
const (
	DefaultNotificationsLimit = 50
	MaxNotificationsLimit     = 1000
)

// NotificationJSON is one entry of GET /notifications.
type NotificationJSON struct {
	Actions []json.RawMessage `json:"actions"`
	Event   json.RawMessage   `json:"event"`
	Read    bool              `json:"read"`
	RoomID  string            `json:"room_id"`
	TS      int64             `json:"ts"`
}

// NotificationsPage is the body of GET /notifications.
type NotificationsPage struct {
	NextToken     string             `json:"next_token,omitempty"`
	Notifications []NotificationJSON `json:"notifications"`
}

// Notifications serves GET /_matrix/client/v3/notifications: the user's
// notifications, newest first, from the opaque token from (""), at most
// limit (0: the default), only highlights when only is "highlight".
// format renders stored events for the user (the room service's client
// format). next_token is set when the page is full (spec: absent when
// there are no more results).
func (s *Service) Notifications(ctx context.Context, userID, from string, limit int, only string,
	format func(ctx context.Context, rows []store.StoredEvent) ([]json.RawMessage, error)) (*NotificationsPage, error) {
	var before int64
	if from != "" {
		n, err := strconv.ParseInt(from, 10, 64)
		if err != nil || n <= 0 {
			return nil, matrix.InvalidParam("Invalid from token")
		}
		before = n
	}
	switch {
	case limit < 0:
		return nil, matrix.InvalidParam("limit must not be negative")
	case limit == 0:
		limit = DefaultNotificationsLimit
	case limit > MaxNotificationsLimit:
		limit = MaxNotificationsLimit
	}
	if s.Notifs == nil {
		return &NotificationsPage{Notifications: []NotificationJSON{}}, nil
	}
	ns, err := s.Notifs.NotificationsOf(ctx, userID, before, limit, only == "highlight")
	if err != nil {
		return nil, err
	}
	page := &NotificationsPage{Notifications: []NotificationJSON{}}
	if len(ns) == 0 {
		return page, nil
	}
	ids := make([]string, len(ns))
	for i, n := range ns {
		ids[i] = n.EventID
	}
	rows, err := s.Notifs.GetEvents(ctx, ids)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]store.StoredEvent, len(rows))
	for _, r := range rows {
		byID[r.EventID] = r
	}
	ordered := make([]store.StoredEvent, 0, len(ns))
	kept := make([]store.Notification, 0, len(ns))
	for _, n := range ns {
		if r, ok := byID[n.EventID]; ok {
			ordered = append(ordered, r)
			kept = append(kept, n)
		}
	}
	evs, err := format(ctx, ordered)
	if err != nil {
		return nil, err
	}
	if len(evs) != len(kept) {
		return nil, errors.New("push: formatting notifications' events lost some")
	}
	for i, n := range kept {
		var acts []json.RawMessage
		if json.Unmarshal(n.Actions, &acts) != nil || acts == nil {
			acts = []json.RawMessage{}
		}
		page.Notifications = append(page.Notifications, NotificationJSON{Actions: acts, Event: evs[i], Read: n.Read, RoomID: n.RoomID, TS: n.TS})
	}
	if len(ns) == limit {
		page.NextToken = strconv.FormatInt(ns[len(ns)-1].Pos, 10)
	}
	return page, nil
}
