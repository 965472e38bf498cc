package slidingsync

import (
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"

	"conclave/internal/changes"
	"conclave/internal/event"
	"conclave/internal/store"
)

// roomFacts are what lists and room headers need of a room's state.
type roomFacts struct {
	state     []*event.PDU // the state the user may see (current, or at their leave)
	encrypted bool
	roomType  *string
	name      string
	avatar    string
	joined    int
	invited   int
	heroes    []Hero
	tags      map[string]bool
	children  map[string]bool   // m.space.child state keys with a via
	stripped  []json.RawMessage // an invite's or knock's stripped state
}

// facts loads the room's state facts once per build.
func (b *build) roomFacts(roomID string) (*roomFacts, error) {
	b.mu.Lock()
	f := b.facts[roomID]
	b.mu.Unlock()
	if f != nil {
		return f, nil
	}
	m, member := b.members[roomID]
	f = &roomFacts{}
	var err error
	switch {
	case member && (m.Membership == "leave" || m.Membership == "ban"):
		f.state, err = b.s.rooms.StateAt(b.ctx, roomID, m.Pos)
	case member && (m.Membership == "invite" || m.Membership == "knock"):
		// The room may be on another server: only the stripped state.
		f.stripped, f.state, err = b.strippedPDUs(m)
	default:
		f.state, err = b.s.rooms.CurrentState(b.ctx, roomID)
	}
	if err != nil {
		return nil, err
	}
	var heroes []Hero
	for _, p := range f.state {
		if p.StateKey == nil {
			continue
		}
		key := *p.StateKey
		switch p.Type {
		case "m.room.encryption":
			f.encrypted = key == ""
		case "m.room.create":
			if key == "" {
				var c struct {
					Type *string `json:"type"`
				}
				if json.Unmarshal(p.Content, &c) == nil {
					f.roomType = c.Type
				}
			}
		case "m.room.name":
			if key == "" {
				var c struct {
					Name string `json:"name"`
				}
				json.Unmarshal(p.Content, &c)
				f.name = c.Name
			}
		case "m.room.avatar":
			if key == "" {
				var c struct {
					URL string `json:"url"`
				}
				json.Unmarshal(p.Content, &c)
				f.avatar = c.URL
			}
		case "m.space.child":
			var c struct {
				Via []string `json:"via"`
			}
			if json.Unmarshal(p.Content, &c) == nil && len(c.Via) > 0 {
				if f.children == nil {
					f.children = map[string]bool{}
				}
				f.children[key] = true
			}
		case "m.room.member":
			var c struct {
				Membership  string `json:"membership"`
				DisplayName string `json:"displayname"`
				AvatarURL   string `json:"avatar_url"`
			}
			json.Unmarshal(p.Content, &c)
			switch c.Membership {
			case "join":
				f.joined++
			case "invite":
				f.invited++
			default:
				continue
			}
			if key != b.user {
				heroes = append(heroes, Hero{UserID: key, DisplayName: c.DisplayName, AvatarURL: c.AvatarURL})
			}
		}
	}
	// Heroes as /sync's summary picks them: up to 5 other joined or
	// invited members, in user ID order.
	slices.SortFunc(heroes, func(a, c Hero) int { return strings.Compare(a.UserID, c.UserID) })
	if len(heroes) > 5 {
		heroes = heroes[:5]
	}
	f.heroes = heroes
	b.mu.Lock()
	b.facts[roomID] = f
	b.mu.Unlock()
	return f, nil
}

// strippedPDUs turns an invite's or knock's stripped state into PDUs (for
// the filters: name, encryption, type).
func (b *build) strippedPDUs(m store.Membership) ([]json.RawMessage, []*event.PDU, error) {
	evs, err := b.s.sync.StrippedState(b.ctx, b.user, m)
	if err != nil {
		return nil, nil, err
	}
	out := make([]*event.PDU, 0, len(evs))
	for _, e := range evs {
		var p event.PDU
		if json.Unmarshal(e, &p) == nil && p.StateKey != nil {
			out = append(out, &p)
		}
	}
	return evs, out, nil
}

// matches reports whether the room passes a list's filters.
func (b *build) matches(roomID string, f *Filters) (bool, error) {
	m := b.members[roomID]
	if f.IsInvite != nil && *f.IsInvite != (m.Membership == "invite") {
		return false, nil
	}
	if f.IsDM != nil {
		dms, err := b.directRooms()
		if err != nil {
			return false, err
		}
		if *f.IsDM != dms[roomID] {
			return false, nil
		}
	}
	needFacts := f.IsEncrypted != nil || f.roomTypesSet || f.NotRoomTypes != nil || f.RoomNameLike != nil || len(f.Spaces) > 0 || len(f.Tags) > 0 || len(f.NotTags) > 0
	if !needFacts {
		return true, nil
	}
	facts, err := b.roomFacts(roomID)
	if err != nil {
		return false, err
	}
	if f.IsEncrypted != nil && *f.IsEncrypted != facts.encrypted {
		return false, nil
	}
	typeIn := func(list []*string) bool {
		for _, t := range list {
			if (t == nil && facts.roomType == nil) || (t != nil && facts.roomType != nil && *t == *facts.roomType) {
				return true
			}
		}
		return false
	}
	if f.roomTypesSet && !typeIn(f.RoomTypes) {
		return false, nil
	}
	if f.NotRoomTypes != nil && typeIn(f.NotRoomTypes) {
		return false, nil
	}
	if f.RoomNameLike != nil && !strings.Contains(strings.ToLower(facts.name), strings.ToLower(*f.RoomNameLike)) {
		return false, nil
	}
	if len(f.Spaces) > 0 {
		in := false
		for _, space := range f.Spaces {
			if _, member := b.members[space]; !member {
				continue
			}
			sf, err := b.roomFacts(space)
			if err != nil {
				return false, err
			}
			if sf.children[roomID] {
				in = true
				break
			}
		}
		if !in {
			return false, nil
		}
	}
	if len(f.Tags) > 0 || len(f.NotTags) > 0 {
		tags, err := b.tags(roomID)
		if err != nil {
			return false, err
		}
		if len(f.Tags) > 0 && !slices.ContainsFunc(f.Tags, func(t string) bool { return tags[t] }) {
			return false, nil
		}
		if slices.ContainsFunc(f.NotTags, func(t string) bool { return tags[t] }) {
			return false, nil
		}
	}
	return true, nil
}

func (b *build) tags(roomID string) (map[string]bool, error) {
	raw, err := b.s.store.GetAccountData(b.ctx, b.user, roomID, "m.tag")
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	var c struct {
		Tags map[string]json.RawMessage `json:"tags"`
	}
	json.Unmarshal(raw, &c)
	out := map[string]bool{}
	for t := range c.Tags {
		out[t] = true
	}
	return out, nil
}

// directRooms are the rooms the user's m.direct account data names.
func (b *build) directRooms() (map[string]bool, error) {
	if b.dms != nil {
		return b.dms, nil
	}
	b.dms = map[string]bool{}
	raw, err := b.s.store.GetAccountData(b.ctx, b.user, "", "m.direct")
	if errors.Is(err, store.ErrNotFound) {
		return b.dms, nil
	}
	if err != nil {
		return nil, err
	}
	var direct map[string][]string
	json.Unmarshal(raw, &direct)
	for _, ids := range direct {
		for _, id := range ids {
			b.dms[id] = true
		}
	}
	return b.dms, nil
}

// room decides what to send of one room in the windows or subscriptions,
// and builds it.
func (b *build) room(roomID string, cfg *config) error {
	m := b.members[roomID]
	fp := cfg.fingerprint()
	b.mu.Lock()
	b.state.Configs[strconv.FormatInt(fp, 10)] = *cfg
	b.mu.Unlock()
	prev := b.ss.rooms[roomID]
	if m.Membership == "invite" || m.Membership == "knock" {
		if prev.Sent >= m.Pos {
			return nil // sent already
		}
		r, err := b.invited(m)
		if err != nil {
			return err
		}
		b.mu.Lock()
		b.resp.Rooms[roomID] = r
		b.sent[roomID] = roomSent{sent: m.Pos, config: fp} // a later join starts a new record of members
		b.mu.Unlock()
		return nil
	}
	bound := b.upto
	if m.Membership != "join" {
		bound = min(b.upto, m.Pos) // nothing after the user's leave or ban
	}
	initial := prev.Sent == 0 || (m.Membership == "join" && m.Pos > prev.Sent)
	var oldCfg *config
	if !initial && prev.Config != fp {
		sent, err := b.ss.configs()
		if err != nil {
			return err
		}
		if c, ok := sent[strconv.FormatInt(prev.Config, 10)]; ok {
			oldCfg = &c
		} else {
			initial = true // what was sent is forgotten: send it all again
		}
	}
	if !initial && oldCfg == nil {
		if prev.Sent >= bound {
			return nil
		}
		// Nothing written to the room since it was sent: nothing to send.
		t := b.s.sync.Tracker()
		if t.Known(prev.Sent) && !t.Changed(roomKey(changes.RoomEvents, roomID), prev.Sent, bound) {
			return nil
		}
	}
	r, lazy, err := b.joined(m, cfg, prev.Sent, bound, initial, oldCfg, prev.Lazy)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if r != nil {
		b.resp.Rooms[roomID] = r
	} else {
		lazy = prev.Lazy
	}
	b.sent[roomID] = roomSent{sent: max(bound, prev.Sent), config: fp, lazy: lazy}
	return nil
}

// invited is an invite's or knock's entry: its stripped state.
func (b *build) invited(m store.Membership) (*Room, error) {
	facts, err := b.roomFacts(m.RoomID)
	if err != nil {
		return nil, err
	}
	st := facts.stripped
	stamp := m.Pos
	// The name and avatar as the stripped state tells them (Synapse).
	r := &Room{Initial: true, InviteState: st, BumpStamp: &stamp, Name: facts.name, Avatar: facts.avatar}
	if dms, err := b.directRooms(); err == nil && dms[m.RoomID] {
		r.IsDM = true
	}
	if m.Membership == "invite" && !r.IsDM {
		// An invite marked is_direct is a DM before any m.direct names it.
		for _, e := range st {
			var ev struct {
				Type     string `json:"type"`
				StateKey string `json:"state_key"`
				Content  struct {
					IsDirect bool `json:"is_direct"`
				} `json:"content"`
			}
			if json.Unmarshal(e, &ev) == nil && ev.Type == memberType && ev.StateKey == b.user && ev.Content.IsDirect {
				r.IsDM = true
			}
		}
	}
	return r, nil
}
