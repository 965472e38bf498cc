package homeserver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"conclave/internal/changes"
	"conclave/internal/presence"
	"conclave/internal/store"
	"conclave/internal/typing"
)

// cluster keeps this process in step with the other conclave processes that
// share its PostgreSQL database (docs/deployment.md). Every message goes
// through the store's bus (NOTIFY on one channel, LISTEN on one dedicated
// connection):
//
//   - wake: users whose /sync should wake (to-device, account data,
//     receipts, device lists), published right after the local wake-up;
//   - room: a room's events were committed: the other processes wake its
//     users (its in-memory state was already marked stale by the stream
//     notification, below);
//   - reset: this process dropped messages (publish queue overflow): the
//     others invalidate every room and wake everyone;
//   - typing, presence: ephemeral changes with a cluster-wide serial
//     (store.Cluster.PublishSequenced); every process, the sender included,
//     applies them in serial order, so the serials in sync tokens mean the
//     same on every process and no sticky sessions are needed.
//
// Besides, every allocation of stream positions notifies on its own channel
// from inside its transaction (a trigger, migration 0012), with the change
// tracker's marks of the write: onStream records another process's changes
// in hs.Changes and marks the rooms it wrote to stale (state reloaded on
// next use, recent events dropped) before the position counts as heard. A
// process's /sync reads up to what it has heard, and its own writes wait to
// be heard before they answer; the notification is delivered on commit even
// if its writer dies right after (changes/feed.go).
//
// A message too large for NOTIFY degrades to its "everyone" form (wake all
// users; for a room, invalidate it and wake all). On reconnection the
// listener may have missed messages: every room is invalidated, every
// long-poll woken, and typing and presence take the serial at reconnection as
// their floor (older tokens get the full current state).
//
// With SQLite there is one process and no cluster: hs.cluster is nil and its
// methods do nothing.
type cluster struct {
	hs    *Homeserver
	st    store.Cluster
	id    string // this process, to skip its own wake-ups
	queue chan busMsg
	// overflow: the queue was full and messages were dropped.
	overflow atomic.Bool
	applied  appliedWatch
	first    sync.Once
	ready    chan struct{} // closed on the first connection
}

type busMsg struct {
	Proc     string           `json:"p"`
	Kind     string           `json:"k"`
	Room     string           `json:"r,omitempty"`
	Users    []string         `json:"u,omitempty"`
	All      bool             `json:"a,omitempty"` // wake everyone (Users did not fit)
	Serial   int64            `json:"n,omitempty"`
	Typing   *typing.Update   `json:"t,omitempty"`
	Presence *presence.Update `json:"s,omitempty"`
}

const (
	kindWake     = "wake"
	kindRoom     = "room"
	kindReset    = "reset"
	kindTyping   = "typing"
	kindPresence = "presence"

	publishQueue = 4096
	publishBatch = 256
)

// newCluster returns nil unless the store is shared (PostgreSQL).
func newCluster(hs *Homeserver) *cluster {
	st, ok := hs.Store.(store.Cluster)
	if !ok {
		return nil
	}
	var b [8]byte
	rand.Read(b[:])
	c := &cluster{hs: hs, st: st, id: hex.EncodeToString(b[:]), queue: make(chan busMsg, publishQueue), ready: make(chan struct{})}
	c.applied.ch = make(chan struct{})
	// UIA session IDs any process can recognise: an HMAC key derived from
	// the signing key, which every process shares.
	seed, _ := hs.SigningKey.MarshalText()
	uiaKey := sha256.Sum256(append([]byte("conclave UIA session IDs\x00"), seed...))
	hs.Accounts.UIASessionKey = uiaKey[:]
	hs.Typing.Publish = func(ctx context.Context, u typing.Update) error {
		return c.sequenced(ctx, busMsg{Kind: kindTyping, Typing: &u})
	}
	hs.Presence.Publish = func(u presence.Update) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return c.sequenced(ctx, busMsg{Kind: kindPresence, Presence: &u})
	}
	return c
}

// start runs the listener and the publisher until ctx ends, and returns once
// the listener is connected (so this process's own typing and presence
// changes come back to it).
func (c *cluster) start(ctx context.Context) error {
	if c == nil {
		return nil
	}
	go c.st.Listen(ctx, c.onConnect, c.onMessage, c.onStream, func(err error) {
		c.hs.Log.Warn("cluster bus: listener connection lost; reconnecting", "err", err)
	})
	go c.publisher(ctx)
	select {
	case <-c.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wake publishes a wake-up of users (already woken here).
func (c *cluster) wake(users []string) {
	if c == nil || len(users) == 0 {
		return
	}
	c.enqueue(busMsg{Kind: kindWake, Users: users})
}

// roomChanged publishes that events were committed in roomID.
func (c *cluster) roomChanged(roomID string, users []string) {
	if c == nil {
		return
	}
	c.enqueue(busMsg{Kind: kindRoom, Room: roomID, Users: users})
}

func (c *cluster) enqueue(m busMsg) {
	select {
	case c.queue <- m:
	default:
		c.overflow.Store(true)
	}
}

// encode marshals m, degrading it to its "everyone" form if too large.
func (c *cluster) encode(m busMsg) string {
	m.Proc = c.id
	b, err := json.Marshal(m)
	if err == nil && len(b) <= store.MaxClusterMessage {
		return string(b)
	}
	m.Users, m.All = nil, true
	b, _ = json.Marshal(m)
	return string(b)
}

// publisher sends queued messages in batches, right after the commits that
// caused them (one NOTIFY statement per batch, off the request path).
func (c *cluster) publisher(ctx context.Context) {
	for {
		var batch []string
		select {
		case <-ctx.Done():
			return
		case m := <-c.queue:
			batch = append(batch, c.encode(m))
		}
	drain:
		for len(batch) < publishBatch {
			select {
			case m := <-c.queue:
				batch = append(batch, c.encode(m))
			default:
				break drain
			}
		}
		if c.overflow.Swap(false) {
			batch = append(batch, c.encode(busMsg{Kind: kindReset}))
		}
		if err := c.st.Publish(ctx, batch); err != nil {
			if ctx.Err() != nil {
				return
			}
			c.hs.Log.Warn("cluster bus: publish failed", "err", err)
			c.overflow.Store(true) // the others get a reset once publishing works again
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

// sequenced publishes a typing or presence change with the next cluster-wide
// serial and waits until this process has applied it, so a client sees its
// own change in its next request to this process.
func (c *cluster) sequenced(ctx context.Context, m busMsg) error {
	var serial int64
	err := c.st.PublishSequenced(ctx, func(n int64) (string, error) {
		serial = n
		m.Serial, m.Proc = n, c.id
		b, err := json.Marshal(m)
		return string(b), err
	})
	if err != nil {
		return err
	}
	return c.applied.wait(ctx, serial)
}

func (c *cluster) onConnect(serial, streamPos int64) {
	// Stream notifications may have been missed (before the first
	// connection too): the change tracker forgets what it knew.
	c.hs.Rooms.ForgetRecent("")
	c.hs.Changes.Resync(streamPos)
	c.hs.Typing.Resume(serial)
	c.hs.Presence.Resume(serial)
	c.applied.advance(serial)
	reconnect := true
	c.first.Do(func() { reconnect = false; close(c.ready) })
	if reconnect {
		c.hs.Rooms.InvalidateAll()
		c.hs.Notifier.WakeAll()
	}
}

// onStream applies an allocation of stream positions (from, to] by any
// process, this one included, to the change tracker: what another process
// changed is recorded, and what this process keeps of it in memory (room
// state, recent events) dropped, before the position counts as heard.
func (c *cluster) onStream(from, to int64, marks string) {
	remote, unknown := c.hs.Changes.Apply(from, to, marks)
	switch {
	case unknown:
		c.hs.Rooms.InvalidateAll()
		c.hs.Rooms.ForgetRecent("")
	default:
		for _, k := range remote {
			if k.Kind == changes.RoomEvents {
				c.hs.Rooms.Invalidate(k.Subject)
				c.hs.Rooms.ForgetRecent(k.Subject)
			}
		}
	}
	c.hs.Changes.Advance(to)
}

func (c *cluster) onMessage(payload string) {
	var m busMsg
	if err := json.Unmarshal([]byte(payload), &m); err != nil {
		c.hs.Log.Warn("cluster bus: unreadable message", "err", err)
		return
	}
	n := c.hs.Notifier
	switch m.Kind {
	case kindTyping:
		if m.Typing != nil {
			c.hs.Typing.Apply(*m.Typing, m.Serial)
		}
		c.applied.advance(m.Serial)
		return
	case kindPresence:
		if m.Presence != nil {
			c.hs.Presence.Apply(*m.Presence, m.Serial)
		}
		c.applied.advance(m.Serial)
		return
	}
	if m.Proc == c.id {
		return // this process applied its own wake-ups already
	}
	switch m.Kind {
	case kindRoom:
		c.hs.Rooms.Invalidate(m.Room)
	case kindReset:
		c.hs.Rooms.InvalidateAll()
		m.All = true
	}
	if m.All {
		n.WakeAll()
	} else {
		n.Wake(m.Users...)
	}
}

// appliedWatch lets publishers wait until the listener has applied a serial.
type appliedWatch struct {
	mu     sync.Mutex
	serial int64
	ch     chan struct{} // closed and replaced on every advance
}

func (w *appliedWatch) advance(n int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n > w.serial {
		w.serial = n
		close(w.ch)
		w.ch = make(chan struct{})
	}
}

func (w *appliedWatch) wait(ctx context.Context, n int64) error {
	for {
		w.mu.Lock()
		if w.serial >= n {
			w.mu.Unlock()
			return nil
		}
		ch := w.ch
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
