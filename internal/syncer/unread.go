package syncer

import (
	"bytes"
	"context"

	"conclave/internal/lru"
	"conclave/internal/store"
)

// maxUnreadEntries bounds the unread-count cache (least recently used
// entries are forgotten; a forgotten entry costs one full count).
const maxUnreadEntries = 200_000

// unreadCache remembers, per user and room, the counts up to a stream
// position, so that each /sync counts only the events that arrived since the
// last one instead of every unread event again (the full count was a third
// of the server's CPU in the messages load test). An entry is valid while
// the user's read point is unchanged; the store reports the read point with
// every count, so a moved receipt or membership starts a fresh count.
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
			more.Notifications += e.u.Notifications
			more.Highlights += e.u.Highlights
			c.put(k, upto, more)
			return more, nil
		}
	}
	u, err := st.UnreadCounts(ctx, roomID, userID, 0, upto)
	if err != nil {
		return store.Unread{}, err
	}
	c.put(k, upto, u)
	return u, nil
}

func (c *unreadCache) put(k unreadKey, upto int64, u store.Unread) {
	c.m.Update(k, func(old unreadEntry, ok bool) (unreadEntry, bool) {
		if ok && old.upto > upto {
			return old, true // a concurrent sync counted further already
		}
		return unreadEntry{upto: upto, u: u}, true
	})
}

// extend counts evs — every event of the room in (since, upto] — on top of
// the cached counts up to since, without the store. ok is false when the
// cache has no entry ending exactly at since, or its read point is past
// since.
//
// An entry ending before since also serves when quiet reports that the room
// had no event in between (the room was simply not in the last syncs).
func (c *unreadCache) extend(roomID, userID string, since, upto int64, evs []store.StoredEvent, quiet func(from, to int64) bool) (store.Unread, bool) {
	k := unreadKey{userID, roomID}
	e, ok := c.m.Get(k)
	if !ok || e.upto > since || e.u.ReadPos > since || (e.upto < since && !quiet(e.upto, since)) {
		return store.Unread{}, false
	}
	u := e.u
	for i := range evs {
		ev := &evs[i]
		if ev.Pos <= since || ev.Pos > upto || ev.StateKey != nil || ev.Sender == userID || ev.RedactedBy != "" {
			continue
		}
		switch ev.Type {
		case "m.room.message", "m.room.encrypted", "m.sticker":
		default:
			continue
		}
		// Same rules as store.UnreadCounts.
		u.Notifications++
		if bytes.Contains(ev.JSON, []byte(userID)) {
			u.Highlights++
		}
	}
	c.put(k, upto, u)
	return u, true
}
