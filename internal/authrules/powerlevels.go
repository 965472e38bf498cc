package authrules

import (
	"encoding/json"
	"maps"
	"math"
	"slices"

	"conclave/internal/event"
)

// Indexes of the top-level integer properties of m.room.power_levels, in the
// order the m.room.power_levels auth rule lists them.
const (
	keyUsersDefault = iota
	keyEventsDefault
	keyStateDefault
	keyBan
	keyRedact
	keyKick
	keyInvite
	numNamed
)

var namedKeys = [numNamed]string{"users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"}

// namedDefaults are the values used when a property (or the whole event) is
// absent (Client-Server API, m.room.power_levels): state_default is 50 even
// when there is no power levels event at all, events_default 0, ban/kick/
// redact 50, invite 0, users_default 0.
var namedDefaults = [numNamed]int64{0, 0, 50, 50, 50, 50, 0}

// CreatorLevel is the power level of a room creator in room version 12 and
// later, where creators have "infinitely high" power: no value in
// m.room.power_levels can reach it (they are bounded by 2^53-1), and two
// creators are equal, so neither can kick or ban the other.
const CreatorLevel int64 = math.MaxInt64

// noEventCreatorLevel: "If the room contains no m.room.power_levels event,
// the room's creator has a power level of 100" (room versions 1–11).
const noEventCreatorLevel = 100

// defaultNotificationRoom is the default of notifications.room.
const defaultNotificationRoom = 50

// PowerLevels is a parsed m.room.power_levels event with the spec's defaults
// applied. Build it with ParsePowerLevels; the zero value is not useful.
type PowerLevels struct {
	rv       *event.RoomVersion
	create   *event.PDU
	noEvent  bool
	present  [numNamed]bool
	named    [numNamed]int64
	users    map[string]int64
	events   map[string]int64
	notifs   map[string]int64
	creators []string // v12: privileged creators; before: the creator(s)
}

// ParsePowerLevels parses the content of an m.room.power_levels event under
// room version rv. content == nil means the room has no such event, and the
// defaults apply (with the creator at 100 before v12). create is the room's
// m.room.create event, needed for the creators; it may be nil only if no
// creator-dependent answer is wanted.
//
// It returns an *Error if the content breaks the validity parts of the
// m.room.power_levels auth rule for this version: any non-integer where v10+
// requires integers; a "users" that is not an object of valid user IDs to
// integers (strings holding integers are accepted before v10, floats before
// v6); a float beyond binary64 range before v6. Before v10, other values that
// are not integers are ignored, so their defaults apply.
//
// The creators-not-in-users rule of v12 is not enforced here: it concerns a
// new power levels event and is checked by Check.
func ParsePowerLevels(rv *event.RoomVersion, content json.RawMessage, create *event.PDU) (*PowerLevels, error) {
	p := &PowerLevels{rv: rv, create: create, named: namedDefaults, creators: creators(rv, create)}
	if content == nil {
		p.noEvent = true
		return p, nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(content, &top); err != nil || top == nil {
		return nil, reject("power_levels.content", "content is not a JSON object")
	}
	strict, intOnly := rv.StrictCanonicalJSON, rv.IntegerPowerLevels
	for i, k := range namedKeys {
		raw, ok := top[k]
		if !ok {
			continue
		}
		v, kind := parseLevel(strict, intOnly, raw)
		switch kind {
		case levelFatal:
			return nil, reject("power_levels.float_range", k+" is outside the range of a double")
		case levelInvalid:
			if intOnly {
				// v10+: "If any of the properties users_default, ... are
				// present and not an integer, reject."
				return nil, reject("power_levels.not_integer", k+" is not an integer")
			}
			continue // before v10 the value is ignored and the default applies
		}
		p.present[i], p.named[i] = true, v
	}
	var err error
	if p.events, err = parseLevelMap(rv, top, "events"); err != nil {
		return nil, err
	}
	if p.notifs, err = parseLevelMap(rv, top, "notifications"); err != nil {
		return nil, err
	}
	if raw, ok := top["users"]; ok {
		// "If the users property in content is not an object with keys that
		// are valid user IDs with values that are integers (or a string that
		// is an integer, before v10), reject." An absent "users" is read as
		// allowed, like the sibling rule for events ("present and not ...").
		var users map[string]json.RawMessage
		if json.Unmarshal(raw, &users) != nil || users == nil {
			return nil, reject("power_levels.users", "users is not an object")
		}
		p.users = make(map[string]int64, len(users))
		for u, rawLevel := range users {
			if !validUserID(u) {
				return nil, reject("power_levels.users", "users key "+quote(u)+" is not a valid user ID")
			}
			v, kind := parseLevel(strict, intOnly, rawLevel)
			if kind == levelFatal {
				return nil, reject("power_levels.float_range", "users value is outside the range of a double")
			}
			if kind != levelOK {
				return nil, reject("power_levels.users", "users value for "+quote(u)+" is not an integer")
			}
			p.users[u] = v
		}
	}
	return p, nil
}

// parseLevelMap parses "events" or "notifications". From v10 they must be
// objects with integer values (rule "If either of the properties events or
// notifications in content are present and not an object with values that
// are integers, reject"); before v10 malformed entries are ignored.
func parseLevelMap(rv *event.RoomVersion, top map[string]json.RawMessage, key string) (map[string]int64, error) {
	raw, ok := top[key]
	if !ok {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil || m == nil {
		if rv.IntegerPowerLevels {
			return nil, reject("power_levels.not_integer", key+" is not an object")
		}
		return nil, nil
	}
	out := make(map[string]int64, len(m))
	for k, rawLevel := range m {
		v, kind := parseLevel(rv.StrictCanonicalJSON, rv.IntegerPowerLevels, rawLevel)
		switch kind {
		case levelFatal:
			return nil, reject("power_levels.float_range", key+" value is outside the range of a double")
		case levelInvalid:
			if rv.IntegerPowerLevels {
				return nil, reject("power_levels.not_integer", key+" value for "+quote(k)+" is not an integer")
			}
			continue
		}
		out[k] = v
	}
	return out, nil
}

// IsCreator reports whether userID is a room creator. Only from v12
// (PrivilegedCreators) does this give special power; before, the creator
// matters only when there is no power levels event.
func (p *PowerLevels) IsCreator(userID string) bool { return slices.Contains(p.creators, userID) }

// UserLevel returns the power level of userID: CreatorLevel for a creator
// from v12; otherwise its users entry, else users_default. Without a power
// levels event the creator has 100 before v12 and everyone else 0.
func (p *PowerLevels) UserLevel(userID string) int64 {
	if p.rv != nil && p.rv.PrivilegedCreators && p.IsCreator(userID) {
		return CreatorLevel
	}
	if p.noEvent {
		if (p.rv == nil || !p.rv.PrivilegedCreators) && p.IsCreator(userID) {
			return noEventCreatorLevel
		}
		return 0
	}
	if v, ok := p.users[userID]; ok {
		return v
	}
	return p.named[keyUsersDefault]
}

// EventLevel returns the level required to send an event of the type: its
// entry in events, else state_default for state events and events_default
// for others. (Membership events are governed by Invite/Kick/Ban instead.)
func (p *PowerLevels) EventLevel(eventType string, isState bool) int64 {
	if v, ok := p.events[eventType]; ok {
		return v
	}
	if isState {
		return p.named[keyStateDefault]
	}
	return p.named[keyEventsDefault]
}

// Ban returns the ban level (default 50).
func (p *PowerLevels) Ban() int64 { return p.named[keyBan] }

// Kick returns the kick level (default 50).
func (p *PowerLevels) Kick() int64 { return p.named[keyKick] }

// Redact returns the level to redact other users' events (default 50).
func (p *PowerLevels) Redact() int64 { return p.named[keyRedact] }

// Invite returns the invite level (default 0).
func (p *PowerLevels) Invite() int64 { return p.named[keyInvite] }

// StateDefault returns state_default (default 50, also with no event).
func (p *PowerLevels) StateDefault() int64 { return p.named[keyStateDefault] }

// EventsDefault returns events_default (default 0).
func (p *PowerLevels) EventsDefault() int64 { return p.named[keyEventsDefault] }

// UsersDefault returns users_default (default 0).
func (p *PowerLevels) UsersDefault() int64 { return p.named[keyUsersDefault] }

// Notification returns the level for a notification key; "room" (for
// @room) defaults to 50. ok is false for other keys without an entry.
func (p *PowerLevels) Notification(key string) (level int64, ok bool) {
	if v, found := p.notifs[key]; found {
		return v, true
	}
	if key == "room" {
		return defaultNotificationRoom, true
	}
	return 0, false
}

// Users returns a copy of the explicit users entries.
func (p *PowerLevels) Users() map[string]int64 { return maps.Clone(p.users) }

// Events returns a copy of the explicit events entries.
func (p *PowerLevels) Events() map[string]int64 { return maps.Clone(p.events) }

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
