package slidingsync

import (
	"encoding/json"
	"slices"
	"strconv"

	"conclave/internal/changes"
	"conclave/internal/store"
	"conclave/internal/threadsubs"
)

// extensions fills the enabled extensions, each from the same sources as
// /sync (syncer.Sources) over the connection's range (state.Pos, upto].
func (b *build) extensions() error {
	e := &b.req.Extensions
	b.state.Typing = b.ss.state.Typing
	if e.ToDevice != nil && e.ToDevice.on() {
		if err := b.toDevice(e.ToDevice); err != nil {
			return err
		}
	}
	if e.E2EE.on() {
		if err := b.e2ee(); err != nil {
			return err
		}
	}
	if e.AccountData != nil && e.AccountData.on() {
		if err := b.accountData(b.inScope(e.AccountData)); err != nil {
			return err
		}
	}
	if e.Receipts != nil && e.Receipts.on() {
		if err := b.receipts(b.inScope(e.Receipts)); err != nil {
			return err
		}
	}
	if e.Typing != nil && e.Typing.on() {
		b.typing(b.inScope(e.Typing))
	}
	for _, ts := range []struct {
		ext *ThreadSubsExt
		out **ThreadSubsResponse
	}{{e.ThreadSubscriptions, &b.resp.Extensions.ThreadSubscriptions}, {e.ThreadSubscriptionsUnstable, &b.resp.Extensions.ThreadSubscriptionsUnstable}} {
		if ts.ext != nil && ts.ext.on() {
			r, err := b.threadSubscriptions(ts.ext)
			if err != nil {
				return err
			}
			*ts.out = r
		}
	}
	return nil
}

// threadSubscriptions reports the latest changes to the user's thread
// subscriptions in (state.Pos, upto] (MSC4308; every subscription's latest
// state on a new connection), nil when there are none. When more changed
// than the limit, prev_batch lets the client page back through the rest
// with /thread_subscriptions.
func (b *build) threadSubscriptions(ext *ThreadSubsExt) (*ThreadSubsResponse, error) {
	if b.s.ThreadSubs == nil {
		return nil, nil
	}
	limit := threadsubs.DefaultLimit
	if ext.Limit != nil {
		limit = *ext.Limit
	}
	cs, more, err := b.s.ThreadSubs.ChangesBetween(b.ctx, b.user, b.ss.state.Pos, b.upto, limit)
	if err != nil || len(cs) == 0 {
		return nil, err
	}
	r := &ThreadSubsResponse{Encoded: threadsubs.Encode(cs)}
	if more {
		r.PrevBatch = threadsubs.Token{Upper: cs[0].Pos - 1, Lower: b.ss.state.Pos}.String()
	}
	return r, nil
}

// toDevice delivers the device's to-device messages after the extension's
// own since, exactly as /sync does: those at or below since are deleted
// (the client acknowledged them by sending since), the next batch is
// (since, next_batch], and a full batch stops there so nothing is skipped.
func (b *build) toDevice(ext *ToDeviceExt) error {
	src := b.s.sync.Sources().E2EE
	if src == nil {
		return nil
	}
	var since int64
	if ext.Since != "" {
		n, err := strconv.ParseInt(ext.Since, 10, 64)
		if err != nil || n < 0 {
			return invalid("to_device since is not a position this server gave")
		}
		since = n
	}
	evs, next, _, _, err := src(b.ctx, b.user, b.device, since, max(b.upto, since))
	if err != nil {
		return err
	}
	next = max(min(next, max(b.upto, since)), since)
	if evs == nil {
		evs = []json.RawMessage{}
	}
	b.resp.Extensions.ToDevice = &ToDeviceResponse{NextBatch: strconv.FormatInt(next, 10), Events: evs}
	return nil
}

func (b *build) e2ee() error {
	src := b.s.sync.Sources()
	out := &E2EEResponse{OTKCounts: map[string]int{}, FallbackKeyTypes: []string{}}
	if src.E2EECounts != nil {
		otk, fallback, err := src.E2EECounts(b.ctx, b.user, b.device)
		if err != nil {
			return err
		}
		if otk != nil {
			out.OTKCounts = otk
		}
		if fallback != nil {
			out.FallbackKeyTypes = fallback
		}
	}
	if base := b.ss.state.Pos; base > 0 && src.DeviceLists != nil {
		changed, left, err := src.DeviceLists(b.ctx, b.user, base, b.upto)
		if err != nil {
			return err
		}
		out.DeviceLists = &DeviceLists{Changed: nonNil(changed), Left: nonNil(left)}
	}
	b.resp.Extensions.E2EE = out
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// accountData sends global account data, and that of the rooms in scope:
// all of it for a new connection and for rooms sent initial, what changed
// since the connection's position otherwise.
func (b *build) accountData(scope []string) error {
	base := b.ss.state.Pos
	anyInitial := slices.ContainsFunc(scope, func(id string) bool { return b.initialRooms[id] })
	out := &AccountDataResponse{Global: []json.RawMessage{}, Rooms: map[string][]json.RawMessage{}}
	b.resp.Extensions.AccountData = out
	from := base
	if anyInitial {
		from = 0
	}
	t := b.s.sync.Tracker()
	if base > 0 && !anyInitial && t.Known(base) && !t.Changed(changes.Key{Kind: changes.AccountData, Subject: b.user}, base, b.upto) {
		return nil
	}
	items, err := b.s.store.AccountDataSince(b.ctx, b.user, from)
	if err != nil {
		return err
	}
	inScope := make(map[string]bool, len(scope))
	for _, id := range scope {
		inScope[id] = true
	}
	globals := map[string]bool{}
	for _, it := range items {
		if it.Pos > b.upto {
			continue
		}
		if it.RoomID == "" {
			if it.Pos > base || base == 0 {
				globals[it.Type] = true
				out.Global = append(out.Global, marshalEvent(it.Type, it.Content))
			}
			continue
		}
		if inScope[it.RoomID] && (it.Pos > base || b.initialRooms[it.RoomID]) {
			out.Rooms[it.RoomID] = append(out.Rooms[it.RoomID], marshalEvent(it.Type, it.Content))
		}
	}
	if base == 0 {
		if defaults := b.s.sync.Sources().AccountDataDefaults; defaults != nil {
			for typ, c := range defaults(b.user) {
				if !globals[typ] {
					out.Global = append(out.Global, marshalEvent(typ, c))
				}
			}
		}
	}
	return nil
}

// receipts sends the receipts of the rooms in scope: for a room sent
// initial, those on its timeline's events and the user's own (Synapse); for
// the others, those that changed since the connection's position.
func (b *build) receipts(scope []string) error {
	format := b.s.sync.Sources().Receipts
	if format == nil || len(scope) == 0 {
		return nil
	}
	var initial, rest []string
	for _, id := range scope {
		if b.initialRooms[id] {
			initial = append(initial, id)
		} else if b.ss.state.Pos > 0 {
			rest = append(rest, id)
		}
	}
	var rows []store.Receipt
	if len(initial) > 0 {
		all, err := b.s.store.ReceiptsSince(b.ctx, initial, 0)
		if err != nil {
			return err
		}
		for _, r := range all {
			if r.Pos <= b.upto && (r.UserID == b.user || slices.ContainsFunc(b.timelines[r.RoomID], func(e store.StoredEvent) bool { return e.EventID == r.EventID })) {
				rows = append(rows, r)
			}
		}
	}
	if len(rest) > 0 {
		base := b.ss.state.Pos
		t := b.s.sync.Tracker()
		keys := make([]changes.Key, len(rest))
		for i, id := range rest {
			keys[i] = roomKey(changes.Receipts, id)
		}
		if !t.Known(base) || t.ChangedAny(keys, base, b.upto) {
			more, err := b.s.store.ReceiptsSince(b.ctx, rest, base)
			if err != nil {
				return err
			}
			for _, r := range more {
				if r.Pos <= b.upto {
					rows = append(rows, r)
				}
			}
		}
	}
	out := &RoomsEvents{Rooms: map[string]json.RawMessage{}}
	for roomID, content := range format(b.user, rows) {
		out.Rooms[roomID] = marshalEvent("m.receipt", content)
	}
	b.resp.Extensions.Receipts = out
	return nil
}

// typing sends who is typing in the rooms in scope: every room whose
// typing set changed since the connection's serial, and the rooms sent
// initial where someone is typing.
func (b *build) typing(scope []string) {
	src := b.s.sync.Sources().Typing
	out := &RoomsEvents{Rooms: map[string]json.RawMessage{}}
	b.resp.Extensions.Typing = out
	if src == nil {
		return
	}
	var initial, rest []string
	for _, id := range scope {
		if b.initialRooms[id] || b.ss.state.Typing == 0 {
			initial = append(initial, id)
		} else {
			rest = append(rest, id)
		}
	}
	serial := b.ss.state.Typing
	changed, cur := src(rest, serial)
	if serial > cur {
		changed, cur = src(rest, 0) // a serial from before a restart
	}
	b.state.Typing = cur
	put := func(roomID string, users []string) {
		if users == nil {
			users = []string{}
		}
		out.Rooms[roomID] = marshalEvent("m.typing", map[string]any{"user_ids": users})
	}
	for roomID, users := range changed {
		put(roomID, users)
	}
	if len(initial) > 0 {
		now, cur2 := src(initial, 0)
		b.state.Typing = max(cur, cur2)
		for roomID, users := range now {
			if len(users) > 0 {
				put(roomID, users)
			}
		}
	}
}
