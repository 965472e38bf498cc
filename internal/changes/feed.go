package changes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Several processes sharing one database (PostgreSQL) each keep a Tracker
// fed by the database itself: every transaction that allocates stream
// positions also sends, on commit, a notification with the positions and
// the keys its writer marked (the store reads them from the context: see
// Write.Context and Payload). Notifications arrive in commit order, and
// commits are in position order, so when a process has heard position P it
// has heard every change at or below P. Its syncs read no further than what
// it has heard (the Tracker's committed position is the heard one), which
// makes the answers exact across processes, as they are within one:
//
//   - a change from another process is recorded (Apply) before the heard
//     position moves past it;
//   - a notification without keys (a writer that marked nothing, or keys
//     too long for a notification) records "anything may have changed":
//     the floor rises to its position;
//   - after the feed's connection was lost, Resync forgets everything and
//     starts again from the database's position then.
//
// A write of this process waits in Done until its own notification is
// heard, so that the long-polls it wakes read up to it.

// feed is the fed Tracker's view of the notifications.
type feed struct {
	origin string                                   // this process, in payloads
	dbMax  func(ctx context.Context) (int64, error) // the database's committed position
	mu     sync.Mutex
	heard  int64
	cond   *sync.Cond
}

// maxWaitHeard bounds how long a write waits for its own notification (the
// feed's connection may be down; Resync then covers what was missed).
const maxWaitHeard = 5 * time.Second

// NewFed returns a Tracker fed by a database's notifications, starting at
// pos (read after the feed started listening). dbMax reads the database's
// committed position.
func NewFed(pos int64, dbMax func(ctx context.Context) (int64, error)) *Tracker {
	var id [8]byte
	rand.Read(id[:])
	f := &feed{origin: hex.EncodeToString(id[:]), dbMax: dbMax, heard: pos}
	f.cond = sync.NewCond(&f.mu)
	t := New(f.heardPos)
	t.feed = f
	return t
}

func (f *feed) heardPos() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.heard
}

func (f *feed) advance(pos int64) {
	f.mu.Lock()
	if pos > f.heard {
		f.heard = pos
		f.cond.Broadcast()
	}
	f.mu.Unlock()
}

// waitHeard waits until pos is heard (bounded by maxWaitHeard).
func (f *feed) waitHeard(pos int64) {
	deadline := time.Now().Add(maxWaitHeard)
	stop := time.AfterFunc(maxWaitHeard, func() {
		f.mu.Lock()
		f.cond.Broadcast()
		f.mu.Unlock()
	})
	defer stop.Stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.heard < pos && time.Now().Before(deadline) {
		f.cond.Wait()
	}
}

// WaitHeard waits until pos is heard, for at most a few seconds (nothing to
// wait for unless fed).
func (t *Tracker) WaitHeard(pos int64) {
	if t != nil && t.feed != nil {
		t.feed.waitHeard(pos)
	}
}

// Heard is the highest position this process has heard (fed trackers) or
// the committed position.
func (t *Tracker) Heard() int64 { return t.committed() }

type payloadKey struct{}

// Context returns ctx carrying the write's keys, for the store to send with
// the write's notification (Payload).
func (w *Write) Context(ctx context.Context) context.Context {
	if w == nil || w.t.feed == nil {
		return ctx
	}
	return context.WithValue(ctx, payloadKey{}, encode(w.t.feed.origin, w.keys))
}

// MaxPayload bounds the keys sent with a notification (PostgreSQL's NOTIFY
// payload limit is 8000 bytes; the positions come first).
const MaxPayload = 7800

// Payload returns what a store sends with the notification of a write made
// with ctx: the origin and the keys, or "" when the writer marked nothing
// (listeners then assume anything may have changed).
func Payload(ctx context.Context) string {
	p, _ := ctx.Value(payloadKey{}).(string)
	if len(p) > MaxPayload {
		return ""
	}
	return p
}

func encode(origin string, keys []Key) string {
	var b strings.Builder
	b.WriteString(origin)
	for _, k := range keys {
		b.WriteByte('\n')
		b.WriteString(strconv.Itoa(int(k.Kind)))
		b.WriteByte(':')
		b.WriteString(k.Subject)
	}
	return b.String()
}

// AnyDeviceListChange is the key under which another process's device-list
// changes are recorded: the rooms its writer marked before the commit may
// miss one the owner joined meanwhile, so readers count it for every room.
var AnyDeviceListChange = Key{Kind: DeviceLists, Subject: "*"}

// Apply records one notification: positions (from, to] committed with the
// payload the writer's store sent. It returns the keys another process
// changed (nil for this process's own writes) and whether everything must
// be assumed changed (no keys). The caller acts on them (drops what it
// caches of those subjects), then calls Advance(to).
func (t *Tracker) Apply(from, to int64, payload string) (remote []Key, unknown bool) {
	if t == nil || t.feed == nil {
		return nil, false
	}
	lines := strings.Split(payload, "\n")
	if payload == "" || len(lines) == 0 {
		t.forgetThrough(to)
		return nil, true
	}
	own := lines[0] == t.feed.origin
	keys := make([]Key, 0, len(lines)-1)
	for _, l := range lines[1:] {
		i := strings.IndexByte(l, ':')
		kind, err := strconv.Atoi(l[:max(i, 0)])
		if i < 0 || err != nil || kind < 0 || kind >= int(numKinds) {
			t.forgetThrough(to)
			return nil, true
		}
		k := Key{Kind: Kind(kind), Subject: l[i+1:]}
		if !own && k.Kind == DeviceLists && k.Subject == "" {
			k = AnyDeviceListChange
		}
		keys = append(keys, k)
	}
	t.record(to, keys)
	if own {
		return nil, false
	}
	return keys, false
}

// Advance makes pos heard: every notification up to it was applied.
func (t *Tracker) Advance(pos int64) {
	if t != nil && t.feed != nil {
		t.feed.advance(pos)
	}
}

// Fed reports whether the Tracker is fed by a database shared with other
// processes: changes that take no stream position (key counts, sessions)
// are then not seen when another process makes them.
func (t *Tracker) Fed() bool { return t != nil && t.feed != nil }

// record marks keys as changed at pos without a write in flight.
func (t *Tracker) record(pos int64, keys []Key) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.tick++
	t.recordLocked(pos, keys)
	t.boundLocked()
}

// forgetThrough makes everything up to pos unknown.
func (t *Tracker) forgetThrough(pos int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, m := range t.marks {
		if len(m.flying) == 0 {
			t.tickFloor = max(t.tickFloor, m.tick)
			delete(t.marks, k)
		}
	}
	t.tick++
	t.tickFloor = max(t.tickFloor, t.tick)
	t.floor = max(t.floor, pos)
}

// Resync starts a fed Tracker again at pos, the database's position read
// after the feed reconnected: notifications may have been missed, so
// everything before pos is forgotten.
func (t *Tracker) Resync(pos int64) {
	if t == nil || t.feed == nil {
		return
	}
	t.forgetThrough(pos)
	t.feed.mu.Lock()
	t.feed.heard = max(t.feed.heard, pos)
	t.feed.cond.Broadcast()
	t.feed.mu.Unlock()
}
