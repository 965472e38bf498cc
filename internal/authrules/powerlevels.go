// Package authrules implements the Matrix authorisation rules ("Authorization
// rules" in each room version's spec, v1–v12) and the auth events selection
// algorithm of the Server-Server API. It is pure: the caller supplies the
// state the rules look at.
package authrules

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"

	"conclave/internal/event"
)

// Infinite is the power level of a privileged creator (room version 12).
const Infinite = math.MaxInt64

// PowerLevels is a parsed m.room.power_levels content with the spec's
// defaults applied.
type PowerLevels struct {
	Users         map[string]int64
	UsersDefault  int64
	Events        map[string]int64
	EventsDefault int64
	StateDefault  int64
	BanLevel      int64
	KickLevel     int64
	RedactLevel   int64
	InviteLevel   int64
	Notifications map[string]int64
	creators      map[string]bool
}

var errBadPowerLevels = errors.New("invalid m.room.power_levels content")

// ParsePowerLevels parses power levels content (nil when the room has no
// m.room.power_levels event) for the room whose create event is given.
// Before room version 10 integers may be given as strings; from 10 on they
// must be JSON integers.
func ParsePowerLevels(rv *event.RoomVersion, content json.RawMessage, create *event.PDU) (*PowerLevels, error) {
	pl := &PowerLevels{
		Users: map[string]int64{}, Events: map[string]int64{}, Notifications: map[string]int64{"room": 50},
		BanLevel: 50, KickLevel: 50, RedactLevel: 50, StateDefault: 50,
	}
	creators := Creators(create)
	if rv.PrivilegedCreators {
		pl.creators = make(map[string]bool, len(creators))
		for _, c := range creators {
			pl.creators[c] = true
		}
	}
	if len(content) == 0 {
		// No power levels event: the creator has 100, everyone else 0, and
		// state needs only 0 (spec: "state_default … 0 if there is no
		// m.room.power_levels event").
		pl.StateDefault = 0
		if !rv.PrivilegedCreators {
			for _, c := range creators {
				pl.Users[c] = 100
			}
		}
		return pl, nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(content, &raw); err != nil {
		return nil, errBadPowerLevels
	}
	ints := []struct {
		key string
		dst *int64
	}{
		{"users_default", &pl.UsersDefault}, {"events_default", &pl.EventsDefault}, {"state_default", &pl.StateDefault},
		{"ban", &pl.BanLevel}, {"kick", &pl.KickLevel}, {"redact", &pl.RedactLevel}, {"invite", &pl.InviteLevel},
	}
	for _, f := range ints {
		v, ok := raw[f.key]
		if !ok {
			continue
		}
		n, err := parseLevel(rv, v)
		if err != nil {
			return nil, errors.New("power level " + f.key + " must be an integer")
		}
		*f.dst = n
	}
	for _, m := range []struct {
		key string
		dst map[string]int64
	}{{"users", pl.Users}, {"events", pl.Events}, {"notifications", pl.Notifications}} {
		v, ok := raw[m.key]
		if !ok || isNull(v) {
			continue
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(v, &obj); err != nil {
			return nil, errors.New("power levels " + m.key + " must be an object")
		}
		for k, lv := range obj {
			n, err := parseLevel(rv, lv)
			if err != nil {
				return nil, errors.New("power levels " + m.key + " values must be integers")
			}
			m.dst[k] = n
		}
	}
	return pl, nil
}

func isNull(v json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(v), []byte("null")) }

// parseLevel reads one power level: a JSON integer, or before room version
// 10 also a string holding one (as Synapse accepted).
func parseLevel(rv *event.RoomVersion, v json.RawMessage) (int64, error) {
	v = bytes.TrimSpace(v)
	if len(v) > 0 && v[0] == '"' {
		if rv.IntegerPowerLevels {
			return 0, errBadPowerLevels
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return 0, err
		}
		return strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	}
	if len(v) == 0 || bytes.ContainsAny(v, ".eE") {
		return 0, errBadPowerLevels
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return 0, errBadPowerLevels
	}
	return n, nil
}

// UserLevel is the user's power level (Infinite for v12 creators).
func (p *PowerLevels) UserLevel(userID string) int64 {
	if p.creators[userID] {
		return Infinite
	}
	if n, ok := p.Users[userID]; ok {
		return n
	}
	return p.UsersDefault
}

// IsCreator reports whether the user is a privileged creator (v12).
func (p *PowerLevels) IsCreator(userID string) bool { return p.creators[userID] }

// EventLevel is the level needed to send an event of this type.
func (p *PowerLevels) EventLevel(eventType string, isState bool) int64 {
	if n, ok := p.Events[eventType]; ok {
		return n
	}
	if isState {
		return p.StateDefault
	}
	return p.EventsDefault
}

// Redact is the level needed to redact other users' events.
func (p *PowerLevels) Redact() int64 { return p.RedactLevel }

// Invite is the level needed to invite.
func (p *PowerLevels) Invite() int64 { return p.InviteLevel }

// Kick is the level needed to kick.
func (p *PowerLevels) Kick() int64 { return p.KickLevel }

// Ban is the level needed to ban.
func (p *PowerLevels) Ban() int64 { return p.BanLevel }

// Notification is the level needed for a notification key ("room").
func (p *PowerLevels) Notification(key string) int64 {
	if n, ok := p.Notifications[key]; ok {
		return n
	}
	return 50
}

// Creators lists the room's creators: content.creator before room version
// 11, the create event's sender from 11 on, plus additional_creators in 12.
func Creators(create *event.PDU) []string {
	if create == nil {
		return nil
	}
	rv := create.Version
	var c struct {
		Creator            string          `json:"creator"`
		AdditionalCreators json.RawMessage `json:"additional_creators"`
	}
	json.Unmarshal(create.Content, &c)
	if rv != nil && !rv.CreatorIsSender {
		if c.Creator == "" {
			return nil
		}
		return []string{c.Creator}
	}
	out := []string{create.Sender}
	if rv != nil && rv.PrivilegedCreators && len(c.AdditionalCreators) > 0 {
		var extra []string
		if json.Unmarshal(c.AdditionalCreators, &extra) == nil {
			out = append(out, extra...)
		}
	}
	return out
}
