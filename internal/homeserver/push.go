package homeserver

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"sync/atomic"

	"conclave/internal/event"
	"conclave/internal/matrix"
	"conclave/internal/outbound"
	"conclave/internal/push"
	"conclave/internal/pushsender"
	"conclave/internal/room"
	"conclave/internal/store"
)

// maxBadgeRooms bounds the rooms counted for a push's unread badge.
const maxBadgeRooms = 1000

// wirePush has the room writer evaluate every local recipient's push rules
// for every event it writes, local or received (push.Bulk): the
// notifications are written in the event's transaction and drive /sync's
// unread counts, GET /notifications and the pushers (internal/pushsender,
// woken after each commit that stored notifications).
func (hs *Homeserver) wirePush() {
	hs.Push.Notifs = hs.Store
	server := hs.Config.ServerName
	bulk := push.NewBulk(hs.Push, func(u string) bool { return matrix.ServerOf(u) == server }, hs.Changes, hs.Log)
	bulk.Ignored = hs.AccountData.IgnoredUsers
	var stored atomic.Bool
	hs.Rooms.PushActions = func(ctx context.Context, v room.PushView, pdu *event.PDU, membership string) []store.PushAction {
		acts := bulk.Actions(ctx, v, &push.EventInfo{Sender: pdu.Sender, Type: pdu.Type, StateKey: pdu.StateKey, Membership: membership, JSON: pdu.Raw})
		if len(acts) > 0 {
			stored.Store(true)
		}
		return acts
	}

	// Push gateways: the same trust as federation (system roots and
	// tls_ca_cert), no private addresses unless push_allow_private_addresses.
	var cas []*x509.Certificate
	if hs.TLS != nil {
		cas = hs.TLS.CACerts
	}
	out := outbound.New(outbound.Config{ExtraCAs: cas, AllowPrivate: hs.Config.PushAllowPrivate})
	var owner [8]byte
	rand.Read(owner[:])
	hs.PushSender = pushsender.New(hs.Store, pushsender.Options{HTTP: out.HTTP, Owner: hex.EncodeToString(owner[:]), Log: hs.Log,
		Describe: hs.describeForPush, Badge: hs.pushBadge, Exclusive: hs.cluster == nil,
		Mail: hs.Mailer, EmailDelay: hs.Config.EmailNotificationDelay.Duration, EmailServer: hs.Config.ServerName, EmailLink: hs.Config.PublicBaseURL})
	if hs.Mailer != nil {
		// E-mail pushers mail to an address bound to the user (mail.go).
		hs.Push.EmailOwner = hs.Threepids.Owner
	}
	if prev := hs.Rooms.Notify; prev != nil {
		hs.Rooms.Notify = func(n room.Notice) {
			prev(n)
			if stored.Swap(false) {
				hs.PushSender.Wake()
			}
		}
	}
}

// describeForPush gives a push's full format the room's name and alias and
// the sender's display name there.
func (hs *Homeserver) describeForPush(ctx context.Context, roomID, senderID string) pushsender.RoomInfo {
	var info pushsender.RoomInfo
	str := func(typ, key, field string) string {
		ev, err := hs.Rooms.CurrentStateEvent(ctx, roomID, typ, key)
		if err != nil || ev == nil {
			return ""
		}
		var m map[string]any
		json.Unmarshal(ev.Content, &m)
		s, _ := m[field].(string)
		return s
	}
	info.RoomName = str("m.room.name", "", "name")
	info.RoomAlias = str("m.room.canonical_alias", "", "alias")
	info.SenderDisplayName = str("m.room.member", senderID, "displayname")
	return info
}

// pushBadge is a push's counts.unread: like Synapse's default
// (push.group_unread_count_by_room), the number of rooms with unread
// notifications.
func (hs *Homeserver) pushBadge(ctx context.Context, userID string) int {
	ms, err := hs.Store.UserMemberships(ctx, userID)
	if err != nil {
		return 0
	}
	upto, err := hs.Store.MaxStreamPos(ctx)
	if err != nil {
		return 0
	}
	n, seen := 0, 0
	for _, m := range ms {
		if m.Membership != "join" {
			continue
		}
		if seen++; seen > maxBadgeRooms {
			break
		}
		u, err := hs.Store.UnreadCounts(ctx, m.RoomID, userID, 0, upto)
		if err != nil {
			continue
		}
		if c, _ := u.Total(); c > 0 {
			n++
		}
	}
	return n
}
