package homeserver

import (
	"context"

	"conclave/internal/event"
	"conclave/internal/matrix"
	"conclave/internal/push"
	"conclave/internal/room"
	"conclave/internal/store"
)

// wirePush has the room writer evaluate every local recipient's push rules
// for every event it writes, local or received (push.Bulk): the
// notifications are written in the event's transaction and drive /sync's
// unread counts, GET /notifications and the pushers.
func (hs *Homeserver) wirePush() {
	hs.Push.Notifs = hs.Store
	server := hs.Config.ServerName
	bulk := push.NewBulk(hs.Push, func(u string) bool { return matrix.ServerOf(u) == server }, hs.Changes, hs.Log)
	hs.Rooms.PushActions = func(ctx context.Context, v room.PushView, pdu *event.PDU, membership string) []store.PushAction {
		return bulk.Actions(ctx, v, &push.EventInfo{Sender: pdu.Sender, Type: pdu.Type, StateKey: pdu.StateKey, Membership: membership, JSON: pdu.Raw})
	}
}
