package slidingsync

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"conclave/internal/changes"
	"conclave/internal/store"
)

// build assembles one response from the session's position up to the
// stream position now.
type build struct {
	s            *Service
	ctx          context.Context
	user, device string
	req          *Request
	ss           *session

	upto         int64
	members      map[string]store.Membership // the rooms the user may be shown
	dms          map[string]bool
	facts        map[string]*roomFacts // loaded on first need
	resp         *Response
	state        connState           // the connection's state at the new position
	sent         map[string]roomSent // rooms this response sent
	listsChanged bool
	// scope: the rooms of each list's windows, and the subscriptions.
	listRooms    map[string][]string
	subRooms     []string
	initialRooms map[string]bool // rooms sent with initial: true
	timelines    map[string][]store.StoredEvent
	stamps       map[string]int64 // bump stamps of every room when there are lists (shared with the cache: read only)
	// mu guards what rooms built at once write: facts, resp.Rooms, sent,
	// state.Configs, initialRooms, timelines.
	mu sync.Mutex
}

// roomWorkers is how many rooms of one response are built at once: a new
// connection's window is read from many rooms, and the reads (a cold cache
// after a restart) overlap on the machine's cores.
const roomWorkers = 4

func (b *build) empty() bool {
	return len(b.resp.Rooms) == 0 && !b.listsChanged && b.resp.Extensions.empty()
}

// trim drops what only building needed, before a long-poll waits with the
// (empty) response: an idle connection keeps little.
func (b *build) trim() {
	b.members, b.dms, b.facts, b.listRooms, b.subRooms, b.initialRooms, b.timelines, b.stamps = nil, nil, nil, nil, nil, nil, nil, nil
	// An empty response is answered with the client's position and records
	// nothing: the new state is not needed either.
	b.state, b.sent = connState{}, nil
	b.ctx, b.req = nil, nil
}

func (b *build) run() error {
	b.resp = &Response{Rooms: map[string]*Room{}}
	b.sent = map[string]roomSent{}
	b.facts = map[string]*roomFacts{}
	b.initialRooms = map[string]bool{}
	b.timelines = map[string][]store.StoredEvent{}
	// The configs used now; advance carries the others over.
	b.state = connState{Configs: map[string]config{}, Lists: map[string]string{}}
	var err error
	if b.upto, err = b.s.sync.Position(b.ctx, b.ss.state.Pos); err != nil {
		return err
	}
	b.upto = max(b.upto, b.ss.state.Pos)
	b.state.Pos = b.upto
	if err := b.loadMemberships(); err != nil {
		return err
	}
	configs := map[string]*config{}
	if err := b.lists(configs); err != nil {
		return err
	}
	for id, c := range b.req.RoomSubscriptions {
		if _, ok := b.members[id]; !ok {
			continue // not a room of the user's: nothing to show (Synapse ignores it too)
		}
		b.subRooms = append(b.subRooms, id)
		if configs[id] == nil {
			configs[id] = &config{}
		}
		configs[id].merge(c)
	}
	slices.Sort(b.subRooms)
	ids := make([]string, 0, len(configs))
	for id := range configs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if err := b.rooms(ids, configs); err != nil {
		return err
	}
	for id, r := range b.resp.Rooms {
		r.membership = b.members[id].Membership
	}
	for _, name := range sortedKeys(b.listRooms) {
		for _, id := range b.listRooms[name] {
			if r := b.resp.Rooms[id]; r != nil && !slices.Contains(r.lists, name) {
				r.lists = append(r.lists, name)
			}
		}
	}
	return b.extensions()
}

// rooms builds the rooms' entries, a few at a time when there are many.
func (b *build) rooms(ids []string, configs map[string]*config) error {
	if len(ids) < 2*roomWorkers {
		for _, id := range ids {
			if err := b.room(id, configs[id]); err != nil {
				return err
			}
		}
		return nil
	}
	// What rooms read lazily and share, read once first.
	if _, err := b.directRooms(); err != nil {
		return err
	}
	if _, err := b.ss.configs(); err != nil {
		return err
	}
	next := make(chan string)
	errs := make(chan error, roomWorkers)
	var wg sync.WaitGroup
	for range roomWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range next {
				if err := b.room(id, configs[id]); err != nil {
					errs <- err
					for range next {
					}
					return
				}
			}
		}()
	}
	for _, id := range ids {
		next <- id
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// loadMemberships keeps the rooms a list may show: joined, invited,
// knocked and banned rooms, and rooms left since the connection's
// position (so the client learns of the leave). Invites from ignored users
// are hidden, as in /sync.
func (b *build) loadMemberships() error {
	ms, err := b.s.sync.Memberships(b.ctx, b.user)
	if err != nil {
		return err
	}
	b.members = make(map[string]store.Membership, len(ms))
	for _, m := range ms {
		if m.Pos > b.upto {
			continue
		}
		switch m.Membership {
		case "join", "knock", "ban":
		case "invite":
			if b.s.sync.FromIgnored(b.ctx, b.user, m) {
				continue
			}
		case "leave":
			if m.Forgotten || b.ss.state.Pos == 0 || m.Pos <= b.ss.state.Pos {
				continue
			}
		default:
			continue
		}
		b.members[m.RoomID] = m
	}
	return nil
}

// lists orders the user's rooms for each list, cuts its windows and
// merges the configs of the rooms in them into configs.
func (b *build) lists(configs map[string]*config) error {
	if len(b.req.Lists) == 0 {
		return nil
	}
	// Every list orders by recency: stamps of all the user's rooms.
	stamps, err := b.allStamps()
	if err != nil {
		return err
	}
	all := make([]listRoom, 0, len(stamps))
	for id, st := range stamps {
		all = append(all, listRoom{id: id, stamp: st})
	}
	sortRooms(all)
	b.resp.Lists = map[string]*ListResponse{}
	b.listRooms = map[string][]string{}
	names := make([]string, 0, len(b.req.Lists))
	for name := range b.req.Lists {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		l := b.req.Lists[name]
		rooms := all
		if l.Filters != nil {
			rooms = make([]listRoom, 0, len(all))
			for _, r := range all {
				ok, err := b.matches(r.id, l.Filters)
				if err != nil {
					return err
				}
				if ok {
					rooms = append(rooms, r)
				}
			}
		}
		lr := &ListResponse{Count: len(rooms), Ops: []Op{}}
		h := sha256.New()
		h.Write([]byte(strconv.Itoa(len(rooms))))
		ranges := l.Ranges
		if ranges == nil && len(rooms) > 0 {
			ranges = [][]int{{0, len(rooms) - 1}}
		}
		for _, rg := range ranges {
			op := Op{Op: "SYNC", Range: []int{rg[0], rg[1]}, RoomIDs: []string{}}
			for i := rg[0]; i <= rg[1] && i < len(rooms); i++ {
				id := rooms[i].id
				op.RoomIDs = append(op.RoomIDs, id)
				if configs[id] == nil {
					configs[id] = &config{}
				}
				configs[id].merge(&l.RoomConfig)
				b.listRooms[name] = append(b.listRooms[name], id)
				h.Write([]byte{0})
				h.Write([]byte(id))
			}
			h.Write([]byte{1})
			lr.Ops = append(lr.Ops, op)
		}
		b.resp.Lists[name] = lr
		fp := hex.EncodeToString(h.Sum(nil)[:12])
		b.state.Lists[name] = fp
		if b.ss.state.Lists[name] != fp {
			b.listsChanged = true
		}
	}
	return nil
}

// listRoom is a room in a list with its recency.
type listRoom struct {
	id    string
	stamp int64
}

// sortRooms orders rooms by recency, most recent first (MSC4186: by the
// bump_stamp sent to the client), then by room ID so the order is total.
func sortRooms(rooms []listRoom) {
	slices.SortFunc(rooms, func(a, b listRoom) int {
		if a.stamp != b.stamp {
			if a.stamp > b.stamp {
				return -1
			}
			return 1
		}
		return strings.Compare(a.id, b.id)
	})
}

// userStamps are the bump stamps of all of a user's rooms at a position.
type userStamps struct {
	pos    int64
	stamps map[string]int64
}

// maxChangedScan bounds the range of positions a user's stamps are brought
// forward over with one query; beyond it each room is looked at.
const maxChangedScan = 10_000

// allStamps returns the bump stamp of every room of the user. The stamps
// of the user's last build are kept, and only those of the rooms with an
// event since (one query) or a membership since are computed again: an
// account in thousands of rooms costs a map copy, not thousands of lookups.
func (b *build) allStamps() (map[string]int64, error) {
	prev, ok := b.s.stamps.Get(b.user)
	if !ok {
		// Not in memory (a restart, another process): the saved ones.
		prev, ok = b.s.loadStamps(b.ctx, b.user)
	}
	var changed map[string]bool
	if ok && prev.pos <= b.upto && b.upto-prev.pos <= maxChangedScan {
		if prev.pos < b.upto {
			ids, err := b.s.store.ChangedRooms(b.ctx, prev.pos, b.upto)
			if err != nil {
				return nil, err
			}
			changed = make(map[string]bool, len(ids))
			for _, id := range ids {
				changed[id] = true
			}
		}
	} else {
		prev = nil
	}
	out := make(map[string]int64, len(b.members))
	var need []string
	for id, m := range b.members {
		if prev != nil && !changed[id] && m.Pos <= prev.pos {
			if st, ok := prev.stamps[id]; ok {
				out[id] = st
				continue
			}
		}
		need = append(need, id)
	}
	if err := b.stampsOf(need, out); err != nil {
		return nil, err
	}
	if len(need) >= saveStampsAfter {
		b.s.saveStamps(b.user, b.upto, out)
	}
	b.stamps = out
	b.s.stamps.Update(b.user, func(old *userStamps, ok bool) (*userStamps, bool) {
		if ok && old.pos > b.upto {
			return old, true // a later build got there first
		}
		return &userStamps{pos: b.upto, stamps: out}, true
	})
	return out, nil
}

// saveStampsAfter: stamps that took this many rooms' lookups are saved, so
// that the user's first request after a restart does not look them all up
// again.
const saveStampsAfter = 64

// loadStamps reads the user's saved stamps; none (or unreadable) is not an
// error: they are computed.
func (s *Service) loadStamps(ctx context.Context, userID string) (*userStamps, bool) {
	pos, raw, err := s.store.SlidingStamps(ctx, userID)
	if err != nil {
		return nil, false
	}
	stamps, ok := decodeStamps(raw)
	if !ok {
		return nil, false
	}
	return &userStamps{pos: pos, stamps: stamps}, true
}

// saveStamps writes the stamps on a goroutine of their own (not on the
// response's path), at most two at a time; a save that finds both busy is
// skipped (the next expensive build saves).
func (s *Service) saveStamps(userID string, pos int64, stamps map[string]int64) {
	select {
	case s.saving <- struct{}{}:
	default:
		return
	}
	raw := encodeStamps(stamps)
	go func() {
		defer func() { <-s.saving }()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.store.PutSlidingStamps(ctx, userID, pos, raw) // best effort: they are computed again otherwise
	}()
}

// encodeStamps: per room, its ID's length (uvarint), the ID, its stamp
// (varint); compact and quick to read back.
func encodeStamps(stamps map[string]int64) []byte {
	out := make([]byte, 0, len(stamps)*48)
	for id, st := range stamps {
		out = binary.AppendUvarint(out, uint64(len(id)))
		out = append(out, id...)
		out = binary.AppendVarint(out, st)
	}
	return out
}

func decodeStamps(raw []byte) (map[string]int64, bool) {
	out := map[string]int64{}
	for len(raw) > 0 {
		n, k := binary.Uvarint(raw)
		if k <= 0 || n > uint64(len(raw)-k) {
			return nil, false
		}
		id := string(raw[k : k+int(n)])
		raw = raw[k+int(n):]
		st, k := binary.Varint(raw)
		if k <= 0 {
			return nil, false
		}
		raw = raw[k:]
		out[id] = st
	}
	return out, true
}

// bumpTypes are the event types that move a room up a list (MSC4186's
// list and Synapse's DEFAULT_BUMP_EVENT_TYPES).
var bumpTypes = []string{"m.room.create", "m.room.message", "m.room.encrypted", "m.sticker", "m.call.invite", "m.poll.start", "m.beacon_info"}

// stampsOf computes the bump stamps of rooms: a room's recency is the
// stream position of its latest bump event for a joined room, of the
// membership otherwise (the user sees nothing after it). Each room's stamp
// is cached with the tracker's tick, so it is computed again only after an
// event was written to the room; the others come from one store query.
func (b *build) stampsOf(ids []string, out map[string]int64) error {
	t := b.s.sync.Tracker()
	var batch []string
	for _, id := range ids {
		m := b.members[id]
		if m.Membership != "join" {
			out[id] = m.Pos
			continue
		}
		if e, ok := b.s.bumps.Get(id); ok && e.upto <= b.upto && t.Unchanged(roomKey(changes.RoomEvents, id), e.tick) {
			out[id] = e.stamp
			continue
		}
		batch = append(batch, id)
	}
	if len(batch) == 0 {
		return nil
	}
	tick := t.Tick()
	found, err := b.latestBumps(batch)
	if err != nil {
		return err
	}
	for _, id := range batch {
		stamp := found[id]
		if stamp == 0 {
			stamp = b.members[id].Pos // no bump event here (a room joined over federation)
		}
		out[id] = stamp
		if t != nil && t.Unchanged(roomKey(changes.RoomEvents, id), tick) {
			b.s.bumps.Put(id, bump{tick: tick, upto: b.upto, stamp: stamp})
		}
	}
	return nil
}

// latestBumps looks up the rooms' latest bump events; many rooms (a new
// connection after a restart: every room of the account) in a few parts at
// once.
func (b *build) latestBumps(ids []string) (map[string]int64, error) {
	const part = 250
	if len(ids) <= part {
		return b.s.store.LatestEventPositions(b.ctx, ids, bumpTypes, b.upto)
	}
	n := min(roomWorkers, (len(ids)+part-1)/part)
	results := make([]map[string]int64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		lo, hi := i*len(ids)/n, (i+1)*len(ids)/n
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = b.s.store.LatestEventPositions(b.ctx, ids[lo:hi], bumpTypes, b.upto)
		}()
	}
	wg.Wait()
	out := make(map[string]int64, len(ids))
	for i := range n {
		if errs[i] != nil {
			return nil, errs[i]
		}
		for id, p := range results[i] {
			out[id] = p
		}
	}
	return out, nil
}

// bumpStamp is one room's stamp (computed with the lists' when there are
// lists).
func (b *build) bumpStamp(roomID string) (int64, error) {
	if st, ok := b.stamps[roomID]; ok {
		return st, nil
	}
	// Not in b.stamps, which the user's cache entry shares: a map of its own.
	one := map[string]int64{}
	err := b.stampsOf([]string{roomID}, one)
	return one[roomID], err
}

// inScope lists the rooms an extension covers: those of the named lists'
// windows and the named subscriptions ("*": all); all of both when the
// extension names neither.
func (b *build) inScope(e *ScopedExt) []string {
	seen := map[string]bool{}
	var out []string
	add := func(id string) {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	lists, rooms := e.Lists, e.Rooms
	if lists == nil {
		lists = []string{wildcard}
	}
	if rooms == nil {
		rooms = []string{wildcard}
	}
	for _, name := range lists {
		if name == wildcard {
			for _, ids := range b.listRooms {
				for _, id := range ids {
					add(id)
				}
			}
			continue
		}
		for _, id := range b.listRooms[name] {
			add(id)
		}
	}
	for _, id := range rooms {
		if id == wildcard {
			for _, id := range b.subRooms {
				add(id)
			}
			continue
		}
		if slices.Contains(b.subRooms, id) {
			add(id)
		}
	}
	slices.Sort(out)
	return out
}

func marshalEvent(typ string, content any) json.RawMessage {
	j, _ := json.Marshal(map[string]any{"type": typ, "content": content})
	return j
}
