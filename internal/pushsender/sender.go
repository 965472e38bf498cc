// Package pushsender owns delivery to push gateways (Push Gateway API,
// POST <pusher data.url> = /_matrix/push/v1/notify): each http pusher
// delivers its user's notifications (store.PushQueue: the rows the room
// writer stores with every event, after the pusher's cursor) one by one, in
// order, with the spec's "event_id_only" or full format, the unread count,
// the priority and the device tuple.
//
// Durability: the cursor moves only after the gateway answered, so a crash
// loses nothing; what was sent but not yet recorded when the process died is
// sent again (at least once — the window is one request).
//
// Failures: a gateway that cannot be reached or answers 5xx or 429 is retried
// after a back-off as long as it has been failing (1 s, doubling, at most an
// hour); a notification still failing after a day is given up, as Synapse
// does. Another 4xx drops the notification. A pushkey the gateway lists in
// "rejected" is removed (spec: the homeserver must remove it).
//
// Retention: the sender also prunes old notifications (Prune, hourly): those
// of events older than ReadRetention (30 days, as Synapse keeps push actions)
// once read by everyone they apply to, and every one older than Retention
// (a year) — an unread badge of a room nobody opened for a year goes.
//
// Several processes (PostgreSQL): a process sends for a pusher only while it
// holds the pusher's claim (a row claim with an end, renewed with every
// notification sent, store.ClaimPusher); a process that dies leaves a claim
// that ends within ClaimFor, and another takes over from the cursor. With
// SQLite (one process) a restarted process releases every claim at start.
package pushsender

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"conclave/internal/mail"
	"conclave/internal/outbound"
	"conclave/internal/store"
)

// Store is what the sender needs.
type Store interface {
	store.PushQueue
	DeletePusher(ctx context.Context, userID, appID, pushKey string) error
	GetEvent(ctx context.Context, eventID string) (*store.StoredEvent, error)
	PruneNotifications(ctx context.Context, readBefore, allBefore int64, limit int) (int64, error)
}

// RoomInfo describes, for a notification's payload, the room and the
// sender: names as clients show them ("" when unknown).
type RoomInfo struct {
	RoomName, RoomAlias, SenderDisplayName string
}

// Options configures a Sender. Zero values take the defaults shown.
type Options struct {
	// HTTP posts to gateways: internal/outbound's client (policy-checked
	// dials, verified TLS, timeouts, no redirects).
	HTTP *http.Client
	// Owner names this process in claims; unique per process.
	Owner string
	Log   *slog.Logger
	Now   func() time.Time
	// Describe returns the room's and sender's names (may be nil).
	Describe func(ctx context.Context, roomID, senderID string) RoomInfo
	// Badge returns the user's unread count for counts.unread (may be nil).
	Badge func(ctx context.Context, userID string) int

	// Exclusive: this process is the database's only user (SQLite): claims
	// left by a process that died are released at start instead of
	// waiting for their end.
	Exclusive bool

	// Mail sends the e-mail pushers' mails (nil: none are sent, and their
	// notifications are passed over); EmailDelay is how long a
	// notification waits for the user to read it first (10 min);
	// EmailServer names the server in the mail, EmailLink is where to read
	// (public_base_url; may be empty). email.go.
	Mail        mail.Sender
	EmailDelay  time.Duration
	EmailServer string
	EmailLink   string

	Tick        time.Duration // rescan for due pushers: 2 s
	ClaimFor    time.Duration // a claim's length, renewed on progress: 20 s
	Workers     int           // pushers delivering at once: 8
	Timeout     time.Duration // one request: 15 s (less than ClaimFor)
	MaxBackoff  time.Duration // 1 h
	GiveUpAfter time.Duration // a failing notification is dropped after: 24 h

	PruneEvery    time.Duration // how often old notifications are pruned: 1 h
	ReadRetention time.Duration // read notifications are kept for: 30 days
	Retention     time.Duration // any notification is kept for: 365 days
}

// Sender delivers notifications to push gateways.
type Sender struct {
	st   Store
	o    Options
	wake chan struct{}

	mu      sync.Mutex
	running map[pusherKey]bool
	wg      sync.WaitGroup
}

type pusherKey struct{ user, app, key string }

// New returns a sender; Run drives it.
func New(st Store, o Options) *Sender {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Tick, 2*time.Second)
	def(&o.ClaimFor, 20*time.Second)
	def(&o.Timeout, 15*time.Second)
	def(&o.MaxBackoff, time.Hour)
	def(&o.GiveUpAfter, 24*time.Hour)
	def(&o.EmailDelay, 10*time.Minute)
	def(&o.PruneEvery, time.Hour)
	def(&o.ReadRetention, 30*24*time.Hour)
	def(&o.Retention, 365*24*time.Hour)
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.HTTP == nil {
		o.HTTP = outbound.New(outbound.Config{}).HTTP
	}
	return &Sender{st: st, o: o, wake: make(chan struct{}, 1), running: map[pusherKey]bool{}}
}

// Wake makes Run look for due pushers now (a notification was stored).
func (s *Sender) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run delivers until ctx ends, then waits for deliveries in progress.
func (s *Sender) Run(ctx context.Context) error {
	defer s.wg.Wait()
	if s.o.Exclusive {
		if err := s.st.ReleaseClaims(ctx); err != nil && ctx.Err() == nil {
			s.o.Log.Warn("push: releasing old claims", "err", err)
		}
	}
	tick := time.NewTicker(s.o.Tick)
	defer tick.Stop()
	prune := time.NewTicker(s.o.PruneEvery)
	defer prune.Stop()
	for {
		s.startDue(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-prune.C:
			if _, err := s.Prune(ctx); err != nil && ctx.Err() == nil {
				s.o.Log.Warn("push: pruning old notifications", "err", err)
			}
		case <-s.wake:
			// Wakes come with every stored notification: one scan per
			// scanGap at most, however many arrive.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(scanGap):
			}
		case <-tick.C:
		}
	}
}

// pruneBatch rows are deleted per statement, at most pruneBatches times
// per Prune: short transactions, and a bounded pass (the rest waits for the
// next one).
const (
	pruneBatch   = 1000
	pruneBatches = 100
)

// Prune deletes old notifications (see the package comment) and returns how
// many rows went.
func (s *Sender) Prune(ctx context.Context) (int64, error) {
	now := s.o.Now()
	readBefore, allBefore := now.Add(-s.o.ReadRetention).UnixMilli(), now.Add(-s.o.Retention).UnixMilli()
	var total int64
	for range pruneBatches {
		n, err := s.st.PruneNotifications(ctx, readBefore, allBefore, pruneBatch)
		total += n
		if err != nil || n < pruneBatch {
			return total, err
		}
	}
	return total, nil
}

// scanGap is the least time between two scans woken by new notifications.
const scanGap = 20 * time.Millisecond

// maxDue bounds the pushers looked at per scan.
const maxDue = 200

func (s *Sender) startDue(ctx context.Context) {
	due, err := s.st.DuePushers(ctx, s.o.Now().UnixMilli(), maxDue)
	if err != nil {
		if ctx.Err() == nil {
			s.o.Log.Warn("push: listing due pushers", "err", err)
		}
		return
	}
	for _, p := range due {
		k := pusherKey{p.UserID, p.AppID, p.PushKey}
		s.mu.Lock()
		if s.running[k] || len(s.running) >= s.o.Workers {
			s.mu.Unlock()
			continue
		}
		s.running[k] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func(p store.Pusher) {
			defer s.wg.Done()
			s.deliver(ctx, &p)
			s.mu.Lock()
			delete(s.running, k)
			s.mu.Unlock()
			s.Wake() // more may have come meanwhile, or others waited for a worker
		}(p)
	}
}

// batch is how many notifications are read at once.
const batch = 20

// deliver sends the pusher's pending notifications while it holds the
// claim, then releases it.
func (s *Sender) deliver(ctx context.Context, p *store.Pusher) {
	now := s.o.Now()
	held, err := s.st.ClaimPusher(ctx, p, s.o.Owner, now.UnixMilli(), now.Add(s.o.ClaimFor).UnixMilli())
	if err != nil || !held {
		if err != nil && ctx.Err() == nil {
			s.o.Log.Warn("push: claiming a pusher", "user", p.UserID, "err", err)
		}
		return
	}
	release := func(retryAt int64) {
		// Not ctx: the outcome is recorded even while shutting down.
		if _, err := s.st.UpdatePusher(context.WithoutCancel(ctx), p, s.o.Owner, p.LastPos, p.FailingSince, retryAt, 0); err != nil {
			s.o.Log.Warn("push: releasing a pusher", "user", p.UserID, "err", err)
		}
	}
	if p.Kind == "email" {
		s.deliverEmail(ctx, p, release)
		return
	}
	var data pusherData
	if json.Unmarshal(p.Data, &data) != nil || data.URL == "" {
		s.o.Log.Warn("push: pusher without a URL", "user", p.UserID, "app_id", p.AppID)
		return
	}
	for ctx.Err() == nil {
		ns, err := s.st.PushPending(ctx, p.UserID, p.LastPos, batch)
		if err != nil {
			s.o.Log.Warn("push: reading notifications", "user", p.UserID, "err", err)
			release(0)
			return
		}
		if len(ns) == 0 {
			release(0)
			return
		}
		for i := range ns {
			n := &ns[i]
			out := s.send(ctx, p, &data, n)
			now := s.o.Now()
			switch out {
			case sent, dropped:
				p.LastPos, p.FailingSince = n.Pos, 0
			case rejected:
				// Spec "Push Gateway API": the homeserver must remove the
				// pushkeys the gateway rejected.
				s.o.Log.Info("push: gateway rejected the pushkey; pusher removed", "user", p.UserID, "app_id", p.AppID)
				if err := s.st.DeletePusher(context.WithoutCancel(ctx), p.UserID, p.AppID, p.PushKey); err != nil {
					s.o.Log.Warn("push: removing a rejected pusher", "err", err)
				}
				return
			case failed:
				if ctx.Err() != nil {
					release(0)
					return
				}
				if p.FailingSince == 0 {
					p.FailingSince = now.UnixMilli()
				}
				failing := now.Sub(time.UnixMilli(p.FailingSince))
				if failing < s.o.GiveUpAfter {
					wait := min(max(failing, time.Second), s.o.MaxBackoff)
					release(now.Add(wait).UnixMilli())
					return
				}
				s.o.Log.Warn("push: gateway failing for too long; notification dropped", "user", p.UserID, "event", n.EventID)
				p.LastPos, p.FailingSince = n.Pos, 0
			}
			held, err := s.st.UpdatePusher(context.WithoutCancel(ctx), p, s.o.Owner, p.LastPos, p.FailingSince, 0, now.Add(s.o.ClaimFor).UnixMilli())
			if err != nil || !held {
				if err != nil {
					s.o.Log.Warn("push: recording progress", "user", p.UserID, "err", err)
				}
				return // deleted meanwhile, or the claim was lost
			}
		}
	}
	release(0)
}

type outcome int

const (
	sent outcome = iota
	dropped
	rejected
	failed
)

// pusherData is a pusher's data: url and format are the server's, the rest
// goes to the gateway with the device (spec: "data … minus url").
type pusherData struct {
	URL    string `json:"url"`
	Format string `json:"format"`
}

// maxResponse bounds what is read of a gateway's answer.
const maxResponse = 64 << 10

func (s *Sender) send(ctx context.Context, p *store.Pusher, data *pusherData, n *store.Notification) outcome {
	body, err := s.payload(ctx, p, data, n)
	if err != nil {
		s.o.Log.Warn("push: building a notification; dropped", "user", p.UserID, "event", n.EventID, "err", err)
		return dropped
	}
	rctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, data.URL, bytes.NewReader(body))
	if err != nil {
		s.o.Log.Warn("push: bad gateway URL; dropped", "user", p.UserID, "err", err)
		return dropped
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := s.o.HTTP.Do(req)
	if err != nil {
		if errors.Is(err, outbound.ErrForbiddenAddress) {
			s.o.Log.Warn("push: gateway address refused (push_allow_private_addresses)", "user", p.UserID, "url", data.URL)
		} else {
			s.o.Log.Info("push: gateway unreachable", "user", p.UserID, "err", err)
		}
		return failed
	}
	defer res.Body.Close()
	raw, err := outbound.ReadBody(res.Body, maxResponse)
	switch {
	case res.StatusCode == http.StatusOK && err == nil:
	case res.StatusCode == http.StatusTooManyRequests || res.StatusCode >= 500 || err != nil:
		s.o.Log.Info("push: gateway failed", "user", p.UserID, "status", res.StatusCode)
		return failed
	default:
		s.o.Log.Info("push: gateway refused the notification; dropped", "user", p.UserID, "status", res.StatusCode)
		return dropped
	}
	var answer struct {
		Rejected []string `json:"rejected"`
	}
	_ = json.Unmarshal(raw, &answer)
	for _, k := range answer.Rejected {
		if k == p.PushKey {
			return rejected
		}
	}
	return sent
}

// Notification is the body of POST /_matrix/push/v1/notify.
type Notification struct {
	Notification NotificationBody `json:"notification"`
}

// NotificationBody is the spec's "notification" object.
type NotificationBody struct {
	EventID           string          `json:"event_id,omitempty"`
	RoomID            string          `json:"room_id,omitempty"`
	Type              string          `json:"type,omitempty"`
	Sender            string          `json:"sender,omitempty"`
	SenderDisplayName string          `json:"sender_display_name,omitempty"`
	RoomName          string          `json:"room_name,omitempty"`
	RoomAlias         string          `json:"room_alias,omitempty"`
	UserIsTarget      bool            `json:"user_is_target,omitempty"`
	Membership        string          `json:"membership,omitempty"` // member events (Synapse sends it too)
	Prio              string          `json:"prio"`
	Content           json.RawMessage `json:"content,omitempty"`
	Counts            Counts          `json:"counts"`
	Devices           []Device        `json:"devices"`
}

// Counts are the notification's counts.
type Counts struct {
	Unread int `json:"unread"`
}

// Device is the pusher the notification is for.
type Device struct {
	AppID     string          `json:"app_id"`
	PushKey   string          `json:"pushkey"`
	PushKeyTS int64           `json:"pushkey_ts"`
	Data      json.RawMessage `json:"data,omitempty"`
	Tweaks    map[string]any  `json:"tweaks"`
}

func (s *Sender) payload(ctx context.Context, p *store.Pusher, data *pusherData, n *store.Notification) ([]byte, error) {
	ev, err := s.st.GetEvent(ctx, n.EventID)
	if err != nil {
		return nil, fmt.Errorf("reading the event: %w", err)
	}
	var pdu struct {
		Type     string          `json:"type"`
		Sender   string          `json:"sender"`
		StateKey *string         `json:"state_key"`
		Content  json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(ev.JSON, &pdu); err != nil {
		return nil, err
	}
	tweaks := map[string]any{}
	var actions []json.RawMessage
	json.Unmarshal(n.Actions, &actions)
	for _, a := range actions {
		var t struct {
			SetTweak string          `json:"set_tweak"`
			Value    json.RawMessage `json:"value"`
		}
		if json.Unmarshal(a, &t) != nil || t.SetTweak == "" {
			continue
		}
		var v any = true // highlight without a value means true
		if len(t.Value) > 0 {
			json.Unmarshal(t.Value, &v)
		}
		tweaks[t.SetTweak] = v
	}
	// Like Synapse: high priority for what makes a sound or highlights, and
	// for encrypted events, whose effect the server cannot know.
	prio := "low"
	if pdu.Type == "m.room.encrypted" || tweaks["sound"] != nil || tweaks["highlight"] == true {
		prio = "high"
	}
	dev := Device{AppID: p.AppID, PushKey: p.PushKey, PushKeyTS: p.CreatedTS / 1000, Tweaks: tweaks, Data: dataMinusURL(p.Data)}
	body := NotificationBody{EventID: n.EventID, RoomID: n.RoomID, Prio: prio, Devices: []Device{dev}}
	if s.o.Badge != nil {
		body.Counts.Unread = s.o.Badge(ctx, p.UserID)
	}
	if data.Format != "event_id_only" {
		body.Type, body.Sender = pdu.Type, pdu.Sender
		if ev.RedactedBy == "" {
			body.Content = pdu.Content
		}
		if pdu.Type == "m.room.member" && pdu.StateKey != nil {
			body.UserIsTarget = *pdu.StateKey == p.UserID
			var c struct {
				Membership string `json:"membership"`
			}
			json.Unmarshal(pdu.Content, &c)
			body.Membership = c.Membership
		}
		if s.o.Describe != nil {
			info := s.o.Describe(ctx, n.RoomID, pdu.Sender)
			body.RoomName, body.RoomAlias, body.SenderDisplayName = info.RoomName, info.RoomAlias, info.SenderDisplayName
		}
	}
	return json.Marshal(Notification{Notification: body})
}

// dataMinusURL is the pusher's data without url (spec: the device's data
// is the pusher's "minus the url key").
func dataMinusURL(raw json.RawMessage) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	delete(m, "url")
	if len(m) == 0 {
		return nil
	}
	b, _ := json.Marshal(m)
	return b
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
