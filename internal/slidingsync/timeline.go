package slidingsync

import (
	"encoding/json"
	"slices"

	"conclave/internal/store"
)

// joined builds the entry of a room the user is (or was, up to bound)
// joined to: from scratch when initial, else what changed in (sent, bound],
// plus what a config that changed from oldCfg adds. nil: nothing to send.
// sentLazy is the record of lazy members sent before (lazyMembers); the new
// record is returned with the entry.
func (b *build) joined(m store.Membership, cfg *config, sent, bound int64, initial bool, oldCfg *config, sentLazy []byte) (*Room, []byte, error) {
	limit := min(cfg.TimelineLimit, maxTimelineLoaded)
	after := sent
	expanded := false
	if initial {
		after = 0
	} else if oldCfg != nil && cfg.TimelineLimit > oldCfg.TimelineLimit {
		// A larger timeline than the client has: its latest events anew,
		// flagged (Synapse's unstable_expanded_timeline).
		after, expanded = 0, true
	}
	evs, limited, err := b.timeline(m, after, bound, limit)
	if err != nil {
		return nil, nil, err
	}
	facts, err := b.roomFacts(m.RoomID)
	if err != nil {
		return nil, nil, err
	}
	senders := make(map[string]bool, len(evs))
	for i := range evs {
		senders[evs[i].Sender] = true
	}
	spec := newConfigSpec(cfg, b.user)
	remembered := lazyMembers{}
	if !initial {
		remembered = decodeLazy(sentLazy)
	}
	var state []store.StoredEvent
	if initial {
		if state, err = b.currentState(facts, spec, senders, nil); err != nil {
			return nil, nil, err
		}
	} else {
		// The state that changed since the room was sent: in the timeline,
		// or the whole range when the timeline does not hold it all.
		changed := evs
		if limited || expanded {
			if changed, err = b.s.store.StateBetween(b.ctx, m.RoomID, sent, bound+1); err != nil {
				return nil, nil, err
			}
		}
		seen := map[string]bool{}
		for _, e := range changed {
			if e.StateKey != nil && spec.match(e.Type, *e.StateKey, senders) && !seen[e.EventID] {
				seen[e.EventID] = true
				state = append(state, e)
			}
		}
		// What a new config adds, and the members of the timeline's senders
		// ($LAZY: the client may not have them yet).
		var oldSpec *stateSpec
		if oldCfg != nil {
			oldSpec = newConfigSpec(oldCfg, b.user)
		}
		more, err := b.currentState(facts, spec, senders, func(typ, key string) bool {
			if oldSpec != nil && !oldSpec.match(typ, key, senders) {
				return true // newly required
			}
			return typ == memberType && spec.lazy && senders[key]
		})
		if err != nil {
			return nil, nil, err
		}
		for _, e := range more {
			if seen[e.EventID] {
				continue
			}
			if e.Type == memberType && (oldSpec == nil || oldSpec.match(e.Type, *e.StateKey, senders)) && remembered[*e.StateKey] == e.Pos {
				continue // a lazy member the client has, unchanged
			}
			seen[e.EventID] = true
			state = append(state, e)
		}
		if len(evs) == 0 && len(state) == 0 && !expanded {
			return nil, nil, nil
		}
	}
	// The member events sent now are the client's.
	if len(remembered) > maxLazyMembers {
		remembered = lazyMembers{}
	}
	for i := range state {
		if e := &state[i]; e.Type == memberType && e.StateKey != nil {
			remembered[*e.StateKey] = e.Pos
		}
	}
	var lazy []byte
	if len(remembered) > 0 {
		lazy, _ = json.Marshal(remembered)
	}
	r := &Room{Initial: initial, UnstableExpandedTimeline: expanded}
	if r.Timeline, err = b.s.rooms.ClientEventsKnowing(b.ctx, evs, b.user, b.device, false, &m); err != nil {
		return nil, nil, err
	}
	if r.RequiredState, err = b.s.rooms.ClientEventsKnowing(b.ctx, state, b.user, b.device, false, &m); err != nil {
		return nil, nil, err
	}
	r.Limited = &limited
	start := bound + 1
	if len(evs) > 0 {
		start = evs[0].Pos
	}
	r.PrevBatch = "t" + strconv64(start-1)
	live := 0
	if b.ss.state.Pos > 0 {
		for i := range evs {
			if evs[i].Pos > b.ss.state.Pos {
				live++
			}
		}
	}
	r.NumLive = &live
	stamp, err := b.bumpStamp(m.RoomID)
	if err != nil {
		return nil, nil, err
	}
	r.BumpStamp = &stamp
	joined, invited := facts.joined, facts.invited
	r.JoinedCount, r.InvitedCount = &joined, &invited
	r.Name, r.Avatar = facts.name, facts.avatar
	if r.Name == "" {
		r.Heroes = facts.heroes
	}
	if dms, err := b.directRooms(); err != nil {
		return nil, nil, err
	} else if dms[m.RoomID] {
		r.IsDM = true
	}
	if m.Membership == "join" {
		u, err := b.s.sync.UnreadCounts(b.ctx, m.RoomID, b.user, bound)
		if err != nil {
			return nil, nil, err
		}
		// Every thread's notifications together, as in /sync without
		// unread_thread_notifications.
		r.NotificationCount, r.HighlightCount = u.Total()
	}
	b.mu.Lock()
	if initial || expanded {
		b.initialRooms[m.RoomID] = true
	}
	b.timelines[m.RoomID] = evs
	b.mu.Unlock()
	return r, lazy, nil
}

// currentState returns the events of the room's state (facts) that spec
// requires, and keep (if not nil) accepts, as stored.
func (b *build) currentState(facts *roomFacts, spec *stateSpec, senders map[string]bool, keep func(typ, key string) bool) ([]store.StoredEvent, error) {
	if spec.empty() {
		return nil, nil
	}
	var ids []string
	for _, p := range facts.state {
		if p.StateKey == nil || p.EventID == "" || !spec.match(p.Type, *p.StateKey, senders) {
			continue
		}
		if keep != nil && !keep(p.Type, *p.StateKey) {
			continue
		}
		ids = append(ids, p.EventID)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	evs, err := b.s.store.GetEvents(b.ctx, ids)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(evs, func(a, c store.StoredEvent) int { return int(a.Pos - c.Pos) })
	return evs, nil
}

// timeline loads the room's latest events in (after, bound], at most
// limit, oldest first, as the user may see them (history visibility,
// ignored users), and whether older ones in the range were left out.
func (b *build) timeline(m store.Membership, after, bound int64, limit int) ([]store.StoredEvent, bool, error) {
	evs, ok := b.s.rooms.RecentEvents(m.RoomID, after, bound, limit+1)
	if !ok {
		var err error
		evs, err = b.s.store.RoomEvents(b.ctx, store.RoomEventsQuery{RoomID: m.RoomID, After: after, Before: bound + 1, Backwards: true, Limit: limit + 1})
		if err != nil {
			return nil, false, err
		}
	}
	limited := len(evs) > limit
	if limited {
		evs = evs[:limit]
	}
	if len(evs) == 0 {
		return nil, limited, nil
	}
	if evs[len(evs)-1].Pos < m.Pos || m.Membership != "join" {
		vis, err := b.s.rooms.Visibility(b.ctx, m.RoomID, b.user)
		if err != nil {
			return nil, false, err
		}
		evs = vis.Filter(evs)
	}
	ignored, err := b.s.sync.IgnoredUsers(b.ctx, b.user)
	if err != nil {
		return nil, false, err
	}
	if len(ignored) > 0 {
		kept := evs[:0:0]
		for _, e := range evs {
			if e.StateKey != nil || !ignored[e.Sender] {
				kept = append(kept, e)
			}
		}
		evs = kept
	}
	evs = slices.Clone(evs)
	slices.Reverse(evs)
	return evs, limited, nil
}

func strconv64(n int64) string {
	j, _ := json.Marshal(n)
	return string(j)
}
