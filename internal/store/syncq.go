package store

import "context"

// SyncQueries are the reads /sync needs beyond plain event lookups.
type SyncQueries interface {
	// ChangedRooms lists the rooms with events in (after, upto].
	ChangedRooms(ctx context.Context, after, upto int64) ([]string, error)
	// StateBetween returns, per (type, state_key), the newest state event of
	// the room with a position in (after, before).
	StateBetween(ctx context.Context, roomID string, after, before int64) ([]StoredEvent, error)
	// UnreadCounts counts the user's notifications (PushAction rows) in the
	// room after since, up to upto, that their read receipts do not cover,
	// per thread: a thread's read point is the newest of the user's
	// unthreaded m.read / m.read.private receipts, their receipts in that
	// thread, and their own latest membership. ReadPos changes whenever
	// any of those moves, so a caller can count incrementally: counts over
	// (since, upto] add to counts over (0, since] while ReadPos is unchanged.
	UnreadCounts(ctx context.Context, roomID, userID string, since, upto int64) (Unread, error)
}

// Unread is the result of UnreadCounts.
type Unread struct {
	// ReadPos is the newest stream position among the user's read receipts
	// in the room and their membership (not an event position: a marker
	// that moves with any of them).
	ReadPos int64
	// Threads holds the counts per thread ("main" for the main timeline);
	// threads with no unread notification are absent.
	Threads map[string]ThreadCounts
}

// Total sums the counts of every thread (unread_notifications of a client
// that did not ask for per-thread counts).
func (u Unread) Total() (notifications, highlights int) {
	for _, c := range u.Threads {
		notifications += c.Notifications
		highlights += c.Highlights
	}
	return notifications, highlights
}

// Add adds more's thread counts to u's (a copy).
func (u Unread) Add(more Unread) Unread {
	out := Unread{ReadPos: more.ReadPos, Threads: make(map[string]ThreadCounts, len(u.Threads)+len(more.Threads))}
	for _, m := range []map[string]ThreadCounts{u.Threads, more.Threads} {
		for t, c := range m {
			o := out.Threads[t]
			o.Notifications += c.Notifications
			o.Highlights += c.Highlights
			out.Threads[t] = o
		}
	}
	return out
}
