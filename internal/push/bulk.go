package push

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"

	"conclave/internal/changes"
	"conclave/internal/lru"
	"conclave/internal/store"
)

// Room is what evaluating an event for a room's members reads of the room:
// the room writer's in-memory state, under its lock (room.PushView).
type Room interface {
	RoomID() string
	// JoinedMembers calls fn for every joined member, of any server.
	JoinedMembers(fn func(userID string))
	MemberCount() int
	// MemberEvent returns the ID and content of the user's m.room.member
	// event ("" if none).
	MemberEvent(userID string) (eventID string, content json.RawMessage)
	// UserPower is the user's power level; NotificationPower the level a
	// notification key needs (power levels' "notifications", 50 if unset).
	UserPower(userID string) int64
	NotificationPower(key string) int64
}

// Cache bounds: users whose compiled rules are kept, and member display
// names kept (by room and user).
const (
	maxCachedRulesets = 50_000
	maxCachedNames    = 200_000
)

// Bulk evaluates every local recipient's push rules for an event, the
// spec's "Push Rules" run by the server (Client-Server API, "Push
// Notifications"), cheaply enough to run in the room writer's commit of
// every event: each user's rules are kept (until their account data
// changes, per the change tracker), the event is parsed once, and display
// names are kept by member event ID.
type Bulk struct {
	svc     *Service
	isLocal func(userID string) bool
	changes *changes.Tracker
	rules   *lru.Cache[string, cachedRules]
	names   *lru.Cache[nameKey, cachedName]
	log     *slog.Logger
	// Ignored, when set, returns the users a user ignores (their
	// m.ignored_user_list): events from them notify nobody who ignores
	// them, as in Synapse.
	Ignored func(ctx context.Context, userID string) (map[string]bool, error)
}

type cachedRules struct {
	tick    uint64
	rs      *Ruleset
	ignored map[string]bool
}

type nameKey struct{ room, user string }

type cachedName struct{ eventID, name string }

// NewBulk returns the evaluator. isLocal tells this server's users;
// tracker, when set, lets the rules of users whose account data did not
// change be reused (without one, rules are read from the store each time).
func NewBulk(svc *Service, isLocal func(string) bool, tracker *changes.Tracker, log *slog.Logger) *Bulk {
	if log == nil {
		log = slog.Default()
	}
	return &Bulk{svc: svc, isLocal: isLocal, changes: tracker, log: log,
		rules: lru.New[string, cachedRules](maxCachedRulesets), names: lru.New[nameKey, cachedName](maxCachedNames)}
}

// Event is the part of an event Actions needs besides its JSON.
type EventInfo struct {
	Sender   string
	Type     string
	StateKey *string
	// Membership of an m.room.member event ("" otherwise).
	Membership string
	JSON       []byte
}

// Actions returns the notifications ev causes: one per local user, other
// than the sender, who is joined to the room (or invited by ev) and whose
// rules notify. Errors reading a user's rules skip that user (logged): the
// event itself must not fail because of a notification.
func (b *Bulk) Actions(ctx context.Context, room Room, ev *EventInfo) []store.PushAction {
	var users []string
	room.JoinedMembers(func(u string) {
		if u != ev.Sender && b.isLocal(u) {
			users = append(users, u)
		}
	})
	// Synapse also evaluates an invite for the invitee (.m.rule.invite_for_me).
	if ev.Type == "m.room.member" && ev.StateKey != nil && ev.Membership == "invite" && *ev.StateKey != ev.Sender && b.isLocal(*ev.StateKey) {
		users = append(users, *ev.StateKey)
	}
	if len(users) == 0 {
		return nil
	}
	pe := ParseEvent(ev.JSON)
	if pe == nil {
		return nil
	}
	thread := threadOf(pe)
	env := Env{MemberCount: room.MemberCount(), SenderPower: room.UserPower(ev.Sender), NotificationPower: room.NotificationPower}
	var out []store.PushAction
	marshalled := map[*Rule]json.RawMessage{} // each rule's actions encoded once
	for _, u := range users {
		c, err := b.user(ctx, u)
		if err != nil {
			b.log.Warn("push rules unreadable; no notification", "user", u, "err", err)
			continue
		}
		if c.ignored[ev.Sender] {
			continue
		}
		rs := c.rs
		env.UserID = u
		env.DisplayName = b.displayName(room, u)
		res := EvaluateEvent(rs, pe, &env)
		if !res.Notify {
			continue
		}
		acts, ok := marshalled[res.Rule]
		if !ok {
			acts, _ = json.Marshal(res.Actions)
			marshalled[res.Rule] = acts
		}
		out = append(out, store.PushAction{UserID: u, ThreadID: thread, Highlight: res.Highlight, Actions: acts})
	}
	return out
}

// Rules returns the user's rule set, kept while their account data is
// unchanged.
func (b *Bulk) Rules(ctx context.Context, userID string) (*Ruleset, error) {
	c, err := b.user(ctx, userID)
	return c.rs, err
}

// user returns the user's rules and ignored users, kept while their account
// data is unchanged (the change tracker's AccountData key).
func (b *Bulk) user(ctx context.Context, userID string) (cachedRules, error) {
	key := changes.Key{Kind: changes.AccountData, Subject: userID}
	if c, ok := b.rules.Get(userID); ok && b.changes.Unchanged(key, c.tick) {
		return c, nil
	}
	c := cachedRules{tick: b.changes.Tick()}
	var err error
	if c.rs, err = b.svc.Rules(ctx, userID); err != nil {
		return c, err
	}
	if b.Ignored != nil {
		if c.ignored, err = b.Ignored(ctx, userID); err != nil {
			return c, err
		}
	}
	if b.changes != nil {
		b.rules.Put(userID, c)
	}
	return c, nil
}

// displayName is the user's display name in the room, parsed once per
// member event.
func (b *Bulk) displayName(room Room, userID string) string {
	id, content := room.MemberEvent(userID)
	if id == "" {
		return ""
	}
	k := nameKey{room.RoomID(), userID}
	if c, ok := b.names.Get(k); ok && c.eventID == id {
		return c.name
	}
	var m struct {
		DisplayName any `json:"displayname"`
	}
	json.Unmarshal(content, &m)
	name, _ := m.DisplayName.(string)
	b.names.Put(k, cachedName{eventID: id, name: name})
	return name
}

// threadOf is the thread an event belongs to for threaded receipts and
// counts: the root of an m.thread relation, else "main" (spec "Threading").
func threadOf(ev *Event) string {
	if rt, _ := lookupString(ev.m, `content.m\.relates_to.rel_type`); rt == "m.thread" {
		if root, ok := lookupString(ev.m, `content.m\.relates_to.event_id`); ok && strings.HasPrefix(root, "$") {
			return root
		}
	}
	return "main"
}
