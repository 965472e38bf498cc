package syncer

import (
	"context"

	"conclave/internal/changes"
	"conclave/internal/lru"
	"conclave/internal/store"
)

// maxUnreadEntries bounds the unread-count cache (least recently used
// entries are forgotten; a forgotten entry costs one full count).
const maxUnreadEntries = 200_000

// unreadCache remembers, per user and room, the counts up to a stream
// position, so that each /sync counts only the notifications that arrived
// since the last one instead of every unread one again (the full count was a
// third of the server's CPU in the messages load test). An entry is valid
// while the user's read point is unchanged; the store reports the read point
// with every count, so a moved receipt (any thread) or membership starts a
// fresh count.
//
// A redaction of an already counted event does not lower a cached count
// until the read point moves; Synapse's counts behave the same way.
type unreadCache struct {
	m *lru.Cache[unreadKey, unreadEntry]
}

func (c *unreadCache) init() { c.m = lru.New[unreadKey, unreadEntry](maxUnreadEntries) }

type unreadKey struct{ user, room string }

type unreadEntry struct {
	upto int64
	u    store.Unread
}

func (c *unreadCache) counts(ctx context.Context, st Store, roomID, userID string, upto int64) (store.Unread, error) {
	k := unreadKey{userID, roomID}
	e, ok := c.m.Get(k)
	if ok && e.upto <= upto {
		more, err := st.UnreadCounts(ctx, roomID, userID, e.upto, upto)
		if err != nil {
			return store.Unread{}, err
		}
		if more.ReadPos == e.u.ReadPos {
			u := e.u.Add(more)
			c.put(k, upto, u)
			return u, nil
		}
	}
	u, err := st.UnreadCounts(ctx, roomID, userID, 0, upto)
	if err != nil {
		return store.Unread{}, err
	}
	c.put(k, upto, u)
	return u, nil
}

// extend counts from memory: the cached counts up to some position e plus
// the user's notifications in (e, upto] that the room service kept
// (recent: room.Service.RecentPush), when the change tracker shows that no
// receipt in the room and no membership of the user changed in (e, upto].
// ok is false when any of it is unknown; the caller asks the store.
func (c *unreadCache) extend(t *changes.Tracker, roomID, userID string, upto int64,
	recent func(after, upto int64) ([]store.PushAction, bool)) (store.Unread, bool) {
	k := unreadKey{userID, roomID}
	e, ok := c.m.Get(k)
	if !ok || e.upto > upto {
		return store.Unread{}, false
	}
	if t.ChangedAny([]changes.Key{{Kind: changes.Receipts, Subject: roomID}, {Kind: changes.Memberships, Subject: userID}}, e.upto, upto) {
		return store.Unread{}, false
	}
	acts, ok := recent(e.upto, upto)
	if !ok {
		return store.Unread{}, false
	}
	u := e.u
	if len(acts) > 0 {
		more := store.Unread{ReadPos: u.ReadPos, Threads: map[string]store.ThreadCounts{}}
		for _, a := range acts {
			tc := more.Threads[a.ThreadID]
			tc.Notifications++
			if a.Highlight {
				tc.Highlights++
			}
			more.Threads[a.ThreadID] = tc
		}
		u = u.Add(more)
	}
	c.put(k, upto, u)
	return u, true
}

func (c *unreadCache) put(k unreadKey, upto int64, u store.Unread) {
	c.m.Update(k, func(old unreadEntry, ok bool) (unreadEntry, bool) {
		if ok && old.upto > upto {
			return old, true // a concurrent sync counted further already
		}
		return unreadEntry{upto: upto, u: u}, true
	})
}

// setUnread puts counts in a joined room's entry (spec "/sync":
// unread_notifications; with the timeline filter's
// unread_thread_notifications, the main timeline's there and each thread's
// in unread_thread_notifications, as Synapse does; without it, the sum).
func (b *builder) setUnread(jr *JoinedRoom, u store.Unread) {
	if tl := b.req.Filter.Timeline(); tl != nil && tl.UnreadThreadNotifications {
		m := u.Threads["main"]
		jr.UnreadNotifications = &UnreadCounts{NotificationCount: m.Notifications, HighlightCount: m.Highlights}
		jr.UnreadThreadNotifications = nil
		for t, c := range u.Threads {
			if t == "main" {
				continue
			}
			if jr.UnreadThreadNotifications == nil {
				jr.UnreadThreadNotifications = map[string]*UnreadCounts{}
			}
			jr.UnreadThreadNotifications[t] = &UnreadCounts{NotificationCount: c.Notifications, HighlightCount: c.Highlights}
		}
		return
	}
	n, h := u.Total()
	jr.UnreadNotifications = &UnreadCounts{NotificationCount: n, HighlightCount: h}
}
