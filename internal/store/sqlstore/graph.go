package sqlstore

import (
	"context"
	"errors"
	"strings"

	"conclave/internal/store"
)

// The room graph (store.Graph): events of every kind, state groups, and the
// writes of events whose prev_events are not simply the room's forward
// extremities. Local events in a line keep the backends' own PersistEvents
// (the hot path); both write the same rows.

var graphEventCols = []string{"event_id", "room_id", "type", "state_key", "sender", "depth", "origin_server_ts", "json",
	"replaces_state", "membership", "relates_to", "rel_type", "sender_device", "txn_id", "contains_url", "state_group", "kind", "rejected_reason", "current_group"}

func graphEventRow(e *store.NewEvent, stateGroup int64, kind int, reason string, current int64) []any {
	var sk any
	if e.StateKey != nil {
		sk = *e.StateKey
	}
	return []any{e.EventID, e.RoomID, e.Type, sk, e.Sender, e.Depth, e.OriginServerTS, e.JSON,
		e.ReplacesState, e.Membership, e.RelatesTo, e.RelType, e.SenderDevice, e.TxnID, e.ContainsURL, stateGroup, kind, reason, current}
}

func (s *Shared) PersistGraphEvent(ctx context.Context, w *store.GraphWrite) (pos, group int64, err error) {
	err = s.b.Tx(ctx, func(tx Querier) error {
		var err error
		pos, group, err = s.PersistGraphEventTx(ctx, tx, w)
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	return pos, group, nil
}

func (s *Shared) PersistGraphEvents(ctx context.Context, ws []*store.GraphWrite) (pos, groups []int64, err error) {
	err = s.b.Tx(ctx, func(tx Querier) error {
		var err error
		pos, groups, err = s.PersistGraphEventsTx(ctx, tx, ws)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return pos, groups, nil
}

// PersistGraphEventTx is PersistGraphEvent inside tx (a backend's group
// commit runs several in one transaction).
func (s *Shared) PersistGraphEventTx(ctx context.Context, tx Querier, w *store.GraphWrite) (pos, group int64, err error) {
	p, g, err := s.PersistGraphEventsTx(ctx, tx, []*store.GraphWrite{w})
	if err != nil {
		return 0, 0, err
	}
	return p[0], g[0], nil
}

// PersistGraphEventsTx is PersistGraphEvents inside tx. The room's current
// state group and forward extremities are written once, after the last
// timeline event (each write would replace the one before).
func (s *Shared) PersistGraphEventsTx(ctx context.Context, tx Querier, ws []*store.GraphWrite) (pos, groups []int64, err error) {
	if len(ws) == 0 {
		return nil, nil, nil
	}
	roomID := ws[0].Event.RoomID
	if roomID == "" {
		return nil, nil, errors.New("sqlstore: graph event without a room")
	}
	if err := s.b.Lock(ctx, tx, LockRoom, roomID); err != nil {
		return nil, nil, err
	}
	pos, groups = make([]int64, len(ws)), make([]int64, len(ws))
	b := graphBatch{}
	for i, w := range ws {
		if w.Event.RoomID != roomID {
			return nil, nil, errors.New("sqlstore: graph events of several rooms in one write")
		}
		if w.StateBeforeOf != 0 {
			if w.StateBeforeOf < 1 || w.StateBeforeOf > i || groups[w.StateBeforeOf-1] == 0 {
				return nil, nil, errors.New("sqlstore: a graph write's state is that of no earlier write")
			}
			cp := *w
			cp.StateBefore, cp.StateBeforeOf = groups[w.StateBeforeOf-1], 0
			w = &cp
		}
		if pos[i], groups[i], err = s.persistGraphEvent(ctx, tx, w, &b); err != nil {
			return nil, nil, err
		}
	}
	if b.timeline {
		if _, err := tx.Exec(ctx, `UPDATE rooms SET state_group = ? WHERE room_id = ?`, b.current, roomID); err != nil {
			return nil, nil, err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM forward_extremities WHERE room_id = ?`, roomID); err != nil {
			return nil, nil, err
		}
		for _, id := range b.extremities {
			if _, err := tx.Exec(ctx, `INSERT INTO forward_extremities (room_id, event_id) VALUES (?, ?)`, roomID, id); err != nil {
				return nil, nil, err
			}
		}
	}
	return pos, groups, nil
}

// graphBatch is what the timeline writes of one call leave to write once at
// its end: the room's current state group and forward extremities.
type graphBatch struct {
	timeline    bool
	current     int64
	extremities []string
}

func (s *Shared) persistGraphEvent(ctx context.Context, tx Querier, w *store.GraphWrite, b *graphBatch) (pos, group int64, err error) {
	e := &w.Event
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM events WHERE event_id = ?)`, e.EventID).Scan(&exists); err != nil {
		return 0, 0, err
	}
	if exists {
		return 0, 0, store.ErrConflict
	}
	if len(e.Fed) > 0 {
		// Queued for the servers this one relays it to (store.NewEvent.Fed).
		if err := s.fedEnqueue(ctx, tx, &store.FedEnqueue{Destinations: e.Fed, Item: store.FedItem{EventID: e.EventID, JSON: e.JSON}}); err != nil {
			return 0, 0, err
		}
	}
	if w.Kind == store.KindRejected || w.Kind == store.KindOutlier {
		err = s.insertApart(ctx, tx, e, w.Kind, w.RejectedReason, &pos)
		return pos, 0, err
	}
	before := w.StateBefore
	if w.NewStateBefore {
		if before, err = s.newStateGroup(ctx, tx, e.RoomID, w.StateBefore, w.StateBeforeChanges); err != nil {
			return 0, 0, err
		}
	}
	group = before
	if e.StateKey != nil {
		own := []store.StateEntry{{Type: e.Type, StateKey: *e.StateKey, EventID: e.EventID, Membership: e.Membership}}
		if group, err = s.newStateGroup(ctx, tx, e.RoomID, before, own); err != nil {
			return 0, 0, err
		}
	}
	if w.Kind == store.KindSoftFailed {
		err = s.insertApartWithState(ctx, tx, e, group, &pos)
		return pos, group, err
	}
	if w.Kind != store.KindTimeline {
		return 0, 0, errors.New("sqlstore: unknown event kind")
	}
	current := group
	changes := w.CurrentChanges
	if w.CurrentResolved {
		old := b.current
		if !b.timeline {
			if err := tx.QueryRow(ctx, `SELECT state_group FROM rooms WHERE room_id = ?`, e.RoomID).Scan(&old); err != nil {
				return 0, 0, notFound(err)
			}
		}
		if current, err = s.newStateGroup(ctx, tx, e.RoomID, old, changes); err != nil {
			return 0, 0, err
		}
	} else if e.StateKey != nil {
		changes = []store.StateEntry{{Type: e.Type, StateKey: *e.StateKey, EventID: e.EventID, Membership: e.Membership}}
	} else {
		changes = nil
	}
	if err := s.b.InsertAtNewPositions(ctx, tx, "events", graphEventCols, [][]any{graphEventRow(e, group, store.KindTimeline, "", current)}); err != nil {
		if s.b.IsUnique(err) {
			return 0, 0, store.ErrConflict
		}
		return 0, 0, err
	}
	if err := tx.QueryRow(ctx, `SELECT pos FROM events WHERE event_id = ?`, e.EventID).Scan(&pos); err != nil {
		return 0, 0, err
	}
	if err := InsertPushActions(ctx, tx, s.d.ArrayParams, e, pos); err != nil {
		return 0, 0, err
	}
	if w.GapBefore {
		if _, err := tx.Exec(ctx, `INSERT INTO timeline_gaps (room_id, pos) VALUES (?, ?)`, e.RoomID, pos); err != nil {
			return 0, 0, err
		}
	}
	if e.Redacts != "" {
		// Only the first redaction counts (as in PersistEvents).
		if _, err := tx.Exec(ctx, `UPDATE events SET redacted_by = ? WHERE event_id = ? AND room_id = ? AND redacted_by = ''`, e.EventID, e.Redacts, e.RoomID); err != nil {
			return 0, 0, err
		}
	}
	if err := applyCurrentState(ctx, tx, e.RoomID, changes); err != nil {
		return 0, 0, err
	}
	b.timeline, b.current, b.extremities = true, current, w.Extremities
	return pos, group, nil
}

// insertApart writes an event of a kind clients never see at the next
// negative position.
func (s *Shared) insertApart(ctx context.Context, tx Querier, e *store.NewEvent, kind int, reason string, pos *int64) error {
	return s.insertApartRow(ctx, tx, graphEventRow(e, 0, kind, reason, 0), pos)
}

func (s *Shared) insertApartWithState(ctx context.Context, tx Querier, e *store.NewEvent, group int64, pos *int64) error {
	return s.insertApartRow(ctx, tx, graphEventRow(e, group, store.KindSoftFailed, "", 0), pos)
}

func (s *Shared) insertApartRow(ctx context.Context, tx Querier, row []any, pos *int64) error {
	if err := tx.QueryRow(ctx, s.d.ApartPos).Scan(pos); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `INSERT INTO events (pos, `+strings.Join(graphEventCols, ", ")+`) VALUES (?`+strings.Repeat(", ?", len(graphEventCols))+`)`,
		append([]any{*pos}, row...)...)
	if s.b.IsUnique(err) {
		return store.ErrConflict
	}
	return err
}

func (s *Shared) PersistOutliers(ctx context.Context, events []store.NewEvent) error {
	if len(events) == 0 {
		return nil
	}
	return s.b.Tx(ctx, func(tx Querier) error {
		for i := range events {
			e := &events[i]
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM events WHERE event_id = ?)`, e.EventID).Scan(&exists); err != nil {
				return err
			}
			if exists {
				continue
			}
			var pos int64
			if err := s.insertApart(ctx, tx, e, store.KindOutlier, "", &pos); err != nil {
				return err
			}
		}
		return nil
	})
}

// applyCurrentState applies changes to the room's current state and its
// memberships. A state event's position there is its stream position (0 for
// one that is not in the timeline, such as a soft-failed event that won a
// state resolution).
func applyCurrentState(ctx context.Context, tx Querier, roomID string, changes []store.StateEntry) error {
	for _, c := range changes {
		if c.EventID == "" {
			if _, err := tx.Exec(ctx, `DELETE FROM room_state WHERE room_id = ? AND type = ? AND state_key = ?`, roomID, c.Type, c.StateKey); err != nil {
				return err
			}
			if c.Type == "m.room.member" {
				if _, err := tx.Exec(ctx, `DELETE FROM memberships WHERE room_id = ? AND user_id = ?`, roomID, c.StateKey); err != nil {
					return err
				}
			}
			continue
		}
		if _, err := tx.Exec(ctx, `INSERT INTO room_state (room_id, type, state_key, event_id, pos)
			VALUES (?1, ?2, ?3, ?4, coalesce((SELECT max(pos) FROM events WHERE event_id = ?4 AND pos > 0), 0))
			ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id, pos = excluded.pos`,
			roomID, c.Type, c.StateKey, c.EventID); err != nil {
			return err
		}
		if c.Type == "m.room.member" {
			if _, err := tx.Exec(ctx, `INSERT INTO memberships (room_id, user_id, membership, event_id, pos)
				VALUES (?1, ?2, ?3, ?4, coalesce((SELECT max(pos) FROM events WHERE event_id = ?4 AND pos > 0), 0))
				ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, event_id = excluded.event_id, pos = excluded.pos, forgotten = false`,
				roomID, c.StateKey, c.Membership, c.EventID); err != nil {
				return err
			}
		}
	}
	return nil
}

// newStateGroup stores the state made of changes on top of group base (0:
// nothing) and returns its group: base itself when nothing changes, a delta
// on base, or a snapshot when base is 0 or its chain of deltas is at
// store.MaxStateGroupChain.
func (s *Shared) newStateGroup(ctx context.Context, tx Querier, roomID string, base int64, changes []store.StateEntry) (int64, error) {
	if base != 0 && len(changes) == 0 {
		return base, nil
	}
	var chain int64
	if base != 0 {
		if err := tx.QueryRow(ctx, `SELECT chain FROM state_groups WHERE id = ?`, base).Scan(&chain); err != nil {
			return 0, notFound(err)
		}
	}
	entries := changes
	prev := base
	if base == 0 || chain+1 >= store.MaxStateGroupChain {
		full, err := stateGroupEntries(ctx, tx, base)
		if err != nil {
			return 0, err
		}
		entries = mergeState(full, changes)
		prev, chain = 0, -1
	}
	var id int64
	if err := tx.QueryRow(ctx, `INSERT INTO state_groups (room_id, prev_id, chain) VALUES (?, ?, ?) RETURNING id`, roomID, prev, chain+1).Scan(&id); err != nil {
		return 0, err
	}
	const perInsert = 200
	for len(entries) > 0 {
		n := min(len(entries), perInsert)
		args := make([]any, 0, 4*n)
		for _, e := range entries[:n] {
			args = append(args, id, e.Type, e.StateKey, e.EventID)
		}
		q := `INSERT INTO state_group_entries (group_id, type, state_key, event_id) VALUES (?, ?, ?, ?)` + strings.Repeat(", (?, ?, ?, ?)", n-1) +
			` ON CONFLICT (group_id, type, state_key) DO UPDATE SET event_id = excluded.event_id`
		if _, err := tx.Exec(ctx, q, args...); err != nil {
			return 0, err
		}
		entries = entries[n:]
	}
	return id, nil
}

// mergeState applies changes to a whole state (a removal drops the key).
func mergeState(full, changes []store.StateEntry) []store.StateEntry {
	type key struct{ t, k string }
	idx := make(map[key]int, len(full))
	for i, e := range full {
		idx[key{e.Type, e.StateKey}] = i
	}
	out := full
	for _, c := range changes {
		if i, ok := idx[key{c.Type, c.StateKey}]; ok {
			out[i].EventID = c.EventID
		} else if c.EventID != "" {
			idx[key{c.Type, c.StateKey}] = len(out)
			out = append(out, c)
		}
	}
	kept := out[:0]
	for _, e := range out {
		if e.EventID != "" {
			kept = append(kept, e)
		}
	}
	return kept
}

// stateGroupIDsSQL reads a group's whole state as event IDs: its chain of
// deltas back to the snapshot, the nearest entry of each key winning.
const stateGroupIDsSQL = `WITH RECURSIVE chain(id, prev, n) AS (
		SELECT id, prev_id, 0 FROM state_groups WHERE id = ?
		UNION ALL
		SELECT g.id, g.prev_id, c.n + 1 FROM chain c JOIN state_groups g ON g.id = c.prev WHERE c.prev <> 0 AND c.n < 1000
	)
	SELECT type, state_key, event_id FROM (
		SELECT x.type, x.state_key, x.event_id, row_number() OVER (PARTITION BY x.type, x.state_key ORDER BY c.n) AS rn
		FROM chain c JOIN state_group_entries x ON x.group_id = c.id
	) s WHERE s.rn = 1 AND s.event_id <> ''`

func stateGroupEntries(ctx context.Context, q Querier, group int64) ([]store.StateEntry, error) {
	if group == 0 {
		return nil, nil
	}
	rows, err := q.Query(ctx, stateGroupIDsSQL, group)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.StateEntry
	for rows.Next() {
		var e store.StateEntry
		if err := rows.Scan(&e.Type, &e.StateKey, &e.EventID); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func (s *Shared) StateGroup(ctx context.Context, group int64) ([]store.StateEntry, error) {
	return stateGroupEntries(ctx, s.b.Read(), group)
}

func (s *Shared) RoomStateGroup(ctx context.Context, roomID string) (int64, error) {
	var g int64
	err := s.b.Read().QueryRow(ctx, `SELECT state_group FROM rooms WHERE room_id = ?`, roomID).Scan(&g)
	return g, notFound(err)
}

func (s *Shared) GetPDUs(ctx context.Context, ids []string) ([]store.PDU, error) {
	var out []store.PDU
	chunk := s.d.Chunk(1)
	for len(ids) > 0 {
		n := min(len(ids), chunk)
		cond, args := s.d.In("event_id", ids[:n], nil)
		rows, err := s.b.Read().Query(ctx, `SELECT event_id, room_id, json, kind, rejected_reason, state_group, pos, depth, replaces_state FROM events WHERE `+cond, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var p store.PDU
			if err := rows.Scan(&p.EventID, &p.RoomID, &p.JSON, &p.Kind, &p.RejectedReason, &p.StateGroup, &p.Pos, &p.Depth, &p.ReplacesState); err != nil {
				rows.Close()
				return nil, err
			}
			out = append(out, p)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, err
		}
		ids = ids[n:]
	}
	return out, nil
}

func (s *Shared) PersistRemoteMembership(ctx context.Context, m *store.RemoteMembership) (int64, error) {
	var pos int64
	err := s.b.Tx(ctx, func(tx Querier) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM events WHERE event_id = ?)`, m.Event.EventID).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			var apart int64
			if err := s.insertApart(ctx, tx, &m.Event, store.KindOutlier, "", &apart); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM remote_memberships WHERE room_id = ? AND user_id = ?`, m.RoomID, m.UserID); err != nil {
			return err
		}
		if err := s.b.InsertAtNewPositions(ctx, tx, "remote_memberships", []string{"room_id", "user_id", "event_id", "room_version", "stripped_state"},
			[][]any{{m.RoomID, m.UserID, m.Event.EventID, m.RoomVersion, m.StrippedState}}); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT pos FROM remote_memberships WHERE room_id = ? AND user_id = ?`, m.RoomID, m.UserID).Scan(&pos); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO memberships (room_id, user_id, membership, event_id, pos) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, event_id = excluded.event_id, pos = excluded.pos, forgotten = false`,
			m.RoomID, m.UserID, m.Membership, m.Event.EventID, pos)
		return err
	})
	return pos, err
}

func (s *Shared) GetRemoteMembership(ctx context.Context, roomID, userID string) (*store.RemoteMembership, error) {
	m := store.RemoteMembership{RoomID: roomID, UserID: userID}
	err := s.b.Read().QueryRow(ctx, `SELECT r.event_id, r.room_version, r.stripped_state, r.pos, coalesce(m.membership, '') FROM remote_memberships r
		LEFT JOIN memberships m ON m.room_id = r.room_id AND m.user_id = r.user_id AND m.event_id = r.event_id
		WHERE r.room_id = ? AND r.user_id = ?`, roomID, userID).Scan(&m.Event.EventID, &m.RoomVersion, &m.StrippedState, &m.Pos, &m.Membership)
	if err != nil {
		return nil, notFound(err)
	}
	return &m, nil
}

func (s *Shared) RemoteRoomVersion(ctx context.Context, roomID string) (string, error) {
	var v string
	err := s.b.Read().QueryRow(ctx, `SELECT room_version FROM remote_memberships WHERE room_id = ? LIMIT 1`, roomID).Scan(&v)
	return v, notFound(err)
}

func (s *Shared) PersistBackfill(ctx context.Context, roomID string, events []store.BackfillEvent) (int, error) {
	if len(events) == 0 {
		return 0, nil
	}
	var n int
	err := s.b.Tx(ctx, func(tx Querier) error {
		n = 0
		for i := range events {
			b := &events[i]
			e := &b.Event
			if e.RoomID != roomID {
				return errors.New("sqlstore: backfilled event of another room")
			}
			var kind int
			var redactedBy string
			if err := tx.QueryRow(ctx, `SELECT coalesce(max(kind), -1), coalesce(max(redacted_by), '') FROM events WHERE event_id = ?`, e.EventID).Scan(&kind, &redactedBy); err != nil {
				return err
			}
			switch {
			case kind == store.KindOutlier && !b.Rejected:
				// Known without its place in history (an auth chain or
				// send_join state event): it joins the backfilled history,
				// written again at a new position (the search index, keyed
				// by position on SQLite, follows through the triggers).
				if _, err := tx.Exec(ctx, `DELETE FROM events WHERE event_id = ?`, e.EventID); err != nil {
					return err
				}
			case kind >= 0:
				continue
			}
			kind, reason := store.KindBackfilled, ""
			if b.Rejected {
				kind, reason = store.KindRejected, b.RejectedReason
			}
			var pos int64
			if err := s.insertApartRow(ctx, tx, graphEventRow(e, 0, kind, reason, 0), &pos); err != nil {
				return err
			}
			if kind != store.KindBackfilled {
				continue
			}
			n++
			if redactedBy != "" {
				if _, err := tx.Exec(ctx, `UPDATE events SET redacted_by = ? WHERE event_id = ?`, redactedBy, e.EventID); err != nil {
					return err
				}
			}
		}
		// Redactions once their targets are in (a batch comes newest first).
		// A redaction backfilled in an earlier batch than its target is not
		// applied to it.
		for i := range events {
			if e := &events[i].Event; e.Redacts != "" && !events[i].Rejected {
				if _, err := tx.Exec(ctx, `UPDATE events SET redacted_by = ? WHERE event_id = ? AND room_id = ? AND redacted_by = ''`, e.EventID, e.Redacts, e.RoomID); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return n, err
}

func (s *Shared) EarliestEvents(ctx context.Context, roomID string, n int) ([]store.PDU, error) {
	rows, err := s.b.Read().Query(ctx, `SELECT event_id, room_id, json, kind, rejected_reason, state_group, pos, depth, replaces_state FROM events
		WHERE room_id = ? AND kind IN (0, 4) ORDER BY pos LIMIT ?`, roomID, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.PDU
	for rows.Next() {
		var p store.PDU
		if err := rows.Scan(&p.EventID, &p.RoomID, &p.JSON, &p.Kind, &p.RejectedReason, &p.StateGroup, &p.Pos, &p.Depth, &p.ReplacesState); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// LatestTimelineGap implements store.TimelineGaps.
func (s *Shared) LatestTimelineGap(ctx context.Context, roomID string, after, upto int64) (int64, error) {
	var pos int64
	err := s.b.Read().QueryRow(ctx, `SELECT COALESCE(MAX(pos), 0) FROM timeline_gaps WHERE room_id = ? AND pos > ? AND pos <= ?`, roomID, after, upto).Scan(&pos)
	return pos, err
}
